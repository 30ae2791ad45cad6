"""The codec memory's quality, chosen by a measured rule after MRDC (Wang et al., ICLR 2022,
"Memory Replay with Data Compression for Continual Learning", arXiv:2202.06592, §4).

MRDC's quality/quantity trade-off: at quality ``q`` a budget holds ``N_q`` coded items, more as
``q`` falls, but each is less faithful. MRDC picks ``q`` without training at every quality: with
the model fixed, it compares the feature-space volume (the log-determinant of a determinantal
point process's kernel over the samples' features) of ``N_q`` compressed samples with that of the
same samples uncompressed, and keeps the most compressed quality whose ratio ``R_q`` stays at
least ``1 - eps``: the largest quantity that keeps what the features see.

Here: an MLP (784-100-100-10, SGD lr 0.1, one pass) learns the stream's first task; for each
quality on a grid, ``N_q`` is what the budget holds at the measured mean coded size (the bytes
kept once subtracted first); ``N_q`` examples of the first task (a fixed draw, nested across
qualities) are coded and decoded; with ``phi`` the L2-normalised penultimate features and the
kernel ``L = I + Phi^T Phi`` (the ``d x d`` form of the DPP's L-ensemble ``I + Phi Phi^T``, same
determinant), ``R_q = log det L(decoded) / log det L(original)``. The rule picks the smallest
``q`` with ``R_q >= 1 - eps`` (``eps = 0.05``).

    OMP_NUM_THREADS=1 python benchmarks/codec_quality.py --env MNISTRotations-v0 --budget 100
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.nn import functional as F

from agents.models import MLP, embed
from cl_env import make_stream
from memory.coders import make_coder

GRID = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90)


def feature_volume(phi: torch.Tensor) -> float:
    """``log det(I + Phi^T Phi)`` of L2-normalised features (``log det`` of the DPP L-ensemble
    ``I + Phi Phi^T`` over the samples)."""
    phi = F.normalize(phi.double(), dim=1)
    return float(torch.logdet(torch.eye(phi.shape[1], dtype=phi.dtype) + phi.T @ phi))


def quality_table(env: str, budget: float, codec: str = "jpeg", eps: float = 0.05, seed: int = 0) -> tuple[list, int]:
    """``(rows, chosen quality)``: per quality its mean coded bits, ``N_q`` and ``R_q``."""
    stream = make_stream(env)
    x8, y = stream.tasks[0].train_examples()
    x = x8.float().div(255.0)
    torch.manual_seed(seed)
    model = MLP(x[0].numel(), stream.n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for s in range(0, len(x), 10):
        loss = F.cross_entropy(model(x[s:s + 10]), y[s:s + 10])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    shape = tuple(x.shape[1:])
    example_bits = int(np.prod(shape)) * 8
    side_bits = int(np.ceil(np.log2(stream.n_classes))) + int(np.ceil(np.log2(max(stream.n_tasks, 2))))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    rows, chosen = [], None
    for q in GRID:
        coder = make_coder(codec, q, shape)
        codes = [coder.encode(im) for im in x8.numpy()]
        mean_bits = 8 * float(np.mean([len(b) for b in codes]))
        n_q = int((budget * example_bits - 8 * coder.shared_bytes) // (mean_bits + side_bits))
        pick = order[: min(n_q, len(x))]
        decoded = torch.from_numpy(np.stack([coder.decode(codes[i]) for i in pick.tolist()])).float().div(255.0)
        with torch.no_grad():
            r_q = feature_volume(embed(model, decoded)) / feature_volume(embed(model, x[pick]))
        rows.append({"quality": q, "bits": mean_bits, "n_q": n_q, "r_q": r_q})
        if chosen is None and r_q >= 1 - eps:
            chosen = q
    return rows, chosen if chosen is not None else GRID[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="MNISTRotations-v0")
    p.add_argument("--budget", type=float, default=100.0)
    p.add_argument("--codec", default="jpeg")
    p.add_argument("--eps", type=float, default=0.05)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    rows, chosen = quality_table(a.env, a.budget, a.codec, a.eps)
    print(f"{a.codec} on {a.env}'s first task, budget {a.budget:g} effective examples, eps {a.eps}")
    print("| quality | mean coded bits / item | items the budget holds (N_q) | R_q |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['quality']} | {r['bits']:.0f} | {r['n_q']} | {r['r_q']:.3f} |")
    print(f"chosen: quality {chosen} (the smallest with R_q >= {1 - a.eps:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
