"""Baselines on MNIST-Rotations, seeds 0-2: the comparison of docs/benchmarks.md.

Online, ER (200 examples of storage), GEM (256 per task, as GEM; and 200 examples in all, about
10 per task), A-GEM, EWC and LwF on the embedded MNIST, beside the papers' numbers (GEM; SRM
Table 1). Each run writes ``runs/baselines/<agent>-<seed>/`` (result.json, TensorBoard events);
the table at the end is ``cl-env compare runs/baselines``.

Usage:
    python examples/baselines_mnist_rotations.py [--quick]
"""

from __future__ import annotations

import argparse

from agents import run
from agents.harness import results

CONFIGS = [
    ("online", None),
    ("er", 200),
    ("gem", None),   # 256 per task
    ("gem", 200),    # 200 examples in all
    ("agem", None),
    ("ewc", None),
    ("lwf", None),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 tasks x 200 examples, one seed")
    p.add_argument("--out", default="runs/baselines")
    args = p.parse_args()
    stream = {"n_tasks": 3, "train_per_task": 200} if args.quick else {}
    seeds = [0] if args.quick else [0, 1, 2]
    for seed in seeds:
        for agent, budget in CONFIGS:
            tag = f"{agent}{'' if budget is None else budget}-{seed}"
            r = run("MNISTRotations-v0", agent=agent, budget=budget, seed=seed,
                    stream_kwargs=stream, out=f"{args.out}/{tag}", overwrite=True)
            print(f"{tag:12s} RA {r.retained_accuracy:.3f}  BWT {r.backward_transfer:+.3f}  "
                  f"{r.wall_time_s:.1f} s")
    print("\n" + results.to_markdown(results.comparison_tables(results.find_results([args.out])[0])))


if __name__ == "__main__":
    main()
