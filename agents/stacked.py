"""Several seeds of one configuration trained together: stacked parameters, one batched step.

A :class:`SeedStack` holds ``K`` agents that differ only by their seed (their own initial
weights, data order, memory and generators). Their MLPs' parameters are stacked along a new
first dimension (``W: (K, out, in)``) and every step runs once for all of them: the forward is
one ``baddbmm`` per layer (:class:`StackedLinear`), the losses are summed (each seed's gradient
is its own slice, the other seeds' losses not depending on it) and one ``_foreach_add_`` steps
every seed. What each seed keeps apart — its memory, its draws, its Fisher, its teacher — stays
in its own agent, called per seed.

**Equivalence.** At one torch thread every operation here computes, slice by slice, exactly what
the separate run computes (``baddbmm``'s forward equals ``F.linear``'s; the weight gradient is
formed as ``g^T x``, as ``addmm``'s backward forms it; losses are each seed's own
``F.cross_entropy`` call; reductions over one seed's slice equal the reduction of that slice), so
each seed's accuracy matrix equals its separate run's bit for bit (``tests/test_agents/
test_stacked.py``). With more threads the matrix products split their work differently from the
unstacked ones and results agree within float rounding only (measured in docs/agents.md).

A learner takes part by defining ``stacked_learn(stack, x, t, y, logits)`` on its own class (not
inherited: a subclass that changes :meth:`Agent.learn` must write its own): the same rule as its
``learn``, over tensors with a leading seed dimension, returning per-seed ``(K,)`` losses. A
memory takes part by declaring ``stackable = True`` on its class (it must not read the model
per step). :func:`why_not_stackable` says why a set of agents cannot be stacked; the runner then
runs the seeds one after another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from agents.base import Agent, PlainSGD
from agents.models import MLP
from agents.registry import agent_class, agent_entry
from cl_env.registration import STREAMS
from memory import memory_class


class StackedLinear(torch.autograd.Function):
    """``x @ W^T + b`` for ``K`` stacked layers: ``x (K, B, in)``, ``W (K, out, in)``, ``b (K, out)``.

    A function of its own for its backward: each slice's gradients are formed exactly as
    ``F.linear``'s backward forms them for one layer (``dx = g W``, ``dW = g^T x``,
    ``db = sum_B g``), so a stacked step equals ``K`` separate steps bit for bit at one thread;
    autograd's own ``baddbmm`` backward forms ``dW`` as ``(x^T g)^T`` and differs in the last bits.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, weight = ctx.saved_tensors
        gx = g.bmm(weight) if ctx.needs_input_grad[0] else None
        gw = g.transpose(1, 2).bmm(x) if ctx.needs_input_grad[1] else None
        gb = g.sum(1) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _mlp_layers(model: nn.Module) -> list[str] | None:
    """Names of ``model``'s linear layers in order, if it is exactly :class:`agents.models.MLP`
    (Flatten, then Linear/ReLU pairs, a last Linear), else None."""
    if type(model) is not MLP:
        return None
    mods = list(model.net)
    if not mods or not isinstance(mods[0], nn.Flatten):
        return None
    names = []
    for i, m in enumerate(mods[1:], start=1):
        expect = nn.Linear if i % 2 == 1 else nn.ReLU
        if type(m) is not expect:
            return None
        if expect is nn.Linear:
            if m.bias is None:
                return None
            names.append(f"net.{i}")
    return names if len(mods) % 2 == 0 else None


def why_not_stackable(agents: Sequence[Agent]) -> str | None:
    """Why these agents cannot be trained as one :class:`SeedStack` (None if they can)."""
    if len(agents) < 2:
        return "fewer than two seeds"
    first = agents[0]
    cls = type(first)
    if "stacked_learn" not in vars(cls):
        return f"agent {cls.name!r} has no stacked learning rule (agents with one: online, er, ewc, lwf, agem)"
    for a in agents:
        if type(a) is not cls or a.settings != first.settings:
            return "the agents differ in more than their seed"
        if _mlp_layers(a.model) is None:
            return f"model {a.settings['model']!r} is not an MLP (only MLPs are stacked)"
        if type(a.optimizer) is not PlainSGD or len(a.optimizer.param_groups) != 1 or a.scheduler is not None:
            return "the optimiser is not plain SGD without a schedule"
        if a.device != first.device:
            return "the agents are on different devices"
        mem = a.memory
        if mem is not None and not vars(type(mem)).get("stackable", False):
            return f"memory {type(mem).__name__} is not stackable (it may read the model every step)"
    return None


