"""Where a run with the Scalable Recollection Module spends its time, per component.

Runs ``er`` and ``gem`` with ``--memory srm`` on the first ``--tasks`` tasks of
MNISTRotations-v0 and times, by wrapping the methods that do the work: the autoencoder's
training steps (Algorithm 1's N steps in ``observe``), decoding stored codes (the replay sets and
GEM's per-task memories), encoding the incoming batch, GEM's QP, and the rest (the learner's own
forward/backward, evaluation, bookkeeping). Wall-clock seconds from ``time.perf_counter``.

Usage:
    python benchmarks/srm_profile.py [--tasks 5] [--budget 100] [--set memory.n_sets=1]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch

from agents import run
from agents.harness.cli import parse_assignments

TIMES: dict[str, float] = defaultdict(float)


def timed(name, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name] += time.perf_counter() - t
    return wrapper


def instrument() -> None:
    import agents.gem as gem
    from memory import srm
    from memory.nets import discrete_vae

    vae = discrete_vae.DiscreteVAE
    srm.SRM._decode_rows = timed("decode stored codes", srm.SRM._decode_rows)
    vae.encode = timed("encode the batch", vae.encode)
    vae.loss = timed("autoencoder steps", vae.loss)  # forward; the backward and Adam are timed below
    torch.optim.Adam.step = timed("autoencoder steps", torch.optim.Adam.step)
    original_backward = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original_backward(self, *args, **kwargs)
        finally:
            if getattr(self, "_srm_loss", False):
                TIMES["autoencoder steps"] += time.perf_counter() - t

    torch.Tensor.backward = backward
    loss = vae.loss

    def tagged_loss(self, *args, **kwargs):
        out = loss(self, *args, **kwargs)
        out._srm_loss = True
        return out

    vae.loss = tagged_loss
    gem.gem_gradient = timed("GEM QP", gem.gem_gradient)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=5)
    p.add_argument("--budget", type=float, default=100)
    p.add_argument("--agents", nargs="*", default=["er", "gem"])
    p.add_argument("--set", nargs="*", default=[], help="settings, e.g. memory.n_sets=1")
    args = p.parse_args()
    instrument()
    settings = parse_assignments(args.set, "--set")
    print(f"MNISTRotations-v0, first {args.tasks} tasks, budget {args.budget:g}, {torch.get_num_threads()} thread(s), "
          f"settings {settings or '{}'}\n")
    print("| agent | total s | autoencoder steps | decode stored codes | encode the batch | GEM QP | rest |")
    print("|---|---|---|---|---|---|---|")
    for agent in args.agents:
        TIMES.clear()
        t = time.perf_counter()
        r = run("MNISTRotations-v0", agent=agent, memory="srm", budget=args.budget, settings=dict(settings),
                stream_kwargs={"n_tasks": args.tasks}, progress=False)
        total = time.perf_counter() - t
        parts = [TIMES[k] for k in ("autoencoder steps", "decode stored codes", "encode the batch", "GEM QP")]
        cells = " | ".join(f"{v:.1f} ({100 * v / total:.0f} %)" for v in [*parts, total - sum(parts)])
        print(f"| {agent} | {total:.1f} | {cells} |  retained {r.retained_accuracy:.4f}")


if __name__ == "__main__":
    main()
