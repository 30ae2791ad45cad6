"""``cl-env pretrain-srm``: pretrain SRM's discrete VAE on one stream, for transfer to another."""

from __future__ import annotations

import argparse
import sys

import torch

import cl_env
from agents.base import StreamInfo
from agents.harness.cli.args import _assignments, _check_options, parse_assignments
from cl_env import checks
from cl_env.error import CLEnvError
from memory.nets import DiscreteVAE
from memory.nets.discrete_vae import vae_parameters
from memory.srm import latent_for_budget, pretrain_vae, save_vae

MAX_VAE_PARAMETERS = 2**28  # 1 GiB of float32 weights (budget 500's autoencoder: 26.9 million)


def cmd_pretrain_srm(args: argparse.Namespace) -> int:
    """Pretrain SRM's discrete VAE on one stream's training images, for transfer to another."""
    try:
        _check_options(args, positive=("budget",), counts=("items", "epochs"))
        torch.manual_seed(args.seed)  # after the seed's check: past 2**64 torch raises an overflow
        if args.variables is not None:
            checks.integer("--variables", args.variables, 1, fix="--variables 200")
        checks.integer("--categories", args.categories, 2, fix="--categories 4")
        source = cl_env.make_stream(args.env_id, **parse_assignments(args.stream, "--stream"))
        if args.variables is None:
            target = cl_env.make_stream(args.for_env) if args.for_env else source
            spec = StreamInfo.from_stream(target).memory_spec("cpu")
            c = latent_for_budget(args.budget, spec, args.items, args.categories, args.policy)
        else:
            c = args.variables
        size = vae_parameters(source.image_shape, c, args.categories)
        if size > MAX_VAE_PARAMETERS:
            raise ValueError(f"--variables {c} x --categories {args.categories}: an autoencoder of {size:,} "
                             f"parameters ({4 * size / 2**30:.1f} GiB of float32), expected at most "
                             f"{MAX_VAE_PARAMETERS:,} (1 GiB); fix: fewer --variables or --categories")
        vae = DiscreteVAE(source.image_shape, c, args.categories)
    except (CLEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    px, _, index, _ = source.pools()
    history = pretrain_vae(vae, px[index], epochs=args.epochs, seed=args.seed)
    save_vae(vae, args.out)
    print(f"pretrained a discrete VAE (c={c}, l={args.categories}) on {len(index)} images of {args.env_id}: "
          f"loss per epoch {[round(h, 4) for h in history]}; wrote {args.out}\n"
          f"use it with: --memory srm --set memory.vae_path={args.out!r}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    pre = sub.add_parser("pretrain-srm", help="pretrain SRM's autoencoder on a stream (transfer)")
    pre.add_argument("env_id", nargs="?", help="the stream whose training images it learns")
    pre.add_argument("--out", required=True, help="file to write (then --set memory.vae_path=FILE)")
    pre.add_argument("--variables", type=int, default=None,
                     help="latent variables c of the discrete VAE (default: from --budget)")
    pre.add_argument("--categories", type=int, default=4, help="categories l per latent variable")
    # the old spellings, hidden; kept for one release
    pre.add_argument("--c", dest="variables", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    pre.add_argument("--l", dest="categories", type=int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    pre.add_argument("--budget", type=float, default=100, help="size --variables for this budget (eq. 4)")
    pre.add_argument("--items", type=int, default=3000)
    pre.add_argument("--policy", default="reservoir", choices=["reservoir", "task_ring"])
    pre.add_argument("--for-env", default=None, help="the stream the memory will serve (sizes --variables)")
    _assignments(pre, "--stream", "stream", "stream options of ENV_ID (repeatable)")
    pre.add_argument("--epochs", type=int, default=1)
    pre.add_argument("--seed", type=int, default=0)
    pre.set_defaults(func=cmd_pretrain_srm)
