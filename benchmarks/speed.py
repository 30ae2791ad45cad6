"""Wall time of every agent with every memory it accepts, against a bare PyTorch loop.

For each (agent, memory) pair of the registry (classification agents; the generative ones run on
their own streams, ``sb3`` trains through Stable-Baselines3), ``run()`` in a warm process on the
first ``--tasks`` tasks of ``--env`` (every task's test set evaluated at every task end, as the
protocol asks), ``--repeats`` times: the median wall time, examples per second, and the ratio to
the bare loop — plain PyTorch over the same prepared examples (MLP 784-100-100-10, SGD, batches of
10, one forward/backward/step per batch, the same evaluations), timed in the same invocation.

Usage:
    python benchmarks/speed.py [--tasks 3] [--repeats 3] [--agents er gem] [--device cpu]
        [--update-docs docs/benchmarks.md]

``--update-docs`` rewrites the table between the ``<!-- speed.py:start -->`` and
``<!-- speed.py:end -->`` markers of that page (the docs' speed table comes from this script).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from common import bare_loop, budget_for, pairs

import cl_env
from agents import run

START, END = "<!-- speed.py:start -->", "<!-- speed.py:end -->"


def measure(env: str, n_tasks: int, repeats: int, agents: list[str] | None, device: str, log=print,
            budget: float | None = None, memories: list[str] | None = None) -> dict:
    bare = statistics.median(bare_loop(env, n_tasks, device) for _ in range(repeats))
    n_examples = cl_env.make_stream(env, n_tasks=n_tasks).n_train
    log(f"bare loop: {bare:.2f} s for {n_examples:,} examples (median of {repeats})")
    rows = []
    for agent, memory in pairs(agents, memories):
        times, result = [], None
        for _ in range(repeats):
            t = time.perf_counter()
            result = run(env, agent=agent, memory=memory, device=device, stream_kwargs={"n_tasks": n_tasks},
                         progress=False, budget=budget_for(agent, memory, budget))
            times.append(time.perf_counter() - t)
        wall = statistics.median(times)
        row = {"agent": agent, "memory": result.memory, "effective": result.effective_examples, "wall_s": wall, "examples_per_s": n_examples / wall,
               "ratio": wall / bare, "retained": result.retained_accuracy, "status": result.status}
        rows.append(row)
        log(f"{agent} + {result.memory}: {wall:.2f} s, {row['examples_per_s']:,.0f} examples/s, "
            f"{row['ratio']:.1f}x bare")
    return {"env": env, "n_tasks": n_tasks, "n_examples": n_examples, "repeats": repeats, "device": device,
            "budget": budget, "memories": memories,
            "bare_s": bare, "threads": torch.get_num_threads(), "rows": rows}


def table(m: dict) -> str:
    flag = "" if m.get("budget") is None else f" --budget {m['budget']:g}"
    if m.get("memories"):
        flag += " --memories " + " ".join(m["memories"])
    lines = [f"`python benchmarks/speed.py --tasks {m['n_tasks']} --repeats {m['repeats']}{flag}` on "
             f"{m['env']}'s first {m['n_tasks']} tasks ({m['n_examples']:,} examples), {m['device']}, "
             f"{m['threads']} torch thread(s), medians of {m['repeats']}; the bare loop took {m['bare_s']:.2f} s.",
             "", "| agent | memory | storage (effective examples) | wall s | examples / s | ÷ bare loop | retained acc. |",
             "|---|---|---|---|---|---|---|"]
    for r in m["rows"]:
        ra = "–" if r["retained"] is None else f"{100 * r['retained']:.1f} %"
        if r["status"] != "completed":
            ra += f" ({r['status']})"
        eff = "–" if not r.get("effective") else f"{r['effective']:.0f}"
        lines.append(f"| {r['agent']} | {r['memory'] or '–'} | {eff} | {r['wall_s']:.2f} | {r['examples_per_s']:,.0f} | "
                     f"{r['ratio']:.1f} | {ra} |")
    return "\n".join(lines)


def update_docs(path: Path, text: str) -> None:
    page = path.read_text()
    if START not in page or END not in page:
        sys.exit(f"{path}: no {START} ... {END} markers to replace between")
    head, rest = page.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="MNISTRotations-v0")
    p.add_argument("--tasks", type=int, default=3, help="the stream's first N tasks (n_tasks)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--agents", nargs="*", default=None, help="default: every classification agent")
    p.add_argument("--device", default="cpu")
    p.add_argument("--memories", nargs="*", default=None, help="only these memories (memoryless agents still run)")
    p.add_argument("--budget", type=float, default=None,
                   help="every memory's budget (default: each agent's own; 100 where a memory has none)")
    p.add_argument("--update-docs", type=Path, default=None, help="rewrite the table in this page")
    args = p.parse_args()
    print(f"threads: torch {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    m = measure(args.env, args.tasks, args.repeats, args.agents, args.device, budget=args.budget,
                memories=args.memories)
    text = table(m)
    print("\n" + text)
    if args.update_docs:
        update_docs(args.update_docs, text)
        print(f"\nwrote the table into {args.update_docs}")


if __name__ == "__main__":
    main()
