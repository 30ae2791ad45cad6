"""Automatic Recall Machines (Ji et al.), Algorithm 1 with distillation, and its ADI baseline.

Each step: refresh the old model when the lag expires; one SGD step on the real batch (line 5);
recall ``M`` inputs from the model itself (lines 6-8, :class:`memory.self_recall.SelfRecall`);
one SGD step on the recalled batch with the old model's soft targets plus the distillation of the
old model's outputs on the real batch (line 9). Table 4's hyperparameters are settings whose
defaults depend on the data (MNIST, CIFAR-10 or MiniImageNet-sized images).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from agents.base import Agent
from cl_env import checks
from memory.self_recall import ARM_DEFAULTS, soft_cross_entropy

# Table 4 of the paper, by dataset
PROFILES = {
    "mnist": {"lr": 0.05, "step_size": 25.0, "M": 10, "lambda3": 16.0, "lambda4": 0.1, "lambda0_real": 1.0},
    "cifar10": {"lr": 0.01, "step_size": 10.0, "M": 100, "lambda3": 16.0, "lambda4": 0.1, "lambda0_real": 1.0},
    "miniimagenet": {"lr": 0.01, "step_size": 10.0, "M": 100, "lambda3": 1.0, "lambda4": 1.0, "lambda0_real": 2.0},
}
# ADI as ARM's reference runs it (commands.txt: no --sharpen_class; --aux_distill_weight 0.5 on
# MNIST, default 1.0 on CIFAR-10, 2.0 on MiniImageNet; --opt_batch_stats_weight 0.1 on the ResNets)
ADI_PROFILES = {
    "mnist": {"lr": 0.05, "step_size": 25.0, "M": 10, "lambda4": 0.0, "lambda0_real": 0.5, "bn_weight": 0.0},
    "cifar10": {"lr": 0.01, "step_size": 10.0, "M": 100, "lambda4": 0.0, "lambda0_real": 1.0, "bn_weight": 0.1},
    "miniimagenet": {"lr": 0.01, "step_size": 10.0, "M": 100, "lambda4": 0.0, "lambda0_real": 2.0,
                     "bn_weight": 0.1},
}
RECALL_KEYS = tuple(ARM_DEFAULTS)


def profile_for(image_shape: tuple[int, int, int]) -> str:
    """MNIST for grey images, MiniImageNet for 64 pixels and more, CIFAR-10 otherwise."""
    c, h, _ = image_shape
    return "mnist" if c == 1 else "miniimagenet" if h >= 64 else "cifar10"


def _lag(name: str, value):
    if value == "task":
        return value
    if not checks.is_int(value) or value < 1:
        raise checks.fail(name, value, "'task' or an integer >= 1 (steps)", "--set lag=task")
    return value


class ARM(Agent):
    """ARM (Algorithm 1). Settings left at None take Table 4's value for the data's profile.

    Settings:
        lr: eta_0 (MNIST 0.05, CIFAR-10/MiniImageNet 0.01).
        step_size: eta_1, the recall step (25 / 10).
        M: recalled inputs per step (10 on MNIST, 100 otherwise).
        steps: S, input-gradient steps (10).
        lag: ``"task"`` (one task's iterations: refresh at each task's first batch) or an int of
            steps (1 = unit lag, which also weights the divergence by 8 as the paper does).
        lambda0: weight of the loss on recalled data (1); lambda0_real: of the distillation on
            the real batch (1; 2 on MiniImageNet).
        lambda1 .. lambda6: eq. 8-9 (1, 0.1, 16 [1 on MiniImageNet], 0.1 [1], 1, 1).
        divergence_weight: weight of D (1; 8 for unit lag).
        init: ``"batch"`` or ``"noise"`` (Table 7's random-noise ablation).
        recalls: recall-and-learn rounds per step (Table 7: 2 and 4).
        recall_mode: ``"train"`` (the reference: recall and targets in train mode, batch norm on
            batch statistics) or ``"eval"``; no difference for the MLP.
        profile: ``"mnist"``, ``"cifar10"``, ``"miniimagenet"``; default from the image shape.
    """

    name = "arm"
    objective = "arm"
    PROFILES = PROFILES
    SETTINGS = {"lr": None, "model": None, "step_size": None, "M": None, "steps": 10, "lag": "task",
                "lambda0": 1.0, "lambda0_real": None, "lambda1": 1.0, "lambda2": 0.1,
                "lambda3": None, "lambda4": None, "lambda5": 1.0, "lambda6": 1.0,
                "divergence_weight": None, "init": "batch", "recalls": 1, "profile": None,
                "recall_mode": "train"}
    SETTING_RULES = {"step_size": "positive", "M": "count", "steps": "count", "recalls": "count",
                     "lag": lambda name, v: v if v == "task" else _lag(name, v),
                     "init": ("batch", "noise"), "profile": (None, *PROFILES), "recall_mode": ("train", "eval")}

    def __init__(self, info, memory=None, settings=None, device="cpu", seed=0):
        settings = dict(settings or {})
        profile = settings.get("profile") or profile_for(info.image_shape)
        if profile not in self.PROFILES:
            raise ValueError(f"profile must be one of {list(self.PROFILES)}, got {profile!r}")
        valid = self.all_settings()
        for key, value in self.PROFILES[profile].items():
            if key in valid and settings.get(key) is None:
                settings[key] = value
        settings["profile"] = profile
        if settings.get("model") is None:
            settings["model"] = "mlp400" if profile == "mnist" else "reduced_resnet18"
        if "divergence_weight" in valid and settings.get("divergence_weight") is None:
            settings["divergence_weight"] = 8.0 if settings.get("lag") == 1 else 1.0
        super().__init__(info, memory, settings, device, seed)
        if memory is None or memory.name != "self_recall":
            raise ValueError(f"agent {self.name!r} needs the self_recall memory")
        memory.configure(objective=self.objective,
                         **{k: v for k, v in self.settings.items() if k in RECALL_KEYS})

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        self.memory.observe(x.detach(), t, y, ctx=self)  # refreshes the old model when due
        loss = self.loss(logits, y)
        self.sgd_step(loss)  # line 5: learn on the real batch
        out = {"loss": loss.detach()}
        for _ in range(self.settings["recalls"]):
            rec = self.memory.sample(ctx=self, generator=self.generator)  # lines 6-8
            if rec is None:
                break
            aux = self.settings["lambda0"] * soft_cross_entropy(self.model(rec.x), rec.y)
            old_real = self.memory.old_logits(x)
            distill = F.kl_div(self.model(x).log_softmax(1), old_real.softmax(1), reduction="batchmean")
            self.sgd_step(aux + self.settings["lambda0_real"] * distill)  # line 9
            out["recall_loss"] = aux.detach()
            out["distillation"] = distill.detach()
        return out

    def visuals(self) -> dict[str, torch.Tensor]:
        """Recalled images (bottom) beside their initialisations (top), as ARM's Figure 2."""
        m = self.memory
        if m.last_recall is None:
            return {}
        k = min(10, len(m.last_recall))
        return {"recall/recalled_vs_init": torch.cat([m.last_init[:k], m.last_recall[:k].clamp(0, 1)])}

    def summary(self) -> dict[str, float]:
        """Share of each class among everything recalled so far (ARM's Figure 3)."""
        counts = self.memory.recalled_counts.float()
        total = float(counts.sum())
        return {} if total == 0 else {f"recall/class_{c}": float(v) / total for c, v in enumerate(counts)}


class ADI(ARM):
    """Adaptive DeepInversion as ARM compares it: recalled inputs are pushed towards randomly
    chosen seen-but-not-present classes of the old model, with the divergence ("adaptive") term,
    batch-norm statistics, L2 and TV priors; training as ARM's line 9. Defaults are the reference
    commands' (``ADI_PROFILES``): no sharpening (``lambda4`` 0), the real batch's distillation
    weighted 0.5 on MNIST (1 on CIFAR-10, 2 on MiniImageNet), batch-norm statistics 0.1 on the
    ResNets (the MLP has none).

    Settings (besides ARM's, less its lambda1-lambda3 and divergence_weight, which ADI's
    objective does not have):
        classes_weight: weight of the cross-entropy towards the chosen classes (1).
        adaptive_weight: weight of the old/new divergence ("adaptive" term, 1).
        bn_weight: weight of the batch-norm statistics prior (0.1 on the ResNets, 0 on MNIST).
    """

    name = "adi"
    objective = "adi"
    PROFILES = ADI_PROFILES
    SETTINGS = {"classes_weight": 1.0, "adaptive_weight": 1.0, "bn_weight": None}
    UNUSED_SETTINGS = ("lambda1", "lambda2", "lambda3", "divergence_weight")  # ARM's eq. 8 terms
