"""REMIND (Hayes, Kafle, Shrestha, Acharya & Kanan, "REMIND Your Neural Network to Prevent
Catastrophic Forgetting", ECCV 2020): replay of product-quantised mid-level features through
the plastic upper layers of a network whose lower layers are frozen after a base initialisation."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from agents.base import Agent


def random_resized_crops(z: torch.Tensor, scale: tuple[float, float], generator: torch.Generator,
                         ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """REMIND's augmentation of reconstructed feature maps ``(n, C, H, W)``: each map is cropped
    to a random box (area fraction in ``scale``, aspect ratio log-uniform in ``ratio``, ten tries
    as torchvision's ``RandomResizedCrop``, else the whole map) and resized back to ``H x W``
    bilinearly (REMIND's ``utils.RandomResizeCrop``, scale ``(2/7, 1)`` on its 7x7 maps)."""
    n, _, h, w = z.shape
    out = torch.empty_like(z)
    u = torch.rand(n, 10, 4, generator=generator)
    for k in range(n):
        box = (0, 0, h, w)
        for a in range(10):
            area = (scale[0] + (scale[1] - scale[0]) * float(u[k, a, 0])) * h * w
            r = math.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * float(u[k, a, 1]))
            cw, ch = round(math.sqrt(area * r)), round(math.sqrt(area / r))
            if 0 < cw <= w and 0 < ch <= h:
                i, j = int(float(u[k, a, 2]) * (h - ch + 1)), int(float(u[k, a, 3]) * (w - cw + 1))
                box = (i, j, ch, cw)
                break
        i, j, ch, cw = box
        out[k] = F.interpolate(z[k:k + 1, :, i:i + ch, j:j + cw], size=(h, w), mode="bilinear",
                               align_corners=False)[0]
    return out


def mixup_loss(logits: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor, lam: float) -> torch.Tensor:
    """Per-item manifold-mixup loss ``lam * CE(logits, ya) + (1 - lam) * CE(logits, yb)``
    (REMIND's ``mixup_criterion``; Verma et al. 2019)."""
    return lam * F.cross_entropy(logits, ya, reduction="none") + (1 - lam) * F.cross_entropy(logits, yb, reduction="none")


class Remind(Agent):
    """REMIND: base initialisation, then a frozen lower network and replay of PQ codes (ECCV 2020).

    1. Base initialisation (the paper's method section; the code's ``fit_pq``): during the first ``base_tasks`` tasks
       (or until ``base_classes`` classes have been seen, when > 0) the whole network trains on
       the stream as online SGD does; the ``pq`` memory holds the base examples. At the base
       phase's end the network takes ``base_epochs - 1`` more shuffled passes over them (REMIND
       trains its base offline for many epochs; 1 keeps the single online pass), the layers below
       the memory's cut ``memory.layer`` (REMIND's ``G``) are frozen, and the memory fits its
       product quantiser on their features and stores the base examples as codes.
    2. Streaming (the reference code's ``fit_incremental_batch``): each batch's features go
       through the frozen ``G``, are PQ-encoded and decoded (the new examples are trained on as
       reconstructed, and so are test examples: REMIND predicts on reconstructions), and join
       ``replay_batch`` reconstructed replay items; the upper layers (``F``) take one SGD step on
       the mean loss over the joined batch; then the new examples' codes are stored.

    Augmentation of the reconstructed replay features (the paper's replay augmentation):
    random resized crops (scale ``(crop_min, 1)``) where the features are maps (CNN cuts); for
    an MLP cut (a vector) cropping has no meaning and is skipped. Manifold mixup (``mixup_alpha``
    > 0) applies to both: two replay batches are drawn and mixed with ``lam ~ Beta(alpha,
    alpha)``, labels mixed in the loss, the new examples unmixed (REMIND's code; ``0.1`` on
    ImageNet). Everything goes through :meth:`Agent.forward` (``layer=`` the cut), the one path
    every learner uses for features.

    Settings:
        replay_batch: Replayed items per step (50, REMIND's).
        base_tasks: Tasks of base initialisation (1).
        base_classes: If > 0, the base phase ends at the first task end with this many classes seen.
        base_epochs: Passes over the base examples, the online one included (1).
        mixup_alpha: Beta parameter of manifold mixup on replayed features (0.1; 0 disables).
        crop_min: Smallest crop area fraction of the random resized crops (2/7, REMIND's).
        augment: Random resized crops on feature maps (True; no effect on vector features).
    """

    name = "remind"
    SETTINGS = {"replay_batch": 50, "base_tasks": 1, "base_classes": 0, "base_epochs": 1, "mixup_alpha": 0.1,
                "crop_min": 2 / 7, "augment": True}
    SETTING_RULES = {"replay_batch": "count", "base_tasks": "count", "base_epochs": "count",
                     "mixup_alpha": "non-negative"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not callable(getattr(self.memory, "fit", None)) or not callable(getattr(self.memory, "reconstruct", None)):
            raise ValueError("agent 'remind' needs the pq memory (--memory pq)")
        if not 0 < self.settings["crop_min"] <= 1:
            raise ValueError(f"setting crop_min of agent 'remind' must be in (0, 1], got {self.settings['crop_min']}")
        for key, limit, what in (("base_tasks", self.info.n_tasks, "tasks"), ("base_classes", self.info.n_classes,
                                                                             "classes")):
            if self.settings[key] > limit:
                raise ValueError(f"setting {key}={self.settings[key]} of agent 'remind' exceeds the stream's {limit} "
                                 f"{what}: the base phase would never end (--set {key}=1..{limit})")
        self.base_done = False
        self.seen: set[int] = set()
        self.np_rng = np.random.default_rng(self.seed + 2)
        self._codes: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def cut(self) -> str:
        return self.memory.layer

    def forward(self, x, t, model=None, layer=None):
        """After base initialisation, images go ``G`` -> PQ encode/decode -> ``F`` (REMIND's
        training and prediction path); replayed features (``layer``) go through ``F`` only."""
        if self.base_done and layer is None and model is None:
            z, codes = self.memory.reconstruct(self.features(x, self.cut))
            self._codes = (x, codes)  # the batch's codes, stored by learn without encoding it twice
            return super().forward(z, t, layer=self.cut)
        return super().forward(x, t, model, layer)

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        self.seen.update(y.tolist())
        if not self.base_done:
            loss = self.loss(logits, y)
            self.sgd_step(loss)
            self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self)
            return {"loss": loss.detach()}
        items = F.cross_entropy(logits, y, reduction="none")
        out = {"loss": items.mean().detach()}
        r, alpha = self.settings["replay_batch"], self.settings["mixup_alpha"]
        mem = self.memory.sample(2 * r if alpha > 0 else r, ctx=self, generator=self.generator)
        if mem is not None:
            z = mem.x
            if self.settings["augment"] and z.ndim == 4:
                z = random_resized_crops(z, (self.settings["crop_min"], 1.0), self.generator)
            if alpha > 0:
                lam = float(self.np_rng.beta(alpha, alpha))
                mixed = lam * z[:r] + (1 - lam) * z[r:]
                r_logits = self.forward(mixed, mem.t[:r] if self.masked else None, layer=mem.layer)
                r_items = mixup_loss(r_logits, mem.y[:r], mem.y[r:], lam)
            else:
                r_items = F.cross_entropy(self.forward(z, mem.t if self.masked else None, layer=mem.layer), mem.y,
                                          reduction="none")
            out["replay_loss"] = r_items.mean().detach()
            items = torch.cat([items, r_items])
        self.sgd_step(items.mean())
        codes = self._codes[1] if self._codes is not None and self._codes[0] is x else None
        self._codes = None
        self.memory.observe(x.detach(), t if t is not None else 0, y, ctx=self, codes=codes)
        return out

    def on_task_end(self, t: int) -> None:
        if self.base_done:
            return
        wanted = self.settings["base_classes"]
        if (len(self.seen) < wanted) if wanted > 0 else (t + 1 < self.settings["base_tasks"]):
            return
        self._base_epochs()
        self.slow_lower(self.cut, 0.0)
        self.memory.fit(self)
        self.base_done = True

    def _base_epochs(self, batch: int = 10) -> None:
        """The extra passes of base initialisation over the held base examples."""
        x, y, ts = self.memory.base_examples()
        for _ in range(self.settings["base_epochs"] - 1):
            order = torch.randperm(len(y), generator=self.generator).to(y.device)
            for i in range(0, len(y), batch):
                idx = order[i:i + batch]
                self.sgd_step(self.loss(self.forward(x[idx], ts[idx] if self.masked else None), y[idx]))

    def extra_state(self) -> dict:
        return {"base_done": self.base_done, "seen": sorted(self.seen), "np_rng": self.np_rng.bit_generator.state}

    def load_extra_state(self, state: dict) -> None:
        self.base_done = bool(state["base_done"])
        self.seen = set(state["seen"])
        self.np_rng.bit_generator.state = state["np_rng"]
