"""Several seeds of one configuration trained together: stacked parameters, lockstep lanes.

A :class:`SeedStack` holds ``K`` agents that differ only by their seed (their own initial
weights, data order, memory and generators). Their MLPs' parameters are stacked along a new
first dimension (``W: (K, out, in)``, :class:`StackedMLP`). Each seed's learner runs its **own,
unmodified** :meth:`agents.base.Agent.learn` in a lane of :class:`agents.lanes.Lockstep` (one
thread per seed, one running at a time); its model calls, ``sgd_step``, ``gradient`` and
``step_with`` are sync points served for all seeds at once: one batched forward per layer
(:class:`StackedLinear`, ``baddbmm``), one backward of the summed losses (each seed's gradient
is its own slice, the other seeds' losses not depending on it) and one ``_foreach_add_`` step.
What each seed keeps apart — its memory, its draws, its Fisher, its teacher — stays in its own
agent, read by its own ``learn``. There is no second copy of any update rule.

**Equivalence.** At one torch thread every operation here computes, slice by slice, exactly what
the separate run computes (``baddbmm``'s forward equals ``F.linear``'s; the weight gradient is
formed as ``g^T x``, as ``addmm``'s backward forms it; losses are each seed's own calls on its
slice; parameters a learner reads and gradients it is handed are fresh copies of its row, as
unaligned rows change a dot product's last bits), so each seed's accuracy matrix equals its
separate run's bit for bit (``tests/test_agents/test_stacked.py``). With more threads the matrix
products split their work differently from the unstacked ones and results agree within float
rounding only (measured in docs/agents.md).

A learner takes part by declaring ``stackable = True`` on its own class (not inherited: a
subclass may change what ``learn`` does) once the equivalence tests cover it; its ``learn`` must
change its parameters only through ``sgd_step``, ``gradient``/``step_with``, and read the model
only by calling it or through ``named_parameters()``. A memory takes part by declaring
``stackable = True`` on its class (it must not read the model per step).
:func:`why_not_stackable` says why a set of agents cannot be stacked; the runner then runs the
seeds one after another.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import nn

from agents.base import Agent, PlainSGD
from agents.lanes import Lockstep
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
    if not vars(cls).get("stackable", False):
        return (f"learner {cls.name!r} is not declared stackable (its class has no `stackable = True`: "
                "its update is not checked against separate runs)")
    if cls.observe is not Agent.observe:
        return f"learner {cls.name!r} overrides observe (a lane runs learn only)"
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


def _by_name(agents: Sequence[Agent]) -> list[tuple[torch.Tensor, ...]]:
    """Per parameter (in ``parameters()`` order), every agent's own tensor."""
    return list(zip(*(list(a.model.parameters()) for a in agents), strict=True))


