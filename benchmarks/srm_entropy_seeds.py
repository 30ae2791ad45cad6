"""Does entropy-coded SRM retain less than bit-packed SRM, or is the gap seed noise?

Reads the runs of ``cl-env frontier benchmarks/srm_entropy_seeds.yaml`` (SplitMNIST-v0, er, srm
with and without ``memory.entropy_coding``, budgets 50 and 200, seeds 0-9) and prints, per
budget, each memory's retained accuracy per seed, mean ± std, median, items held, and two tests
of the difference between the two memories over the seeds: Welch's t-test and the Mann-Whitney
U test (two-sided, ``scipy.stats``). Seeds are not paired: the two memories draw their random
numbers differently from the first write on, so seed k of one is not a matched run of the other.

Usage::

    python benchmarks/srm_entropy_seeds.py runs/srm-entropy-seeds
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.harness.results import find_results  # noqa: E402


def collect(root: str) -> dict[tuple[float, bool], dict[int, tuple[float, int]]]:
    """``(budget, entropy_coding) -> {seed: (retained accuracy %, items)}`` of the completed srm runs."""
    runs, _ = find_results([root])
    out: dict[tuple[float, bool], dict[int, tuple[float, int]]] = defaultdict(dict)
    for run in runs:
        cfg = run.config
        if run.status != "completed" or cfg.get("memory") != "srm":
            continue
        coded = bool((cfg.get("memory_options") or {}).get("entropy_coding", False))
        out[(float(cfg["budget"]), coded)][run.seed] = (100 * run.data["retained_accuracy"], int(run.data["items"]))
    return out


def main(argv: list[str] | None = None) -> int:
    from scipy import stats

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", help="the frontier's --out directory")
    args = p.parse_args(argv)
    data = collect(args.root)
    if not data:
        print(f"no completed srm runs under {args.root}", file=sys.stderr)
        return 2
    print("| budget | memory | seeds | retained % per seed | mean ± std | median | items (mean) |")
    print("|---|---|---|---|---|---|---|")
    tests = []
    for budget in sorted({b for b, _ in data}):
        accs = {}
        for coded in (False, True):
            runs = data.get((budget, coded), {})
            if not runs:
                continue
            seeds = sorted(runs)
            acc = [runs[s][0] for s in seeds]
            items = statistics.mean(runs[s][1] for s in seeds)
            accs[coded] = acc
            std = statistics.stdev(acc) if len(acc) > 1 else float("nan")
            name = "srm + entropy_coding" if coded else "srm (bit-packed)"
            print(f"| {budget:g} | {name} | {seeds[0]}-{seeds[-1]} ({len(seeds)}) | "
                  f"{' / '.join(f'{a:.1f}' for a in acc)} | {statistics.mean(acc):.2f} ± {std:.2f} | "
                  f"{statistics.median(acc):.2f} | {items:,.0f} |")
        if len(accs) == 2 and min(len(v) for v in accs.values()) > 1:
            t = stats.ttest_ind(accs[True], accs[False], equal_var=False)
            u = stats.mannwhitneyu(accs[True], accs[False], alternative="two-sided")
            diff = statistics.mean(accs[True]) - statistics.mean(accs[False])
            tests.append(f"budget {budget:g}: entropy-coded minus packed {diff:+.2f} points; "
                         f"Welch t = {t.statistic:.2f}, p = {t.pvalue:.3f}; Mann-Whitney U = {u.statistic:.0f}, "
                         f"p = {u.pvalue:.3f}")
    print()
    for line in tests:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
