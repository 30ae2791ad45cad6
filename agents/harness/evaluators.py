"""The fixed classifier whose features the Fréchet distance compares (LGM §7.10, eq. 20).

One small conv net per stream instance, trained on the training images of every task of the
stream (the "classifier trained on all tasks' data" of the reference code) and cached on disk,
so every agent and every stage of a run is measured with the same features.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cl_env.data.mnist import cache_dir
from cl_env.metrics import frechet_distance
from memory.safeload import UnsafeFileError, load_weights_only


class FeatureNet(nn.Module):
    """conv 32 - pool - conv 64 - pool - fc 128 (the features) - fc classes."""

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int):
        super().__init__()
        c, h, w = image_shape
        self.body = nn.Sequential(nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU())
        self.head = nn.Linear(128, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def features(self, x: torch.Tensor, chunk: int = 1000) -> np.ndarray:
        self.eval()
        return torch.cat([self.body(x[s:s + chunk]) for s in range(0, len(x), chunk)]).cpu().double().numpy()


def _key(stream, epochs: int, seed: int) -> str:
    desc = json.dumps({"stream": stream.describe(), "n": stream.n_train, "epochs": epochs, "seed": seed},
                      sort_keys=True, default=str)
    return hashlib.sha256(desc.encode()).hexdigest()[:16]


def feature_classifier(stream, device: str = "cpu", epochs: int = 2, seed: int = 0,
                       cache: bool = True) -> tuple[FeatureNet, float]:
    """The stream's feature net and its test accuracy, trained once (Adam 1e-3, batches of 128)
    and cached under ``$CL_ENV_CACHE/evaluators``."""
    net = FeatureNet(stream.image_shape, stream.n_classes)
    path = cache_dir() / "evaluators" / f"{_key(stream, epochs, seed)}.pt"
    if cache and path.exists():
        try:  # weights only; a cache that does not load or fit is retrained, with one line saying so
            state = load_weights_only(path, "evaluator cache", "it is retrained")
            net.load_state_dict(state["net"])
            return net.to(device).eval(), float(state["accuracy"])
        except (UnsafeFileError, KeyError, TypeError, RuntimeError) as exc:
            import sys

            print(f"cl-env: rebuilt the cache {path}: {exc}", file=sys.stderr)
    x = torch.cat([t.train_examples()[0] for t in stream.tasks])
    y = torch.cat([t.train_examples()[1] for t in stream.tasks])
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = FeatureNet(stream.image_shape, stream.n_classes)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for s in range(0, len(x), 128):
            idx = order[s:s + 128]
            loss = F.cross_entropy(net(x[idx].float().div_(255.0)), y[idx].long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    tx = torch.cat([t.test_x for t in stream.tasks]).float().div_(255.0)
    ty = torch.cat([t.test_y for t in stream.tasks])
    with torch.no_grad():
        acc = float(torch.cat([net(tx[s:s + 1000]).argmax(1) for s in range(0, len(tx), 1000)]).eq(ty).float().mean())
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"net": net.state_dict(), "accuracy": acc}, tmp)
        tmp.replace(path)
    return net.to(device), acc


def generative_frechet(net: FeatureNet, samples: torch.Tensor, real: torch.Tensor) -> float:
    """Fréchet distance between the features of ``samples`` and ``real`` (both floats in [0, 1])."""
    return frechet_distance(net.features(samples), net.features(real))
