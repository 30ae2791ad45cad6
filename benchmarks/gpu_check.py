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

ENV = "MNISTRotations-v0"
LOG_EVERY = 50


def one(agent: str, memory: str | None, device: str, steps: int, budget: float | None, count_syncs: bool = False):
    budget = budget_for(agent, memory, budget)
    stream = {"n_tasks": 2, "train_per_task": steps * 10 // 2}
    syncs = 0
    t = time.perf_counter()
    if count_syncs:
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                r = run(ENV, agent=agent, memory=memory, budget=budget, device=device, stream_kwargs=stream,
                        progress=False, log_every=LOG_EVERY)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        torch.cuda.synchronize()
    else:
        r = run(ENV, agent=agent, memory=memory, budget=budget, device=device, stream_kwargs=stream,
                progress=False, log_every=LOG_EVERY)
    return r, time.perf_counter() - t, syncs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=200, help="batches of 10 over the two tasks")
    p.add_argument("--agents", nargs="*", default=None)
    p.add_argument("--memories", nargs="*", default=None, help="only these memories (memoryless agents still run)")
    p.add_argument("--budget", type=float, default=None, help="default: each agent's")
    p.add_argument("--tolerance", type=float, default=0.03, help="largest |CPU - CUDA| accuracy entry")
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
    print(f"\n{len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
