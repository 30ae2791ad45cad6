"""Replay from compressed memories against replay from real examples, at the same budget.

Times ``er`` on one stream with ``reservoir``, ``quantized`` and ``codec`` (each memory's default
settings unless ``--set`` says otherwise) side by side in one invocation, one thread, the median
of ``--repeats`` whole runs each, and reports each memory's ratio to the reservoir (the issue's
target: within 3x). It also times one replay draw (``sample`` of ``replay_batch`` items: the
decode of the drawn items only) against the reservoir's, which says what a cache of decoded items
could at most save per step.

    OMP_NUM_THREADS=1 python benchmarks/compressed_replay.py --env MNISTRotations-v0 --budget 100
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from agents import StreamInfo, run
from agents.registry import build_memory
from cl_env import make_stream

MEMORIES = ("reservoir", "quantized", "codec")


def time_runs(env: str, budget: float, repeats: int, stream_kwargs: dict, options: dict) -> list[dict]:
    """Per memory: the median wall time of ``repeats`` runs of er (the memories interleaved, so
    that a change of machine load falls on all of them) and the last run's numbers."""
    walls: dict[str, list[float]] = {m: [] for m in MEMORIES}
    results = {}
    for _ in range(repeats):
        for memory in MEMORIES:
            settings = {f"memory.{k}": v for k, v in options[memory].items()}
            start = time.perf_counter()
            results[memory] = run(env, agent="er", memory=memory, budget=budget, seed=0, progress=False,
                                  stream_kwargs=stream_kwargs, settings=settings or None)
            walls[memory].append(time.perf_counter() - start)
    return [{"memory": m, "wall_s": statistics.median(walls[m]), "items": results[m].items,
             "storage_bits": results[m].storage_bits, "retained": results[m].retained_accuracy} for m in MEMORIES]


def time_sample(env: str, memory: str, budget: float, stream_kwargs: dict, options: dict, draws: int = 300) -> float:
    """Median milliseconds of one ``sample(10)`` from a memory filled with the stream's first task."""
    stream = make_stream(env, **stream_kwargs)
    info = StreamInfo.from_stream(stream)
    mem = build_memory("er", memory, budget, info.memory_spec("cpu"), seed=0, options=options)
    x, y = stream.tasks[0].train_examples()
    x = x.float().div_(255.0)
    for s in range(0, len(x) - 9, 10):
        mem.observe(x[s:s + 10], 0, y[s:s + 10])
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(draws):
        start = time.perf_counter()
        mem.sample(10, generator=gen)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="MNISTRotations-v0")
    p.add_argument("--budget", type=float, default=100.0)
    p.add_argument("--tasks", type=int, default=5, help="n_tasks of the stream (a shorter stream, same per-step cost)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--set", action="append", default=[], metavar="MEMORY.KEY=VALUE",
                   help="an option of one memory, e.g. codec.quality=30 or quantized.bits=2")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    options: dict[str, dict] = {m: {} for m in MEMORIES}
    for item in a.set:
        key, _, value = item.partition("=")
        mem, _, opt = key.partition(".")
        options[mem][opt] = int(value) if value.lstrip("-").isdigit() else value
    kw = {"n_tasks": a.tasks}
    rows = time_runs(a.env, a.budget, a.repeats, kw, options)
    for row in rows:
        row["sample_ms"] = time_sample(a.env, row["memory"], a.budget, kw, options[row["memory"]])
    base = rows[0]
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"er on {a.env} ({a.tasks} tasks), budget {a.budget:g} effective examples, torch threads 1 "
          f"(OMP_NUM_THREADS={threads}), median of {a.repeats} runs")
    print("| memory | options | items | storage / budget | wall (s) | ratio to reservoir | sample(10) (ms) | retained |")
    print("|---|---|---|---|---|---|---|---|")
    c, h, w = make_stream(a.env, **kw).tasks[0].train_x.shape[1:]
    limit = int(a.budget * c * h * w * 8)
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in options[r["memory"]].items()) or "defaults"
        print(f"| {r['memory']} | {opts} | {r['items']} | {r['storage_bits']:,} / {limit:,} bits | {r['wall_s']:.2f} | "
              f"{r['wall_s'] / base['wall_s']:.2f} | {r['sample_ms']:.3f} | {100 * r['retained']:.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
