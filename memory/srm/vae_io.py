"""SRM's autoencoder for transfer: pretrain a discrete VAE, save it, load it (weights only)."""

from __future__ import annotations

from pathlib import Path

import torch

from memory.nets.discrete_vae import DiscreteVAE
from memory.safeload import load_weights_only


def save_vae(vae: DiscreteVAE, path: str) -> None:
    """Save a discrete VAE with its shape, for ``SRM(..., vae_path=path)`` (transfer)."""
    torch.save({"image_shape": [int(v) for v in vae.image_shape], "c": int(vae.c), "l": int(vae.l),
                "tau": float(vae.tau), "state": dict(vae.state_dict())}, path)


def load_vae(path: str) -> DiscreteVAE:
    """Load what :func:`save_vae` wrote."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no pretrained VAE at {path}; write one with `cl-env pretrain-srm`")
    # weights only: a crafted file is refused before anything in it can run
    d = load_weights_only(path, "memory.vae_path", "write it with `cl-env pretrain-srm`")
    keys = {"image_shape", "c", "l", "tau", "state"}
    if not isinstance(d, dict) or not keys <= set(d):
        raise ValueError(f"memory.vae_path {path} is not a cl-env SRM autoencoder (expected keys "
                         f"{sorted(keys)}); write one with `cl-env pretrain-srm`")
    vae = DiscreteVAE(tuple(d["image_shape"]), d["c"], d["l"], d["tau"])
    vae.load_state_dict(d["state"])
    return vae


def pretrain_vae(vae: DiscreteVAE, x: torch.Tensor, epochs: int = 1, batch_size: int = 64,
                 lr: float = 1e-3, seed: int = 0) -> list[float]:
    """Train a discrete VAE on images ``x`` (uint8 or float in [0, 1]) with Adam; returns the
    mean loss of each epoch. For transfer: pretrain on one dataset, then start SRM from it."""
    g = torch.Generator().manual_seed(seed)
    x = x.float().div(255.0) if x.dtype == torch.uint8 else x
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    history = []
    vae.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for s in range(0, len(x), batch_size):
            loss = vae.loss(x[order[s:s + batch_size]], g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(order[s:s + batch_size])
        history.append(total / len(x))
    vae.eval()
    return history
