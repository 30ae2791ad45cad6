"""Examples per second of each method on Seq-MNIST at full scale (60,000 images) beside the same
method and settings on the embedded MNIST-5k split (4,000 images), one torch thread, one seed.

Each row is a preset (``cl-env list presets``): on full MNIST the preset itself
(``SplitMNIST-v0 --stream source=mnist --preset NAME``); on MNIST-5k the preset's memory, items and
settings passed explicitly (a preset names its stream source, so it is not applied there). The
number is the run's ``examples_per_s`` (training examples over the time of the training loop,
evaluations at task ends included), the median of ``--repeats`` runs, each in this process.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/seqmnist_speed.py [--presets er-seqmnist-500 ...] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from agents.harness.runner import run  # noqa: E402
from agents.presets import find_preset  # noqa: E402

DEFAULT = ["online-seqmnist", "ewc-seqmnist", "si-seqmnist", "lwf-seqmnist", "er-seqmnist-500",
           "er_ace-seqmnist-500", "gem-seqmnist-500", "agem-seqmnist-500", "icarl-seqmnist-500",
           "der-seqmnist-500", "derpp-seqmnist-500", "gdumb-seqmnist-500"]


def rate(repeats: int, **kw) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return statistics.median(run("SplitMNIST-v0", seed=0, progress=False, **kw).examples_per_s
                                 for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=DEFAULT)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"SplitMNIST-v0, seed 0, {torch.get_num_threads()} torch thread, medians of {args.repeats}")
    print("| method | preset | full MNIST (60,000) examples/s | MNIST-5k (4,000) examples/s | full ÷ 5k |")
    print("|---|---|---|---|---|")
    for name in args.presets:
        pr = find_preset(name)
        full = rate(args.repeats, agent=pr.agent, preset=name, stream_kwargs={"source": "mnist"})
        small = rate(args.repeats, agent=pr.agent, memory=pr.memory, items=pr.items,
                     settings=pr.settings_dict())
        print(f"| {pr.agent} | {name} | {full:,.0f} | {small:,.0f} | {full / small:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
