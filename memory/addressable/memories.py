"""Bases and addressing matrices (Deng & Russakovsky, *Remember the Past*, eq. 2).

A dataset is compressed into ``n`` bases ``b_k`` (stored at ``1/ds`` resolution, upsampled
bilinearly) and addressing matrices ``A_i`` (one per recall slot ``i``); a query ``y`` (a one-hot
label, or any vector) recalls ``x'_i = y^T A_i [b_0; ...; b_{n-1}]``. Labels are not stored:
recalling class ``k`` means ``y = e_k``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class AddressableMemories(nn.Module):
    """Bases ``(n, C, H/ds, W/ds)`` and addressing ``(r, d_y, n)``: ``r`` recall slots for queries of size ``d_y``.

    With one-hot queries, ``addressing[i, k]`` is the coefficient row of class ``k``'s ``i``-th
    image (the reference's per-(class, slot) rows); :meth:`recall` takes any query vectors.
    """

    def __init__(self, image_shape: tuple[int, int, int], n_classes: int, n_bases: int, rows: int,
                 ds: int = 2, generator: torch.Generator | None = None, init: torch.Tensor | None = None,
                 init_labels: torch.Tensor | None = None):
        super().__init__()
        c, h, w = image_shape
        self.image_shape, self.n_classes, self.ds = tuple(image_shape), n_classes, ds
        small = (c, math.ceil(h / ds), math.ceil(w / ds))
        if init is not None:  # start the bases from real images (downsampled)
            idx = torch.arange(n_bases) % len(init)
            bases = F.interpolate(init[idx].float(), size=small[1:], mode="bilinear", align_corners=False)
        else:
            bases = torch.randn((n_bases, *small), generator=generator) * 0.1 + 0.5
        self.bases = nn.Parameter(bases)
        if init_labels is None:
            coef = torch.randn((rows, n_classes, n_bases), generator=generator) / math.sqrt(n_bases) + 1.0 / n_bases
        else:  # every slot of class k starts at (the mean of) the bases taken from class k's images,
            # plus noise; a class with no base of its own (fewer bases than classes) starts at the
            # mean of all bases, so that every class recalls an image, never a near-blank one
            coef = 0.1 * torch.randn((rows, n_classes, n_bases), generator=generator) / math.sqrt(n_bases)
            own = F.one_hot(init_labels.long().cpu(), n_classes).T.float()  # (K, n)
            own[own.sum(1) == 0] = 1.0
            coef += own / own.sum(1, keepdim=True)
        self.addressing = nn.Parameter(coef)
        # the classes this memory answers for (a task may hold only some): recall_classes' default
        self.register_buffer("classes", torch.arange(n_classes))

    @property
    def rows(self) -> int:
        return self.addressing.shape[0]

    def to_state(self) -> dict:
        """Tensors and plain values only (what a weights-only checkpoint admits)."""
        return {"image_shape": list(self.image_shape), "n_classes": int(self.n_classes), "ds": int(self.ds),
                "bases": self.bases.detach().clone(), "addressing": self.addressing.detach().clone(),
                "classes": self.classes.clone(), "requires_grad": bool(self.bases.requires_grad)}

    @classmethod
    def from_state(cls, state: dict) -> AddressableMemories:
        """Rebuild what :meth:`to_state` wrote."""
        mem = cls(tuple(state["image_shape"]), state["n_classes"], state["bases"].shape[0],
                  state["addressing"].shape[0], ds=state["ds"])
        with torch.no_grad():
            mem.bases = nn.Parameter(state["bases"].clone())
            mem.addressing = nn.Parameter(state["addressing"].clone())
        mem.classes = state["classes"].clone()
        return mem.to(state["bases"].device).requires_grad_(state["requires_grad"])

    @property
    def floats(self) -> int:
        return self.bases.numel() + self.addressing.numel()

    def full_bases(self) -> torch.Tensor:
        """The bases bilinearly upsampled to the image size, flattened: ``(n, C*H*W)``."""
        up = F.interpolate(self.bases, size=self.image_shape[1:], mode="bilinear", align_corners=False)
        return up.flatten(1)

    def recall(self, y: torch.Tensor) -> torch.Tensor:
        """``x'_i = y^T A_i B`` for every query row of ``y`` ``(m, d_y)`` and slot ``i``: ``(m, r, C, H, W)``."""
        coef = torch.einsum("md,rdn->mrn", y, self.addressing)
        return (coef @ self.full_bases()).view(len(y), self.rows, *self.image_shape)

    def recall_classes(self, classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every slot of the given classes (all by default): images ``(m * r, C, H, W)`` and labels."""
        classes = self.classes if classes is None else classes
        y = F.one_hot(classes.to(self.bases.device), self.n_classes).to(self.bases.dtype)
        x = self.recall(y).flatten(0, 1)
        return x, classes.to(self.bases.device).repeat_interleave(self.rows)


def bases_from_data(x: torch.Tensor, y: torch.Tensor, n_bases: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Real images to start the bases from, cycling over the classes present in a random order (a
    random image each), and their labels (for :class:`AddressableMemories`' ``init_labels``).

    With fewer bases than classes, the classes that seed a base are drawn at random (not always
    the lowest labels); the others start from the mean of all bases. With at least one base per
    class the classes are taken in label order."""
    present = torch.unique(y)
    if n_bases < len(present):
        present = present[torch.randperm(len(present), generator=generator)]
    present = present.tolist()
    picks, labels = [], []
    for j in range(n_bases):
        k = present[j % len(present)]
        idx = torch.nonzero(y == k).flatten()
        picks.append(int(idx[torch.randint(0, len(idx), (1,), generator=generator)]))
        labels.append(k)
    return x[picks], torch.tensor(labels)
