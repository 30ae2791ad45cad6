"""Wall time of each agent on a stream (MNISTRotations-v0 by default) against a bare PyTorch loop, and as whole processes.

Three figures per agent (medians of ``--repeats`` runs, this machine):

- ``run()``: the library's runner in a warm process (stream built, every task's test set
  evaluated at every task end, as the protocol asks);
- ``process``: ``cl-env run`` as a fresh process (imports and data loading included), the figure
  comparable to whole-process timings of other libraries;
- the bare loop: plain PyTorch over the same prepared examples, MLP 784-100-100-10, SGD,
  batches of 10, one forward/backward/step per batch (``bare train``), and the same plus the
  same evaluations (``bare train+eval``).

Usage:
    python benchmarks/agents_vs_bare_loop.py [--agents online er gem agem ewc lwf] [--repeats 3]
    python benchmarks/agents_vs_bare_loop.py --env SplitMNIST-v0 --stream source=mnist --agents online
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from common import bare_loop

from agents import run
from agents.harness.cli.args import parse_assignments


def timed(fn, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="MNISTRotations-v0")
    p.add_argument("--stream", nargs="*", default=[], metavar="KEY=VALUE", help="stream options, e.g. source=mnist")
    p.add_argument("--agents", nargs="*", default=["online", "er", "gem", "agem", "ewc", "lwf"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--process", action=argparse.BooleanOptionalAction, default=True,
                   help="also time cl-env run as a fresh process")
    args = p.parse_args()
    env, stream = args.env, parse_assignments(args.stream, "--stream")
    cli_stream = ["--stream", *args.stream] if args.stream else []
    bare_train = timed(lambda: bare_loop(env, evaluate=False, stream_kwargs=stream), args.repeats)
    bare_eval = timed(lambda: bare_loop(env, evaluate=True, stream_kwargs=stream), args.repeats)
    print(f"bare train: {bare_train:.2f} s; bare train+eval: {bare_eval:.2f} s (median of {args.repeats})\n")
    print("| agent | RA | run() s | / bare train | / bare train+eval | process s |")
    print("|---|---|---|---|---|---|")
    for agent in args.agents:
        results = []

        def one(agent=agent, results=results):
            t = time.perf_counter()
            results.append(run(env, agent=agent, stream_kwargs=stream))
            return time.perf_counter() - t

        t_run = timed(one, args.repeats)
        t_proc = float("nan")
        if args.process:
            def proc(agent=agent):
                with tempfile.TemporaryDirectory() as d:
                    t = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "agents.harness.cli", "run", env, "--agent", agent,
                                    *cli_stream, "--out", d], check=True, capture_output=True)
                    return time.perf_counter() - t
            t_proc = timed(proc, args.repeats)
        ra = results[-1].retained_accuracy
        print(f"| {agent} | {ra:.4f} | {t_run:.2f} | {t_run / bare_train:.2f} | "
              f"{t_run / bare_eval:.2f} | {t_proc:.2f} |")


if __name__ == "__main__":
    main()