class SeedStack:
    """``K`` agents of one configuration, their MLPs' parameters stacked (see the module docstring).

    Between :meth:`sync_in` and :meth:`sync_out` the stacked tensors are the truth and the agents'
    own models are stale; the runner calls :meth:`sync_out` before any per-seed work that reads a
    model (task ends, evaluation, checkpoints, divergence checks) and :meth:`sync_in` after it.

    Args:
        agents: Agents for which :func:`why_not_stackable` is None.
    """

    def __init__(self, agents: Sequence[Agent]):
        reason = why_not_stackable(agents)
        if reason is not None:
            raise ValueError(f"these agents cannot be stacked: {reason}")
        self.lanes = list(agents)
        self.K = len(self.lanes)
        first = self.lanes[0]
        self.rule: Callable = vars(type(first))["stacked_learn"]
        self.layers = _mlp_layers(first.model)
        self.names = [n for n, _ in first.model.named_parameters()]
        self.masked = first.masked
        self.class_mask = first.class_mask
        with torch.no_grad():
            self.P = {n: torch.stack(ps).requires_grad_() for n, ps in zip(self.names, self._lane_params(), strict=True)}
        self.params = [self.P[n] for n in self.names]
        self._cache: dict = {}
        self._logits: torch.Tensor | None = None

    # ----------------------------------------------------------------- the agents' models
    def _lane_params(self) -> list[list[torch.Tensor]]:
        """Per parameter name (in :attr:`names` order), every agent's own tensor."""
        return [list(ps) for ps in zip(*(list(a.model.parameters()) for a in self.lanes), strict=True)]

    @torch.no_grad()
    def sync_out(self) -> None:
        """Copy the stacked parameters into each agent's model."""
        for n, ps in zip(self.names, self._lane_params(), strict=True):
            for k, p in enumerate(ps):
                p.copy_(self.P[n][k])

    @torch.no_grad()
    def sync_in(self) -> None:
        """Copy each agent's model into the stacked parameters (after per-seed work that may have
        changed it, e.g. a resumed checkpoint) and forget stacked per-seed state."""
        for n, ps in zip(self.names, self._lane_params(), strict=True):
            self.P[n].copy_(torch.stack(ps))
        self._cache.clear()

    def stacked(self, key: str, per_agent: Callable[[Agent], torch.Tensor]) -> torch.Tensor:
        """``torch.stack([per_agent(a) for a in agents])``, kept until the next :meth:`sync_in`
        (per-seed state that changes only at task ends: EWC's sums, LwF's teacher)."""
        if key not in self._cache:
            with torch.no_grad():
                self._cache[key] = torch.stack([per_agent(a) for a in self.lanes])
        return self._cache[key]

    # ----------------------------------------------------------------- maths
    def forward(self, x: torch.Tensor, t: int | torch.Tensor | None,
                params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``(K, B, C)`` of every seed's model on its inputs ``x (K, B, ...)``, masked to the
        task's classes like :meth:`Agent.forward` (``t`` an int, or task ids ``(K, B)``)."""
        P = self.P if params is None else params
        h = x.reshape(x.shape[0], x.shape[1], -1)
        for i, layer in enumerate(self.layers):
            h = StackedLinear.apply(h, P[f"{layer}.weight"], P[f"{layer}.bias"])
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        if self.masked and t is not None:
            h = h.masked_fill(~self.class_mask[t], float("-inf"))
        return h

    def teacher_params(self, key: str, module_of: Callable[[Agent], nn.Module]) -> dict[str, torch.Tensor]:
        """Stacked parameters of one frozen per-seed model (LwF's old model), cached like :meth:`stacked`."""
        return {n: self.stacked(f"{key}.{n}", lambda a, n=n: dict(module_of(a).named_parameters())[n].detach())
                for n in self.names}

    def forward_each(self, xs: Sequence[torch.Tensor | None], ts: Sequence | None = None) -> list:
        """Per seed, the logits of its model on ``xs[k]`` (None where ``xs[k]`` is None): one stacked
        forward when every seed has inputs of one shape, else one forward per seed on its slice
        of the stacked parameters (same numbers; memories of unequal sizes)."""
        present = [x is not None for x in xs]
        shapes = {tuple(x.shape) for x in xs if x is not None}
        if all(present) and len(shapes) == 1:
            t = torch.stack(list(ts)) if ts is not None else None
            return list(self.forward(torch.stack(list(xs)), t).unbind(0))
        out = []
        for k, x in enumerate(xs):
            if x is None:
                out.append(None)
                continue
            params = {n: p[k:k + 1] for n, p in self.P.items()}
            t = None if ts is None else ts[k].unsqueeze(0)
            out.append(self.forward(x.unsqueeze(0), t, params)[0])
        return out

    def loss(self, logits: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Each seed's own :meth:`Agent.loss` on its slice, as a ``(K,)`` vector."""
        return torch.stack([a.loss(lg, yy) for a, lg, yy in zip(self.lanes, logits, y, strict=True)])

    @property
    def lr(self) -> float:
        return self.lanes[0].optimizer.param_groups[0]["lr"]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def backward(self, losses: torch.Tensor) -> None:
        """Every seed's gradient of its own loss (``losses (K,)``; a seed's loss depends on its slice only)."""
        losses.sum().backward()

    @torch.no_grad()
    def step(self) -> None:
        """Plain SGD on every seed at once (:class:`agents.base.PlainSGD`'s update)."""
        with_grad = [p for p in self.params if p.grad is not None]
        if with_grad:
            torch._foreach_add_(with_grad, [p.grad for p in with_grad], alpha=-self.lr)

    def sgd_step(self, losses: torch.Tensor) -> None:
        """:meth:`Agent.sgd_step` for every seed."""
        self.zero_grad()
        self.backward(losses)
        self.step()

    def flat_grad(self) -> torch.Tensor:
        """``(K, P)``: row ``k`` is seed ``k``'s gradient flattened as ``_Projecting._flat_grad`` does."""
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(self.K, -1)
                          for p in self.params], dim=1)

    def set_grad(self, flat: torch.Tensor) -> None:
        """The inverse of :meth:`flat_grad`."""
        i = 0
        for p in self.params:
            n = p[0].numel()
            p.grad = flat[:, i:i + n].reshape(p.shape)
            i += n

    # ----------------------------------------------------------------- the env protocol, for K seeds
    def act(self, xs: Sequence[torch.Tensor], t: int | None) -> list[torch.Tensor]:
        """Predicted labels per seed (the training forward, kept for :meth:`observe`)."""
        x = torch.stack([torch.as_tensor(v, device=self.lanes[0].device) for v in xs])
        if x.ndim == 4:  # one example per step: (K, C, H, W)
            x = x.unsqueeze(1)
        self._x, self._t = x, t
        self._logits = self.forward(x, t)
        preds = list(self._logits.detach().argmax(-1).unbind(0))
        return [p[0] for p in preds] if torch.as_tensor(xs[0]).ndim == 3 else preds

    def observe(self, ys: Sequence) -> list[dict[str, torch.Tensor]]:
        """Learn from the batches just acted on; per seed, its named losses (as :meth:`Agent.observe`)."""
        y = torch.stack([torch.as_tensor(v, device=self.lanes[0].device).reshape(-1) for v in ys])
        logits, self._logits = self._logits, None
        out = self.rule(self, self._x, self._t, y, logits)
        return [{name: v[k] for name, v in out.items()} for k in range(self.K)]


def may_stack(env_id: str, agent: str, memory: str | None, settings: dict) -> bool:
    """Whether the seeds of this configuration can be expected to stack, decided from names alone
    (a sweep groups such cells in one process; :func:`run_seeds` builds the agents and has the last
    word, running the seeds one after another when :func:`why_not_stackable` says no).

    The default model is known only where the stream's registry row declares its channels
    (``StreamSpec.channels``: the MNIST streams); elsewhere seeds are not grouped.
    """
    cls = agent_class(agent)
    if "stacked_learn" not in vars(cls):
        return False
    mem = memory if memory is not None else agent_entry(agent).default_memory
    if mem is not None and not vars(memory_class(mem)).get("stackable", False):
        return False
    model = settings.get("model")
    if model is None:
        spec = STREAMS.get(env_id)
        model = "mlp" if spec is not None and spec.channels == 1 else None
    return model in ("mlp", "mlp400")