class StackedMLP:
    """The ``K`` seeds' MLP parameters stacked (``P[name]: (K, ...)``), and the maths the lanes'
    sync points need (:class:`agents.lanes.Lockstep`'s ``maths``).

    Args:
        agents: The agents (their models are read once, by :meth:`load`).
    """

    def __init__(self, agents: Sequence[Agent]):
        first = agents[0]
        self.K = len(agents)
        self.layers = _mlp_layers(first.model)
        self.names = [n for n, _ in first.model.named_parameters()]
        self.lr = first.optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            self.P = {n: torch.stack(ps).requires_grad_() for n, ps in zip(self.names, _by_name(agents), strict=True)}
        self.params = [self.P[n] for n in self.names]
        self._views: list[tuple[torch.Tensor, ...]] | None = None

    def forward(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``(R, B, C)`` of ``R`` rows' models on their inputs ``x (R, B, ...)`` (unmasked)."""
        P = self.P if params is None else params
        h = x.reshape(x.shape[0], x.shape[1], -1)
        for i, layer in enumerate(self.layers):
            h = StackedLinear.apply(h, P[f"{layer}.weight"], P[f"{layer}.bias"])
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    # ----------------------------------------------------------------- the lanes' sync points
    def rows(self, ks: list[int]) -> dict[str, torch.Tensor] | None:
        """The parameters of rows ``ks`` for :meth:`forward` (None: every row, in order)."""
        if ks == list(range(self.K)):
            return None
        idx = torch.as_tensor(ks, device=self.params[0].device)
        return {n: p.index_select(0, idx) for n, p in self.P.items()}

    def forward_rows(self, ks: list[int], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per lane ``ks[j]``, its model's output on ``xs[j]`` (equal shapes): one batched forward,
        over every row or over an index of the rows."""
        return list(self.forward(torch.stack(xs), self.rows(ks)).unbind(0))

    def _flat_row(self, grads: Sequence[torch.Tensor | None], k: int) -> torch.Tensor:
        """Row ``k`` of ``grads`` flattened as :meth:`agents.base.Agent.gradient` flattens (fresh memory)."""
        return torch.cat([(g[k] if g is not None else torch.zeros_like(p[k])).reshape(-1)
                          for g, p in zip(grads, self.params, strict=True)])

    def gradient_rows(self, ks: list[int], losses: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per lane ``ks[j]``, the flat gradient of ``losses[j]`` with respect to its row (one
        autograd call over their sum; graphs kept, as other lanes may still differentiate them)."""
        grads = torch.autograd.grad(torch.stack(losses).sum(), self.params, allow_unused=True, retain_graph=True)
        return [self._flat_row(grads, k) for k in ks]

    def step_rows(self, requests: list[tuple[int, str, torch.Tensor]]) -> None:
        """One SGD step of the rows asking for it (:class:`agents.optim.PlainSGD`'s update):
        ``(k, "sgd_step", loss)`` steps along the loss's gradient, ``(k, "step_with", flat)``
        along ``flat``; other rows get a zero gradient (unchanged)."""
        losses = [v for _, kind, v in requests if kind == "sgd_step"]
        grads: list[torch.Tensor | None] = [None] * len(self.params)
        if losses:
            grads = list(torch.autograd.grad(torch.stack(losses).sum(), self.params, allow_unused=True))
        flats = [(k, v) for k, kind, v in requests if kind == "step_with"]
        if flats:
            grads = [torch.zeros_like(p) if g is None else g.contiguous() for g, p in zip(grads, self.params, strict=True)]
            for k, flat in flats:
                i = 0
                for g, p in zip(grads, self.params, strict=True):
                    n = p[0].numel()
                    g[k].copy_(flat[i:i + n].view(p.shape[1:]))
                    i += n
        with torch.no_grad():
            pairs = [(p, g) for p, g in zip(self.params, grads, strict=True) if g is not None]
            if pairs:
                torch._foreach_add_([p for p, _ in pairs], [g for _, g in pairs], alpha=-self.lr)
        self._views = None

    def row_parameters(self, k: int) -> list[tuple[str, torch.Tensor]]:
        """Row ``k``'s parameters as differentiable fresh copies (their gradients flow into the
        stack; reductions over them run on aligned memory as over the separate run's)."""
        if self._views is None:
            with torch.enable_grad():
                self._views = [p.unbind(0) for p in self.params]
        return [(n, v[k].clone()) for n, v in zip(self.names, self._views, strict=True)]

    # ----------------------------------------------------------------- the agents' models
    @torch.no_grad()
    def store(self, agents: Sequence[Agent]) -> None:
        """Copy the stacked parameters into each agent's model."""
        for k, a in enumerate(agents):
            for p, P in zip(a.model.parameters(), self.params, strict=True):
                p.copy_(P[k])

    @torch.no_grad()
    def load(self, agents: Sequence[Agent]) -> None:
        """Copy each agent's model into the stacked parameters."""
        for n, ps in zip(self.names, _by_name(agents), strict=True):
            self.P[n].copy_(torch.stack(ps))
        self._views = None


class SeedStack:
    """``K`` agents of one configuration trained in lockstep over stacked parameters (see the
    module docstring); the interface the runner drives (:meth:`act`, :meth:`observe`).

    Between :meth:`sync_in` and :meth:`sync_out` the stacked tensors are the truth and the agents'
    own models are stale; the runner calls :meth:`sync_out` before any per-seed work that reads a
    model (task ends, evaluation, checkpoints, divergence checks) and :meth:`sync_in` after it.
    The lanes' threads end with :meth:`close`, called when the stack is discarded.

    Args:
        agents: Agents for which :func:`why_not_stackable` is None.
    """

    def __init__(self, agents: Sequence[Agent]):
        reason = why_not_stackable(agents)
        if reason is not None:
            raise ValueError(f"these agents cannot be stacked: {reason}")
        self.agents = list(agents)
        self.K = len(self.agents)
        first = self.agents[0]
        self.masked = first.masked
        self.class_mask = first.class_mask
        self.maths = StackedMLP(self.agents)
        self.lockstep = Lockstep(self.agents, self.maths)
        self._finalizer = weakref.finalize(self, self.lockstep.close)
        self._logits: torch.Tensor | None = None

    @property
    def P(self) -> dict[str, torch.Tensor]:
        """The stacked parameters by name, ``(K, ...)`` each."""
        return self.maths.P

    def close(self) -> None:
        """End the lanes' threads (also done when the stack is garbage collected)."""
        self._finalizer()

    def sync_out(self) -> None:
        """Copy the stacked parameters into each agent's model."""
        self.maths.store(self.agents)

    def sync_in(self) -> None:
        """Copy each agent's model into the stacked parameters (after per-seed work that may have
        changed it, e.g. a resumed checkpoint)."""
        self.maths.load(self.agents)

    def forward(self, x: torch.Tensor, t: int | torch.Tensor | None,
                params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``(K, B, C)`` of every seed's model on its inputs ``x (K, B, ...)`` (with
        ``params``: of those rows, :meth:`StackedMLP.rows`), masked to the task's classes like
        :meth:`Agent.forward`."""
        h = self.maths.forward(x, params)
        if self.masked and t is not None:
            h = h.masked_fill(~self.class_mask[t], float("-inf"))
        return h

    def predicts_as_agents(self) -> bool:
        """Whether every seed's :meth:`Agent.predict` is the base one on its whole MLP (no feature
        cut frozen), so that :meth:`predict` computes what each agent's would."""
        return all(type(a).predict is Agent.predict and type(a).forward is Agent.forward
                   and getattr(a, "_frozen_cut", None) is None for a in self.agents)

    @torch.no_grad()
    def predict(self, ks: list[int], x: torch.Tensor, t: int | None) -> torch.Tensor:
        """Evaluation logits ``(len(ks), B, C)`` of seeds ``ks`` on the same inputs ``x (B, ...)``:
        one batched forward of their stacked parameters (current after :meth:`sync_in`), masked
        like :meth:`Agent.predict`. At one thread each slice equals the seed's own ``predict``
        (``baddbmm`` as ``F.linear``); at more, within float rounding."""
        return self.forward(x.unsqueeze(0).expand(len(ks), *x.shape), t, self.maths.rows(ks))

    # ----------------------------------------------------------------- the env protocol, for K seeds
    def act(self, xs: Sequence[torch.Tensor], t: int | None) -> list[torch.Tensor]:
        """Predicted labels per seed (the training forward, kept for :meth:`observe`)."""
        x = torch.stack([torch.as_tensor(v, device=self.agents[0].device) for v in xs])
        if x.ndim == 4:  # one example per step: (K, C, H, W)
            x = x.unsqueeze(1)
        self._x, self._t = x, t
        self._logits = self.forward(x, t)
        preds = list(self._logits.detach().argmax(-1).unbind(0))
        return [p[0] for p in preds] if torch.as_tensor(xs[0]).ndim == 3 else preds

    def observe(self, ys: Sequence) -> list[dict[str, torch.Tensor]]:
        """Each seed's own ``learn`` on the batch just acted on, in lockstep; per seed, its named
        losses (as :meth:`Agent.observe`)."""
        dev = self.agents[0].device
        logits, self._logits = self._logits, None
        t = self._t
        return self.lockstep.run([(x, t, torch.as_tensor(y, device=dev).reshape(-1), lg)
                                  for x, y, lg in zip(self._x.unbind(0), ys, logits.unbind(0), strict=True)])


def may_stack(env_id: str, agent: str, memory: str | None, settings: dict) -> bool:
    """Whether the seeds of this configuration can be expected to stack, decided from names alone
    (a sweep groups such cells in one process; :func:`run_seeds` builds the agents and has the last
    word, running the seeds one after another when :func:`why_not_stackable` says no).

    The default model is known only where the stream's registry row declares its channels
    (``StreamSpec.channels``: the MNIST streams); elsewhere seeds are not grouped.
    """
    cls = agent_class(agent)
    if not vars(cls).get("stackable", False):
        return False
    mem = memory if memory is not None else agent_entry(agent).default_memory
    if mem is not None and not vars(memory_class(mem)).get("stackable", False):
        return False
    model = settings.get("model")
    if model is None:
        spec = STREAMS.get(env_id)
        model = "mlp" if spec is not None and spec.channels == 1 else None
    return model in ("mlp", "mlp400")
