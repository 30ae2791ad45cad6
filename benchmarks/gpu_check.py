"""The GPU path, checked: every agent with every memory it accepts, a few hundred steps on
``--device``, against the CPU.

For each (agent, memory) pair (classification agents; ``sb3`` and the generative agents are
left out: they run on other streams) on a two-task ``MNISTRotations-v0`` of ``--steps`` batches:

- ``--device cpu``: the run twice; the two accuracy matrices must be equal (determinism).
- ``--device cuda``: the run on the CPU and on CUDA; the accuracy matrices must agree within
  ``--tolerance`` (float sums differ between devices, so not bit for bit), and the CUDA run is
  made under ``torch.cuda.set_sync_debug_mode("warn")``: every synchronising call (a ``.item()``,
  a host copy) is counted. The runner synchronises at task ends and loss logs by design; a pair
  whose synchronisations grow with the steps (more than one per ``log_every`` steps besides the
  task ends) fails: its hot path copies to the host.
- Timings: wall time on each device for every pair (the GEM and SRM rows are the ones to read).
- ``--seeds K`` (default 5): the agents that train seeds together (``online``, ``er``, ``ewc``,
  ``lwf``, ``agem``, ``der``, ``derpp``, ``er_ace``) run K seeds stacked on ``--device`` (:func:`agents.harness.runner.run_seeds`)
  against the same seeds one after another on the CPU: equal on the CPU at one thread, within
  ``--tolerance`` otherwise; on CUDA their synchronisations are counted as above (K seeds' worth
  allowed) and the stacked time is set against K separate CUDA runs.

Exit status 1 when any check fails. Usage:
    python benchmarks/gpu_check.py --device cuda [--steps 200] [--agents gem er] [--tolerance 0.03]
    python benchmarks/gpu_check.py --device cpu          # what CI can run without a GPU
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import torch
from common import budget_for, pairs

from agents import run
from agents.harness.runner import run_seeds

ENV = "MNISTRotations-v0"
LOG_EVERY = 50


def timed(fn, *args, count_syncs: bool = False, **kwargs):
    """``(fn(*args, **kwargs), seconds, synchronisations)``: with ``count_syncs`` (CUDA), ``fn`` runs under
    ``torch.cuda.set_sync_debug_mode("warn")`` between two device synchronisations and every
    synchronising call it makes is counted; else the count is 0."""
    if not count_syncs:
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        return out, time.perf_counter() - t, 0
    torch.cuda.synchronize()
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = fn(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return out, time.perf_counter() - t, sum("synchroniz" in str(w.message) for w in caught)


def one(agent: str, memory: str | None, device: str, steps: int, budget: float | None, count_syncs: bool = False):
    budget = budget_for(agent, memory, budget)
    stream = {"n_tasks": 2, "train_per_task": steps * 10 // 2}
    return timed(run, ENV, agent=agent, memory=memory, budget=budget, device=device, stream_kwargs=stream,
                 progress=False, log_every=LOG_EVERY, count_syncs=count_syncs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=200, help="batches of 10 over the two tasks")
    p.add_argument("--agents", nargs="*", default=None)
    p.add_argument("--memories", nargs="*", default=None, help="only these memories (memoryless agents still run)")
    p.add_argument("--budget", type=float, default=None, help="default: each agent's")
    p.add_argument("--tolerance", type=float, default=0.03, help="largest |CPU - CUDA| accuracy entry")
    p.add_argument("--seeds", type=int, default=5, help="K of the stacked-seeds check (0: skip it)")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device; run with --device cpu", file=sys.stderr)
        return 2
    cuda = args.device.startswith("cuda")
    print(f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if cuda else "")
          + f", torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), {args.steps} steps per run")
    head = ("| agent | memory | CPU s | CUDA s | speed-up | max abs. accuracy diff | syncs (allowed) | check |"
            if cuda else "| agent | memory | run 1 s | run 2 s | identical | check |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    failed = []
    allowed = 2 * 4 + args.steps // LOG_EVERY * 2  # task ends (evaluation, storage, visuals) + loss logs
    for agent, memory in pairs(args.agents, args.memories):
        ref, t_ref, _ = one(agent, memory, "cpu", args.steps, args.budget)
        if cuda:
            r, t, syncs = one(agent, memory, args.device, args.steps, args.budget, count_syncs=True)
            diff = float(np.nanmax(np.abs(np.array(ref.accuracy_matrix) - np.array(r.accuracy_matrix))))
            ok = diff <= args.tolerance and syncs <= allowed and r.status == ref.status
            print(f"| {agent} | {ref.memory or '–'} | {t_ref:.2f} | {t:.2f} | {t_ref / t:.1f}× | {diff:.4f} | "
                  f"{syncs} ({allowed}) | {'ok' if ok else 'FAILED'} |", flush=True)
        else:
            r, t, _ = one(agent, memory, "cpu", args.steps, args.budget)
            same = ref.accuracy_matrix == r.accuracy_matrix and ref.status == r.status
            ok = same
            print(f"| {agent} | {ref.memory or '–'} | {t_ref:.2f} | {t:.2f} | {'yes' if same else 'NO'} | "
                  f"{'ok' if ok else 'FAILED'} |", flush=True)
        if not ok:
            failed.append(f"{agent}+{ref.memory}")
    if args.seeds > 1:
        failed += seeds_check(args, allowed)
    print(f"\n{len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


STACKED = ("online", "er", "ewc", "lwf", "agem", "der", "derpp", "er_ace")


def seeds_check(args, allowed: int) -> list[str]:
    """K seeds stacked on ``args.device`` against the same seeds one after another on the CPU."""
    cuda = args.device.startswith("cuda")
    seeds = list(range(args.seeds))
    stream = {"n_tasks": 2, "train_per_task": args.steps * 10 // 2}
    print(f"\n{args.seeds} seeds stacked on {args.device} against one after another on the CPU")
    head = "| agent | CPU in turn s | stacked s | K runs s | max abs. accuracy diff | syncs (allowed) | check |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    failed = []
    for agent in [a for a in (args.agents or STACKED) if a in STACKED]:
        common = {"agent": agent, "seeds": seeds, "stream_kwargs": stream, "progress": False, "log_every": LOG_EVERY}
        ref, t_ref, _ = timed(run_seeds, ENV, device="cpu", stack=False, **common)
        got, t_st, syncs = timed(run_seeds, ENV, device=args.device, count_syncs=cuda, **common)
        # K separate runs on the device (their results are read back, so the device is done)
        t_k = timed(run_seeds, ENV, device=args.device, stack=False, **common)[1] if cuda else t_ref
        stacked = got[0].config["derived"].get("stacked_seeds") == args.seeds
        diff = max(float(np.nanmax(np.abs(np.array(a.accuracy_matrix) - np.array(b.accuracy_matrix))))
                   for a, b in zip(ref, got, strict=True))
        exact = not cuda and torch.get_num_threads() == 1
        ok = stacked and (diff == 0 if exact else diff <= args.tolerance) and syncs <= allowed * args.seeds
        print(f"| {agent} | {t_ref:.2f} | {t_st:.2f} | {t_k:.2f} | {diff:.4f}{' (must be 0)' if exact else ''} | "
              f"{syncs} ({allowed * args.seeds}) | {'ok' if ok else 'FAILED'} |", flush=True)
        if not ok:
            failed.append(f"{agent} x{args.seeds} stacked")
    return failed


if __name__ == "__main__":
    sys.exit(main())
