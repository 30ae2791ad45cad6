"""SRM Table 1 on the embedded MNIST-5k: experience replay and GEM with real storage against
recollections at equal incremental storage (100 and 200 effective examples), 3 seeds
(docs/benchmarks.md). Slow on a CPU: GEM with recollections takes 10-30 minutes a run at budget
100 and 47-70 minutes at 200 on a 2-core machine.

Usage:
    python examples/srm_table1.py [--quick] [--budgets 100 200] [--out runs/srm_t1]
"""

from __future__ import annotations

import argparse

from agents import run
from agents.harness import results


def cells(budget: int) -> list[tuple[str, str, dict]]:
    er = {"lr": 0.01, "replay_batch": 5 if budget <= 100 else 25}
    srm = {"memory.categories": 8} if budget >= 200 else {}
    return [("er", "reservoir", er), ("er", "srm", {**er, **srm}),
            ("gem", "task_ring", {}), ("gem", "srm", srm)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one seed, 2 tasks")
    p.add_argument("--budgets", type=int, nargs="+", default=[100, 200])
    p.add_argument("--out", default="runs/srm_t1")
    args = p.parse_args()
    seeds = [0] if args.quick else [0, 1, 2]
    stream = {"n_tasks": 2, "train_per_task": 200} if args.quick else {}
    for budget in [100] if args.quick else args.budgets:
        for agent, memory, settings in cells(budget):
            for seed in seeds:
                r = run("MNISTRotations-v0", agent=agent, memory=memory, budget=budget, seed=seed,
                        settings=settings, stream_kwargs=stream,
                        out=f"{args.out}/{agent}-{memory}-{budget}-{seed}", overwrite=True)
                print(f"{agent} {memory:9s} budget {budget} seed {seed}: RA {r.retained_accuracy:.3f} "
                      f"({r.items} items, {r.effective_examples:.1f} examples, {r.wall_time_s:.0f} s)")
    print("\n" + results.to_markdown(results.comparison_tables(results.find_results([args.out])[0])))


if __name__ == "__main__":
    main()
