"""The learner's side of feature replay (latent replay, REMIND): activations at a cut point of
the model, and the lower part frozen or slowed.

A feature memory never imports agents; it calls the learner's documented methods
(:meth:`agents.base.Agent.features`, :meth:`agents.base.Agent.slow_lower`), which use these
functions over the model's split (:func:`agents.models.split_model`).
"""

from __future__ import annotations

import torch
from torch import nn

from agents.models import split_model

MODE_SENSITIVE = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def mode_sensitive(module: nn.Module) -> bool:
    """Whether ``module`` computes differently in train and eval mode (batch norm, dropout)."""
    return any(isinstance(m, MODE_SENSITIVE) for m in module.modules())


@torch.no_grad()
def lower_features(lower: nn.Module, x: torch.Tensor, sensitive: bool = True) -> torch.Tensor:
    """``lower(x)`` without gradient, the lower part in eval mode (batch-norm statistics are read,
    never updated: writing to a memory must not change the model), its mode restored after.

    ``sensitive=False`` (:func:`mode_sensitive` said so: an MLP's layers) skips switching modes,
    which changes nothing there and costs a walk over the modules."""
    if not sensitive:
        return lower(x)
    was = lower.training
    lower.eval()
    try:
        return lower(x)
    finally:
        lower.train(was)


def slow_below(lower: nn.Module, optimizer: torch.optim.Optimizer | None, factor: float) -> bool:
    """Freeze ``lower`` (``factor == 0``) or train it at ``factor`` times the learning rate.

    Latent replay (Pellegrini et al. 2020, abstract and method section): "slow-down learning at all the layers below the
    latent replay one, leaving the layers above free to learn at full pace"; frozen is the limit.
    Frozen parameters stop requiring gradients (the optimiser then skips them); slowed ones move
    to a parameter group of their own whose ``lr`` is ``factor`` times their group's.

    Returns:
        True when frozen (the learner then runs its lower part without gradient, in eval mode).
    """
    if factor < 0:
        raise ValueError(f"lower_lr must be >= 0 (0 freezes the layers below the cut), got {factor}")
    params = list(lower.parameters())
    ids = {id(p) for p in params}
    if factor == 0:
        for p in params:
            p.requires_grad_(False)
        return True
    if optimizer is not None:
        lr = optimizer.param_groups[0]["lr"]
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
        optimizer.add_param_group({"params": params, "lr": lr * factor})
    return False


def same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` view the same values (``b`` may be ``a.detach()``)."""
    return (a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()
            and a.dtype == b.dtype and a.device == b.device)


class CutPoints:
    """The learner's cut-point methods (a base of :class:`agents.base.Agent`), which feature
    memories call through ``ctx``: :meth:`split`, :meth:`features`, :meth:`slow_lower`.

    Expects ``self.model``, ``self.device`` and ``self.optimizer``; :meth:`init_cuts` sets the
    state once they exist.
    """

    def init_cuts(self) -> None:
        self._splits: dict[str, tuple[nn.Module, nn.Module]] = {}
        self._sensitive: dict[str, bool] = {}  # per cut: the lower part has batch norm or dropout
        self._last_features: tuple[torch.Tensor, str, torch.Tensor] | None = None
        self.lower: tuple[str, float] | None = None  # (cut, lr factor) once slowed/frozen below a cut
        self._frozen_cut: str | None = None

    def split(self, layer: str, model: nn.Module | None = None) -> tuple[nn.Module, nn.Module]:
        """``(lower, upper)`` of ``model`` (default the agent's) at cut point ``layer``
        (:func:`agents.models.split_model`; an unknown name raises with the model's cut points)."""
        if model is not None and model is not self.model:
            return split_model(model, layer)
        if layer not in self._splits:
            self._splits[layer] = split_model(self.model, layer)
            self._sensitive[layer] = mode_sensitive(self._splits[layer][0])
        return self._splits[layer]

    def features(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """Activations of the agent's model at cut point ``layer`` for inputs ``x``: no gradient,
        the lower part in eval mode (what a feature memory stores; the model is never changed).
        Once the layers below ``layer`` are frozen, the current batch's were computed by its
        forward (:meth:`frozen_lower`) and are returned without a second pass."""
        last = self._last_features
        if last is not None and last[1] == layer and self._frozen_cut == layer and same_tensor(last[0], x):
            return last[2]
        lower = self.split(layer)[0]
        return lower_features(lower, x.to(self.device), self._sensitive[layer])

    def frozen_lower(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen lower part's features of ``x`` (kept for :meth:`features`)."""
        z = lower_features(self.split(self._frozen_cut)[0], x, self._sensitive[self._frozen_cut])
        self._last_features = (x, self._frozen_cut, z)
        return z

    def slow_lower(self, layer: str, factor: float) -> None:
        """Freeze the layers below cut ``layer`` (``factor == 0``) or train them at ``factor``
        times the learning rate (latent replay's two variants); feature memories call it at the
        end of the first task. Kept in checkpoints and re-applied on resume."""
        if self.lower is not None:
            return
        frozen = slow_below(self.split(layer)[0], self.optimizer, factor)
        self.lower = (layer, float(factor))
        self._frozen_cut = layer if frozen else None
