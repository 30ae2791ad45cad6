"""The DER paper's Seq-MNIST table (Buzzega et al., NeurIPS 2020, Table 2, S-MNIST column) beside
cl-env's runs of the same protocol, with a verdict per row.

Reads the results of ``cl-env sweep benchmarks/der_seqmnist.yaml`` (and of
``benchmarks/der_seqmnist_joint.yaml`` for the JOINT row) and prints a markdown table: our Class-IL
and Task-IL accuracy (mean ± std over the seeds found, in %), the paper's, the wall time per run,
and a verdict. A row is **reproduced** when our Class-IL mean lies within the paper's reported std
of its mean, the criterion of the issue, but the paper's stds could not be read here (see
``SOURCE``), so the rule is: the paper's mean lies within our mean ± our std over the seeds, or
within 1 point of our mean (runs whose seeds agree to 0.1 point would otherwise fail on the
third digit); otherwise **not reproduced**, with the reason in ``REASONS`` where it was found.

Usage::

    python benchmarks/seqmnist_table.py runs/der-seqmnist runs/der-seqmnist-joint
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.harness.results import find_results  # noqa: E402

SOURCE = ("the DER authors' results table (Buzzega et al. 2020; 'Continual Learning Results', S-MNIST columns) "
          "in aimagelab/mammoth README.md at 7ab9db97e3b5df6e1d9974468c7958f5c07696e1 (the first commit, "
          "unchanged to c66408f); it prints means only, so the paper's stds (10 runs) are not used here: the "
          "copies of the paper readable on this machine stop before its tables")

# (method, buffer) -> (Class-IL mean, Task-IL mean) in %, as the source prints them
PAPER: dict[tuple[str, int | None], tuple[float, float]] = {
    ("joint", None): (95.57, 99.51),
    ("online", None): (19.60, 94.94),
    ("ewc", None): (20.46, 98.39),
    ("si", None): (19.27, 96.00),
    ("lwf", None): (19.62, 94.11),
    ("er", 200): (80.43, 97.86),
    ("gem", 200): (80.11, 97.78),
    ("agem", 200): (45.72, 98.61),
    ("icarl", 200): (70.51, 98.28),
    ("der", 200): (84.55, 98.80),
    ("derpp", 200): (85.61, 98.76),
    ("er", 500): (86.12, 99.04),
    ("gem", 500): (85.99, 98.71),
    ("agem", 500): (46.66, 98.93),
    ("icarl", 500): (70.10, 98.32),
    ("der", 500): (90.54, 98.84),
    ("derpp", 500): (91.00, 98.94),
    ("er", 5120): (93.40, 99.33),
    ("gem", 5120): (95.11, 99.44),
    ("agem", 5120): (54.24, 98.93),
    ("icarl", 5120): (70.60, 98.32),
    ("der", 5120): (94.90, 99.29),
    ("derpp", 5120): (95.30, 99.47),
}
NAMES = {"joint": "JOINT (upper bound)", "online": "SGD (fine-tuning)", "ewc": "oEWC / EWC", "si": "SI",
         "lwf": "LwF", "er": "ER", "gem": "GEM", "agem": "A-GEM", "icarl": "iCaRL", "der": "DER",
         "derpp": "DER++", "er_ace": "ER-ACE", "mir": "MIR", "gdumb": "GDumb", "mas": "MAS"}
ORDER = ["joint", "online", "ewc", "si", "lwf", "mas", "er", "gem", "agem", "icarl", "der", "derpp", "er_ace",
         "mir", "gdumb"]
# why a row is not reproduced, written once the gap was looked into (docs/benchmarks.md says how)
ICARL = ("ours is higher; tried on seeds 0-2 at buffer 200 without finding the cause: lr 0.01 81.4, "
         "lr 0.02 82.3, one replayed exemplar per step 83.3, the network's logits instead of class means "
         "78.7, class means without L2 normalisation (as Mammoth d20f640 computes them) 83.2 - none near "
         "70.5; the paper's iCaRL is flat in the buffer size (70.51 / 70.10 / 70.60), a limit of that "
         "implementation other than its buffer, not found here")
REASONS: dict[tuple[str, int | None], str] = {
    ("icarl", 200): ICARL, ("icarl", 500): ICARL, ("icarl", 5120): ICARL,
    ("lwf", None): ("ours retains 2.9 points of the old classes; Mammoth's LwF (d20f640) distils only the past "
                    "tasks' logits after warming the new head up and adds weight decay 0.0005, ours distils every "
                    "output from the first step (agents/presets.py, the row's note); not run with Mammoth's variant"),
}


def _pm(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def rows(paths: list[str]) -> list[dict]:
    runs, bad = find_results(paths)
    for line in bad:
        print(f"skipped: {line}", file=sys.stderr)
    groups: dict[tuple[str, int | None], list] = defaultdict(list)
    for r in runs:
        if r.status != "completed":
            continue
        cfg = r.config
        joint = cfg.get("stream_kwargs", {}).get("classes_per_task") == 10
        key = ("joint" if joint else r.data["agent"], None if joint else cfg.get("memory_items"))
        groups[key].append(r)
    out = []
    for (agent, items), members in sorted(groups.items(), key=lambda kv: (kv[0][1] or 0, ORDER.index(kv[0][0])
                                                                        if kv[0][0] in ORDER else 99)):
        cil = [100 * m.data["retained_accuracy"] for m in members]
        til = [100 * m.data["task_il_retained_accuracy"] for m in members
               if m.data.get("task_il_retained_accuracy") is not None]
        paper = PAPER.get((agent, items))
        mean = statistics.mean(cil)
        spread = max(statistics.stdev(cil) if len(cil) > 1 else 0.0, 1.0)
        if paper is None:
            verdict = "no paper row"
        elif abs(mean - paper[0]) <= spread:
            verdict = "reproduced"
        else:
            verdict = "not reproduced" + (f": {REASONS[(agent, items)]}" if (agent, items) in REASONS else "")
        out.append({"method": NAMES.get(agent, agent), "buffer": "–" if items is None else str(items),
                    "seeds": ",".join(str(s) for s in sorted(m.seed for m in members)),
                    "ours_cil": _pm(cil), "paper_cil": "–" if paper is None else f"{paper[0]:.2f}",
                    "ours_til": _pm(til) if agent != "joint" else "– (one task)",
                    "paper_til": "–" if paper is None else f"{paper[1]:.2f}",
                    "wall": f"{statistics.mean(m.data['wall_time_s'] for m in members):.0f} s",
                    "preset": (members[0].config.get("preset") or {}).get("name", "–"),
                    "verdict": verdict})
    return out


def markdown(table: list[dict]) -> str:
    head = ("| method | buffer | seeds | Class-IL % (ours) | Class-IL % (paper) | Task-IL % (ours) | "
            "Task-IL % (paper) | wall time / run | preset | verdict |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head] + [f"| {r['method']} | {r['buffer']} | {r['seeds']} | {r['ours_cil']} | {r['paper_cil']} | "
                      f"{r['ours_til']} | {r['paper_til']} | {r['wall']} | {r['preset']} | {r['verdict']} |"
                      for r in table]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", help="sweep output directories")
    args = p.parse_args(argv)
    print(markdown(rows(args.dirs)))
    print(f"\npaper: {SOURCE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
