"""Time of one learning step with image replay against feature replay (latent, REMIND's PQ).

Each row builds an agent and its memory, fills the memory with a first task of ``--fill``
batches and ends that task (the feature memories freeze the layers below their cut there; the
``pq`` memory fits its quantiser), then times ``--steps`` steps (``act`` then ``observe``: the
current batch's forward, the replayed items' forward, one backward and SGD step, the memory's
write) in the second task. Figures are per step, medians of ``--repeats`` timings, one thread.

What differs: image replay runs the replayed images through the whole model with gradient;
latent and PQ replay run them through the layers above the cut only, and the current batch
through the frozen lower part without gradient (PQ adds its encode/decode).

The inputs are random tensors of the stream's shape (content does not change the arithmetic):
``mlp`` uses SplitMNIST's 1x28x28 and the MLP 784-100-100-10 cut at ``hidden1``;
``reduced_resnet18`` CIFAR's 3x32x32 and GEM's reduced ResNet-18 cut at ``--resnet-cut``.

``--fit`` instead times the product quantiser's fit with each backend (``kmeans``, and
``faiss`` when faiss-cpu is installed) on ReLU features of the two cuts' sizes, with the
reconstruction's relative squared error.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/feature_replay.py [--models mlp reduced_resnet18] [--repeats 3]
    OMP_NUM_THREADS=1 python benchmarks/feature_replay.py --fit
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import torch

from agents import StreamInfo, agent_class
from agents.registry import build_memory
from memory.pq import fit_codebooks, pq_decode, pq_encode

SHAPES = {"mlp": (1, 28, 28), "reduced_resnet18": (3, 32, 32)}


def rows(model: str, cut: str) -> list[tuple[str, str, str, dict, dict]]:
    """``(label, agent, memory, agent settings, memory options)`` of each timed configuration."""
    pq = {"layer": cut, "m": 10 if model == "mlp" else 8, "nbits": 8}
    return [
        ("er + reservoir (images)", "er", "reservoir", {}, {}),
        ("er + latent (8-bit features)", "er", "latent", {}, {"layer": cut}),
        ("remind + pq (replay 10, no mixup)", "remind", "pq", {"replay_batch": 10, "mixup_alpha": 0.0}, pq),
        ("remind + pq (REMIND's 50 + mixup)", "remind", "pq", {}, pq),
    ]


def step_time(model: str, agent: str, memory: str, settings: dict, options: dict, fill: int, steps: int,
              budget: float) -> float:
    """Seconds per step of the second task (after the first task's end), for one fresh agent."""
    shape = SHAPES[model]
    info = StreamInfo(shape, 10, 2, "class", ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)))
    mem = build_memory(agent, memory, budget, info.memory_spec("cpu"), options=options)
    a = agent_class(agent)(info, mem, {"model": model, **settings}, seed=0)
    gen = torch.Generator().manual_seed(0)

    def batch(t: int) -> dict:
        return {"x": torch.rand(10, *shape, generator=gen), "t": t}, torch.randint(5 * t, 5 * t + 5, (10,),
                                                                                     generator=gen)

    for _ in range(fill):
        obs, y = batch(0)
        a.act(obs)
        a.observe(obs, y)
    a.end_task(0)
    work = [batch(1) for _ in range(steps)]
    start = time.perf_counter()
    for obs, y in work:
        a.act(obs)
        a.observe(obs, y)
    return (time.perf_counter() - start) / steps


def fit_times(repeats: int) -> None:
    """The quantiser's fit per backend: 800 vectors of 100 (an MLP cut over a SplitMNIST base
    task) and 19,200 of 80 (300 CIFAR images' 8x8 positions at the reduced ResNet's stage 3)."""
    backends = ["kmeans"] + (["faiss"] if importlib.util.find_spec("faiss") else [])
    print("| vectors x size, m | backend | fit s | relative squared error |")
    print("|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for n, d, m in ((800, 100, 10), (19200, 80, 8)):
        x = torch.relu(torch.randn(n, d, generator=g) @ torch.randn(d, d, generator=g) * 0.3)
        for backend in backends:
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                cb = fit_codebooks(x, m, 8, backend, seed=0)
                times.append(time.perf_counter() - start)
            err = float((pq_decode(pq_encode(x, cb), cb) - x).pow(2).mean() / x.pow(2).mean())
            print(f"| {n} x {d}, m={m} | {backend} | {statistics.median(times):.2f} | {err:.4f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["mlp", "reduced_resnet18"], choices=sorted(SHAPES))
    p.add_argument("--resnet-cut", default="stage3")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fill", type=int, default=60, help="first-task batches (the pq base set: fill x 10 examples)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--budget", type=float, default=200)
    p.add_argument("--fit", action="store_true", help="time the quantiser's fit per backend instead")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.fit:
        fit_times(args.repeats)
        return
    print(f"one thread; medians of {args.repeats}; {args.steps} steps of batch 10 after a first task of "
          f"{args.fill} batches; budget {args.budget:g}\n")
    print("| model (cut) | configuration | ms / step | vs image replay |")
    print("|---|---|---|---|")
    for model in args.models:
        cut = "hidden1" if model == "mlp" else args.resnet_cut
        base = None
        for label, agent, memory, settings, options in rows(model, cut):
            t = statistics.median(step_time(model, agent, memory, settings, options, args.fill, args.steps,
                                            args.budget) for _ in range(args.repeats))
            base = base or t
            print(f"| {model} ({cut}) | {label} | {1000 * t:.2f} | {t / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
