"""ARM's Table 6 on the embedded MNIST-5k: naive SGD, the paper's Distill (LwF) baseline and
classic LwF, ER with 50 examples, ADI and ARM, 5 seeds, class-incremental MNIST-5k-5 with the
MLP 400-400 at PyTorch's default initialisation (ARM's protocol; docs/benchmarks.md).

Usage:
    python examples/arm_split_mnist.py [--quick] [--out runs/table6]
"""

from __future__ import annotations

import argparse

from agents import run
from agents.harness import results

BASELINE = {"model": "mlp400", "lr": 0.05}  # ARM's MNIST model and learning rate
DISTILL = {**BASELINE, "update": "two_step", "temperature": 1.0}  # ARM's code/scripts/distill.py
CONFIGS = [("online", None, BASELINE), ("lwf", None, DISTILL), ("lwf", None, BASELINE), ("er", 50, BASELINE),
           ("adi", None, {}), ("arm", None, {})]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one seed, recall with S=2 steps")
    p.add_argument("--out", default="runs/table6")
    args = p.parse_args()
    seeds = [0] if args.quick else [0, 1, 2, 3, 4]
    for seed in seeds:
        for agent, budget, settings in CONFIGS:
            if args.quick and agent in ("arm", "adi"):
                settings = {"steps": 2}
            variant = "-distill" if settings.get("update") == "two_step" else ""
            tag = f"{agent}{variant}{'' if budget is None else budget}-{seed}"
            r = run("SplitMNIST-v0", agent=agent, budget=budget, seed=seed, settings=settings,
                    out=f"{args.out}/{tag}", overwrite=True)
            print(f"{tag:10s} RA {r.retained_accuracy:.3f}  forgetting {r.forgetting:.3f}")
    print("\n" + results.to_markdown(results.comparison_tables(results.find_results([args.out])[0])))


if __name__ == "__main__":
    main()
