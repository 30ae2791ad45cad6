"""``cl-env distill``: distil a dataset into addressable memories and measure them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from agents.harness.cli.args import _check_options
from agents.harness.distill import distill_source
from cl_env.error import CLEnvError


def cmd_distill(args: argparse.Namespace) -> int:
    """Distil a dataset into addressable memories and measure them (Remember the Past, Table 1)."""
    try:
        _check_options(args, positive=("images_per_class", "inner_lr"),
                       counts=("bases", "downsample", "iterations", "inner_steps", "repeats", "eval_epochs"))
        torch.manual_seed(args.seed)  # after the seed's check: past 2**64 torch raises an overflow
        r = distill_source(args.source, ipc=args.images_per_class, n_bases=args.bases, ds=args.downsample, model=args.model,
                           iterations=args.iterations, inner_steps=args.inner_steps, inner_lr=args.inner_lr,
                           repeats=args.repeats, eval_epochs=args.eval_epochs, seed=args.seed,
                           root=args.root, device=args.device, out=args.out)
    except (CLEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m, s = r["distilled_accuracy"]
    print(f"{args.source}, {args.images_per_class} image(s) per class of storage ({r['storage_bits']} bits; "
          f"{args.bases} bases + {r['rows_per_class']} addressing rows per class): "
          f"distilled {100 * m:.2f} ± {100 * s:.2f} %", end="")
    for key in ("random_same_count", "random_same_bits"):
        if key in r:
            bm, bs = r[key]["accuracy"]
            print(f"; {r[key]['per_class']} random real per class {100 * bm:.2f} ± {100 * bs:.2f} %", end="")
    print(f" ({r['wall_time_s']:.0f} s)")
    if args.out:
        print(f"wrote {Path(args.out) / 'distill.json'}, memories.pt and TensorBoard events")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("distill", help="distil a dataset into addressable memories (Remember the Past)")
    d.add_argument("source", help="a data source: mnist5k, mnist, fashion_mnist, cifar10, cifar100, svhn")
    d.add_argument("--images-per-class", type=float, default=1,
                   help="storage budget in float images per class (eq. 4)")
    # the old spelling, hidden; kept for one release
    d.add_argument("--ipc", dest="images_per_class", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    d.add_argument("--bases", type=int, default=16)
    d.add_argument("--downsample", type=int, default=2, help="bases stored at 1/DOWNSAMPLE resolution")
    d.add_argument("--ds", dest="downsample", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # old
    d.add_argument("--model", default="mlp", help="inner and evaluation model (paper: convnet, on a GPU)")
    d.add_argument("--iterations", type=int, default=300, help="outer iterations (paper: 50,000)")
    d.add_argument("--inner-steps", type=int, default=30, help="unrolled SGD steps (paper: 150)")
    d.add_argument("--inner-lr", type=float, default=0.1, help="inner SGD lr (paper, ConvNet: 0.01)")
    d.add_argument("--repeats", type=int, default=5, help="fresh models per evaluation")
    d.add_argument("--eval-epochs", type=int, default=300)
    d.add_argument("--root", default=None)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="cpu")
    d.add_argument("--out", default=None)
    d.set_defaults(func=cmd_distill)
