"""Elastic Weight Consolidation (Kirkpatrick et al. 2017), with the diagonal Fisher done right."""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from agents.base import Agent, RecentWindow


def diagonal_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    mask: torch.Tensor | None = None, chunk: int = 256) -> dict[str, torch.Tensor]:
    """Empirical diagonal Fisher: the mean over examples of the squared per-example gradient.

    ``F_i = 1/N sum_n (d log p(y_n | x_n) / d theta_i)^2``. GEM's EWC squares the gradient of the
    summed loss instead, which is not the Fisher (a known bug). A network of linear layers only (the
    MLPs) takes :func:`linear_fisher`'s closed form; any other, per-example gradients from
    ``torch.func.vmap`` (``chunk`` examples a call).

    Args:
        model: The network (its parameters are read, not changed).
        x: Inputs ``(N, ...)``.
        y: Labels ``(N,)``.
        mask: Optional ``(N, n_classes)`` boolean mask of allowed logits (masked heads).
        chunk: Examples per vmap call.
    """
    if mask is None:
        mask = torch.ones(len(x), 1, dtype=torch.bool, device=x.device)
    was = model.training
    model.eval()
    try:
        fisher = linear_fisher(model, x, y, mask)
        return fisher if fisher is not None else _vmap_fisher(model, x, y, mask, chunk)
    finally:
        model.train(was)


def _linear_layers(model: nn.Module) -> list[nn.Linear] | None:
    """``model``'s ``nn.Linear`` layers if every parameter belongs to exactly one of them and it
    holds no buffers, else None (tied weights: a layer's gradient is not its own outer product)."""
    if any(True for _ in model.buffers()):
        return None
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    owned = [id(p) for m in layers for p in m.parameters(recurse=False)]
    if len(set(owned)) != len(owned) or not {id(p) for p in model.parameters()} <= set(owned):
        return None
    return layers


