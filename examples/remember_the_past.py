"""Remember the Past, Tables 1 and 3 on this machine's data (docs/benchmarks.md):
distilled addressable memories vs random real images at equal storage (embedded MNIST and
Debian's Fashion-MNIST, 1 and 10 images per class, 5 seeds), and compress-then-recall on
MNIST-Rotations and MANY beside online SGD and experience replay at the same budget.

Usage:
    python examples/remember_the_past.py [--quick] [--out runs/rtp]
"""

from __future__ import annotations

import argparse
import statistics

from agents import run
from agents.harness import results
from agents.harness.distill import distill_source


def pct(values: list[float]) -> str:
    m = 100 * statistics.mean(values)
    return f"{m:.1f}" if len(values) == 1 else f"{m:.1f} ± {100 * statistics.stdev(values):.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one seed, a few iterations, 3 tasks")
    p.add_argument("--out", default="runs/rtp")
    args = p.parse_args()
    seeds = [0] if args.quick else [0, 1, 2, 3, 4]
    fast = {"iterations": 3, "inner_steps": 2, "repeats": 1, "eval_epochs": 5} if args.quick else {}
    print("Table 1: accuracy % of fresh models trained on the memories / on random real images")
    for source in ["mnist5k"] if args.quick else ["mnist5k", "fashion_mnist"]:
        for ipc in [1] if args.quick else [1, 10]:
            rs = [distill_source(source, ipc=ipc, seed=s, out=f"{args.out}/distill-{source}-ipc{ipc}-{s}",
                                 log=lambda *_: None, **fast) for s in seeds]
            print(f"{source:14s} ipc {ipc:2d}: distilled {pct([r['distilled_accuracy'][0] for r in rs])}, "
                  f"random ({rs[0]['random_same_count']['per_class']}/class) "
                  f"{pct([r['random_same_count']['accuracy'][0] for r in rs])}, "
                  f"random at equal bits ({rs[0]['random_same_bits']['per_class']}/class) "
                  f"{pct([r['random_same_bits']['accuracy'][0] for r in rs])}")
    print("\nTable 3: compress-then-recall (budget 800 = 200 float images, as the paper's baselines hold)")
    stream = {"n_tasks": 3} if args.quick else {}
    recall_set = {"memory.iterations": 2, "memory.inner_steps": 2, "epochs": 2} if args.quick else {}
    for env in ["MNISTRotations-v0"] if args.quick else ["MNISTRotations-v0", "MANY-v0"]:
        many = {"memory.iterations": 20} if env == "MANY-v0" and not args.quick else {}
        for agent, budget, settings in [("online", None, {}), ("er", 800, {}), ("recall", 800, {**recall_set, **many})]:
            for seed in seeds[:3]:
                r = run(env, agent=agent, budget=budget, seed=seed, settings=settings, stream_kwargs=stream,
                        out=f"{args.out}/{env}-{agent}-{seed}", overwrite=True)
                print(f"{env} {agent:7s} seed {seed}: RA {r.retained_accuracy:.3f}")
    print("\n" + results.to_markdown(results.comparison_tables(results.find_results([args.out])[0])))


if __name__ == "__main__":
    main()
