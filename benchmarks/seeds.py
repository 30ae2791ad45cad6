"""Several seeds for the price of one? Wall time of K seeds of one configuration, three ways, against
one seed, all measured in this invocation (medians of ``--repeats``):

- ``stacked``: :func:`agents.harness.runner.run_seeds` (one process, one stacked step per batch);
- ``in turn``: ``run_seeds(stack=False)`` (one process, the stream prepared once, seeds one
  after another);
- ``--seeds``: ``cl-env run --seeds 0-(K-1)`` as a user runs it, interpreter start-up included
  (the stacked group shared out over idle cores: on 2 cores, 3 seeds in the command's process
  and 2 in one worker, :func:`agents.harness.sweep.share_out`);
- ``processes``: ``cl-env run --seeds ... --no-stack`` (one process per seed, ``--workers``
  at once, threads shared out: what ``--seeds`` did before stacking), including interpreter start;
- ``one seed``: ``cl-env run`` of one seed in a process of its own (the reference), also
  including interpreter start; stacked and in-turn are timed in this process, so their ratio
  adds the one-seed process's start-up time.

Also checks that every stacked seed's accuracy matrix equals its in-turn run's (exact at one
thread; reported, not asserted, at more).

Usage::

    python benchmarks/seeds.py --agents er online --seeds 5 [--threads 1] [--skip turn procs]

``--skip`` leaves out columns (``turn``, ``procs``: the slow references) on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _cli(args: list[str], threads: int) -> float:
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "agents.harness.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="MNISTRotations-v0")
    p.add_argument("--agents", nargs="+", default=["er"])
    p.add_argument("--seeds", type=int, default=5, help="K, the number of seeds (default 5)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of every process; 0 (default): each path's own plan, as a user gets "
                        "it (one seed and a stacked group use every core, --no-stack one thread per worker)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tasks", type=int, default=None, help="stream n_tasks (default the protocol's)")
    p.add_argument("--skip", nargs="*", default=[], choices=["turn", "procs"],
                   help="columns to leave out (in turn, processes); the equality check needs turn")
    args = p.parse_args(argv)
    import torch

    from agents.harness.runner import run_seeds

    if args.threads:
        torch.set_num_threads(args.threads)
    stream = {} if args.tasks is None else {"n_tasks": args.tasks}
    stream_cli = [] if args.tasks is None else ["--stream", f"n_tasks={args.tasks}"]
    seeds = list(range(args.seeds))
    threads = f"{args.threads} torch thread(s) per process" if args.threads else "default threads"
    print(f"{args.env}, {args.seeds} seeds, {threads} ({torch.get_num_threads()} in this process), "
          f"medians of {args.repeats}")
    print("| agent | one seed (process) | stacked | in turn | `--seeds` (process) | processes | stacked ÷ one | "
          "`--seeds` ÷ one | equal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for agent in args.agents:
        t = {"one": [], "stacked": [], "turn": [], "cli": [], "procs": []}
        equal = None
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                t["one"].append(_cli(["run", args.env, "--agent", agent, "--no-progress", *stream_cli,
                                      "--out", f"{tmp}/one"], args.threads))
                start = time.perf_counter()
                a = run_seeds(args.env, agent, seeds=seeds, stream_kwargs=stream, progress=False)
                t["stacked"].append(time.perf_counter() - start)
                b = None
                if "turn" not in args.skip:
                    start = time.perf_counter()
                    b = run_seeds(args.env, agent, seeds=seeds, stream_kwargs=stream, progress=False, stack=False)
                    t["turn"].append(time.perf_counter() - start)
                t["cli"].append(_cli(["run", args.env, "--agent", agent, "--seeds", f"0-{args.seeds - 1}",
                                      "--out", f"{tmp}/cli", *stream_cli], args.threads))
                if "procs" not in args.skip:
                    t["procs"].append(_cli(["run", args.env, "--agent", agent, "--seeds", f"0-{args.seeds - 1}",
                                            "--no-stack", "--out", f"{tmp}/procs", *stream_cli], args.threads))
                stacked = a[0].config["derived"].get("stacked_seeds") == args.seeds
                equal = None if b is None else (
                    stacked and all(x.accuracy_matrix == y.accuracy_matrix for x, y in zip(a, b, strict=True)))
        m = {k: statistics.median(v) if v else None for k, v in t.items()}
        sec = {k: "–" if v is None else f"{v:.1f} s" for k, v in m.items()}
        same = "–" if equal is None else ("yes" if equal else "no")
        print(f"| {agent} | {sec['one']} | {sec['stacked']} | {sec['turn']} | {sec['cli']} | {sec['procs']} | "
              f"{m['stacked'] / m['one']:.2f}× | {m['cli'] / m['one']:.2f}× | {same} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