def linear_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  mask: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """:func:`diagonal_fisher` of a network whose parameters are all ``nn.Linear`` layers, each
    applied once per example, without forming per-example gradients.

    A linear layer's per-example weight gradient is the outer product ``delta_n a_n^T`` of the
    gradient at its output and its input, so ``sum_n (delta_n a_n^T)^2 = (delta^2)^T (a^2)`` (the
    per-example gradient identity of Goodfellow 2015, "Efficient per-example gradient
    computations"); ``delta`` for every example comes from one backward of the summed loss (no
    example's output depends on another's). Measured at one thread on the 784-100-100-10 MLP and
    200 examples: see docs/benchmarks.md (the per-example ``vmap`` path forms a (200, 89,610)
    gradient).

    None (the caller falls back to ``vmap``) where the identity does not hold or cannot be read
    off the forward: a parameter outside the linear layers, buffers, a layer called other than
    once, on inputs of more than two dimensions, or whose parameters are shared with another
    layer; a layer output changed in place afterwards
    (``ReLU(inplace=True)``: its gradient would be read past the mask); frozen layers or
    inference mode (no gradient reaches an output). A weight used outside its layer (a functional
    call in a custom ``forward``) is not seen here: such a model should not be an MLP of layers.
    """
    layers = _linear_layers(model)
    if layers is None or torch.is_inference_mode_enabled():
        return None
    seen: dict[nn.Module, list] = {m: [] for m in layers}

    def keep(module, inputs, output):
        seen[module].append((inputs[0], output, output._version))

    hooks = [m.register_forward_hook(keep) for m in layers]
    try:
        with torch.enable_grad():
            logits = model(x).masked_fill(~mask, float("-inf"))
            kept = [v[0] for v in seen.values() if len(v) == 1]
            if (len(kept) != len(layers) or any(a.ndim != 2 or o._version != ver or not o.requires_grad
                                                 for a, o, ver in kept)):
                return None
            loss = F.cross_entropy(logits, y, reduction="sum")
            deltas = torch.autograd.grad(loss, [seen[m][0][1] for m in layers], allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    n = len(x)
    for m, d in zip(layers, deltas, strict=True):
        a = seen[m][0][0].detach()
        if d is None:  # a layer whose output the loss does not use (an unused head): no gradient
            d = torch.zeros(len(x), m.out_features, dtype=a.dtype, device=a.device)
        d2 = d * d
        out[names[id(m.weight)]] = (d2.T @ (a * a)) / n
        if m.bias is not None:
            out[names[id(m.bias)]] = d2.sum(0) / n
    return {k: out[k] for k in names.values() if k in out}


def _vmap_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                 chunk: int) -> dict[str, torch.Tensor]:
    """:func:`diagonal_fisher` for any network: per-example gradients from ``torch.func.vmap``."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def nll(prm, xi, yi, mi):
        logits = functional_call(model, (prm, buffers), (xi.unsqueeze(0),))
        logits = logits.masked_fill(~mi, float("-inf"))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_example = vmap(grad(nll), in_dims=(None, 0, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for s in range(0, len(x), chunk):
        g = per_example(params, x[s:s + chunk], y[s:s + chunk], mask[s:s + chunk])
        for n in total:
            gn = g[n]  # squared in place (no second (chunk, P) tensor) unless vmap gave an expanded zero
            total[n] += (gn.square_() if gn.is_contiguous() else gn.square()).sum(0)
    return {n: v / len(x) for n, v in total.items()}


class _Quadratic(torch.autograd.Function):
    """``lam/2 sum_i theta_i (A_i theta_i - 2 B_i)`` with its gradient ``lam (A theta - B)`` formed
    directly (see :func:`quadratic_penalty`)."""

    @staticmethod
    def forward(ctx, lam: float, n: int, *tensors: torch.Tensor) -> torch.Tensor:
        params, A, B = tensors[:n], tensors[n:2 * n], tensors[2 * n:]
        u = torch._foreach_mul(A, params)
        torch._foreach_add_(u, B, alpha=-2.0)  # A theta - 2B
        total = sum(torch.dot(ui.reshape(-1), p.reshape(-1)) for ui, p in zip(u, params, strict=True))
        ctx.save_for_backward(*u, *B)
        ctx.n, ctx.lam = n, lam
        return total * (0.5 * lam)

    @staticmethod
    @once_differentiable  # its gradient is not itself differentiable: a second derivative raises
    def backward(ctx, g: torch.Tensor):
        saved = ctx.saved_tensors
        u, B = saved[:ctx.n], saved[ctx.n:]
        grads = torch._foreach_add(u, B)  # A theta - B
        torch._foreach_mul_(grads, g * ctx.lam)
        return (None, None, *grads, *([None] * (2 * ctx.n)))


def quadratic_penalty(params, A, B, lam: float) -> torch.Tensor:
    """EWC's penalty (Kirkpatrick et al. 2017, eq. 3, summed over past tasks) held as two running
    sums: ``lam/2 sum_i (A_i theta_i^2 - 2 B_i theta_i)`` with ``A = sum_k F_k`` and
    ``B = sum_k F_k theta*_k`` (equal, up to a constant, to ``sum_k lam/2 sum_i F_k,i
    (theta_i - theta*_k,i)^2``).

    Its gradient ``lam (A theta - B)`` is formed directly rather than by autograd through the
    element-wise products: five passes over the parameters instead of about thirteen. Measured at
    one thread on the MLP's 89,610 parameters (value and gradient): 0.33-0.37 ms against
    0.77-0.80 ms by autograd; the two agree within float rounding (gradient 4e-6 of values ~1e5).
    The penalty is memory-bound element-wise work, paid once per seed per step even when seeds
    are stacked, so it is most of what a stacked EWC step costs (docs/benchmarks.md).
    """
    params = list(params)
    return _Quadratic.apply(float(lam), len(params), *params, *A, *B)


class EWC(Agent):
    """EWC with one quadratic penalty per past task, held as two running sums.

    ``sum_k lambda/2 sum_i F_k,i (theta_i - theta*_k,i)^2`` equals, up to a constant,
    ``lambda/2 sum_i (A_i theta_i^2 - 2 B_i theta_i)`` with ``A = sum_k F_k`` and
    ``B = sum_k F_k theta*_k``, so storage stays two parameter-sized vectors for any number of
    tasks. The Fisher of a task uses its last ``fisher_samples`` examples, kept only until the
    task ends.

    Settings:
        lam: Penalty strength lambda (5; on MNIST-Rotations with SGD at lr 0.1, 100 diverges and
            10 diverged on one seed of three).
        fisher_samples: Examples of the finished task used for its Fisher (200).
    """

    name = "ewc"
    stackable = True  # seeds train together (agents.stacked; tests/test_agents/test_stacked.py)
    SETTINGS = {"lam": 5.0, "fisher_samples": 200}
    SETTING_RULES = {"lam": "non-negative", "fisher_samples": "count"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.A = {n: torch.zeros_like(p) for n, p in self.model.named_parameters()}
        self.B = {n: torch.zeros_like(p) for n, p in self.model.named_parameters()}
        self.has_penalty = False
        self.recent = RecentWindow(self.settings["fisher_samples"])

    def penalty(self) -> torch.Tensor:
        names, params = zip(*self.model.named_parameters(), strict=True)
        return quadratic_penalty(params, [self.A[n] for n in names], [self.B[n] for n in names],
                                 self.settings["lam"])

    def learn(self, x, t, y, logits) -> dict[str, torch.Tensor]:
        loss = self.loss(logits, y)
        out = {"loss": loss.detach()}
        if self.has_penalty:
            pen = self.penalty()
            loss = loss + pen
            out["ewc_penalty"] = pen.detach()
        self.sgd_step(loss)
        self.recent.add(x, y)
        return out

    def on_task_end(self, t: int) -> None:
        if not self.recent:
            return
        x, y = self.recent.last()
        mask = self.class_mask[t].expand(len(y), -1) if self.masked else None
        fisher = diagonal_fisher(self.model, x, y, mask)
        for n, p in self.model.named_parameters():
            self.A[n] += fisher[n]
            self.B[n] += fisher[n] * p.detach()
        self.has_penalty = True

    @property
    def overhead_bits(self) -> int:
        return 2 * 32 * sum(v.numel() for v in self.A.values())

    def extra_state(self) -> dict:
        return {"A": self.A, "B": self.B, "has_penalty": self.has_penalty, "recent": self.recent.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.A, self.B = state["A"], state["B"]
        self.has_penalty = state["has_penalty"]
        rec = state["recent"]
        if isinstance(rec, list):  # a checkpoint written before RecentWindow: (x, y, t) batches
            rec = {"batches": [(b[0], b[1]) for b in rec], "n": state["recent_n"]}
        self.recent.load_state_dict(rec)
