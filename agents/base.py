"""The ``Agent`` base class: a model, a learning rule and (optionally) a memory.

The runner calls ``act(obs)`` for the predicted labels, then ``observe(obs, y)`` once the labels
are revealed, ``end_task(t)`` at each task boundary and ``predict(x, t)`` to evaluate. Learners
override one hook, :meth:`Agent.learn` (which changes the parameters only through
:meth:`Agent.sgd_step`, or :meth:`Agent.gradient` then :meth:`Agent.step_with`: the three points
where stacked seeds, :mod:`agents.stacked`, meet), and optionally :meth:`Agent.on_task_end` (after the
memory's task end with ``MEMORY_FIRST = True``), :meth:`Agent.extra_state` /
:meth:`Agent.load_extra_state` and :meth:`Agent.predict` (a template method, as SB3's
``BaseCallback.on_step``/``_on_step``). ``end_task`` itself is the same for every learner.
The optimiser (:mod:`agents.optim`), the stream's description (:mod:`agents.info`) and the
settings' checks (:mod:`agents.settings`) live beside it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents import settings
from agents.features import CutPoints
from agents.info import RecentWindow, StreamInfo
from agents.models import build_model, default_init, default_model
from agents.optim import PlainSGD
from memory.base import Memory

__all__ = ["Agent", "PlainSGD", "RecentWindow", "StreamInfo"]


class Agent(CutPoints):
    """Base learner.

    Args:
        info: The stream's shape and task structure.
        memory: A memory module, or None.
        settings: Values for the keys of :attr:`SETTINGS` (unknown keys are an error).
        device: ``"cpu"`` or ``"cuda"``.
        seed: Seeds the model initialisation and every draw the agent makes.

    Settings common to all agents:
        lr: SGD learning rate (0.1, GEM's value).
        model: ``mlp``, ``mlp400``, ``reduced_resnet18``, ``resnet18``, ``convnet``; default by image
            shape (MLP for 1-channel images, reduced ResNet-18 for colour).
        head: ``"single"`` (one head over all classes) or ``"masked"`` (logits outside the task's
            classes masked, GEM's CIFAR protocol); default masked for ``setting="task"``.
        weight_init: ``"xavier"`` (GEM's MLP) or ``"torch"`` (PyTorch's default: ARM's MLP, the
            ResNets, the ConvNet); default the protocol's for the model (``models.default_init``).
    """

    name: ClassVar[str] = ""
    SETTINGS: ClassVar[dict[str, Any]] = {"lr": 0.1, "model": None, "head": None, "weight_init": None}
    # what each setting accepts (merged over the class hierarchy, like SETTINGS): "positive"
    # (> 0), "non-negative", "count" (an int >= 1), "string", a tuple of choices, or a function
    # (name, value) -> value. A setting without a rule is checked by its default's type: numbers
    # finite and >= 0, ints integral, bools bool, strings str.
    SETTING_RULES: ClassVar[dict[str, Any]] = {"lr": "positive", "model": "string",
                                               "head": (None, "single", "masked"),
                                               "weight_init": (None, "xavier", "torch")}
    # inherited settings a subclass does not read (dropped from its valid settings)
    UNUSED_SETTINGS: ClassVar[tuple[str, ...]] = ()
    # what a user's agent (``--agent package.module:Class`` or an entry point in ``cl_env.agents``)
    # declares for the registry; built-in agents have their row in ``agents.registry.AGENTS``
    MEMORIES: ClassVar[tuple[str, ...]] = ()  # memory names (or module:Class paths) it can use
    DEFAULT_MEMORY: ClassVar[str | None] = None
    DEFAULT_BUDGET: ClassVar[float | None] = None  # None: the memory's own default size
    MEMORY_KWARGS: ClassVar[dict] = {}  # per memory, how this agent needs it built
    needs_task_labels: ClassVar[bool] = False
    generative: ClassVar[bool] = False  # learns P(x): evaluated by test ELBO and Fréchet distance
    batch_sizes: ClassVar[tuple[int, ...] | None] = None  # None: any; else the only ones it runs with
    # when :meth:`make_scheduler`'s schedule steps: after every optimiser step, or at task ends
    SCHEDULE_EVERY: ClassVar[str] = "step"
    # the memory's task-end work runs before :meth:`on_task_end` (learners that retrain from what
    # the memory holds once it has finished the task: GDumb, compress-then-recall)
    MEMORY_FIRST: ClassVar[bool] = False
    # seeds of this class may train together in one process (agents.stacked): declared on the class
    # itself (never inherited) once tests/test_agents/test_stacked.py shows its stacked seeds equal
    # their separate runs; its learn changes parameters only through sgd_step or gradient/step_with
    stackable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "end_task" in vars(cls):
            raise TypeError(f"{cls.__qualname__} overrides Agent.end_task: override on_task_end instead "
                            "(and set MEMORY_FIRST = True to run it after the memory's task end)")

    def __init__(self, info: StreamInfo, memory: Memory | None = None,
                 settings: dict | None = None, device: str = "cpu", seed: int = 0):
        self.info = info
        self.memory = memory
        self.device = torch.device(device)
        self.seed = seed
        self.settings = self.resolve_settings(settings or {})
        head = self.settings["head"] or ("masked" if info.setting == "task" else "single")
        if head not in ("single", "masked"):
            raise ValueError(f"head must be 'single' or 'masked', got {head!r}")
        self.settings["head"] = head
        self.settings["model"] = self.settings["model"] or default_model(info.image_shape)
        self.settings["weight_init"] = self.settings["weight_init"] or default_init(self.settings["model"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model: nn.Module = self.make_model()
        self.optimizer = self.make_optimizer()
        self.scheduler = None if self.optimizer is None else self.make_scheduler()
        if self.scheduler is not None:
            every_choices = ("step", "task")
            if self.SCHEDULE_EVERY not in every_choices:
                raise ValueError(f"SCHEDULE_EVERY must be one of {every_choices}, got {self.SCHEDULE_EVERY!r}")
            if self.SCHEDULE_EVERY == "step":  # a post-hook: learners calling optimizer.step() are covered
                self.optimizer.register_step_post_hook(lambda *_: self.scheduler.step())
        self.generator = torch.Generator().manual_seed(seed + 1)
        mask = torch.zeros(info.n_tasks, info.n_classes, dtype=torch.bool)
        for t, classes in enumerate(info.task_classes):
            mask[t, list(classes)] = True
        self.class_mask = mask.to(self.device)
        self.masked = head == "masked"
        self._cache: tuple[Any, torch.Tensor, int | None, torch.Tensor] | None = None
        self.init_cuts()
        bind = getattr(memory, "bind", None)  # memory.Memory's hook; a duck-typed memory may lack it
        if bind is not None:
            bind(self)

    def make_model(self) -> nn.Module:
        """The network, built under the agent's seed (override for other kinds of model)."""
        return build_model(self.settings["model"], self.info.image_shape, self.info.n_classes,
                           self.settings["weight_init"]).to(self.device)

    def fresh_model(self) -> nn.Module:
        """A newly initialised model of the agent's architecture (memories that distil or retrain
        use it: the ``addressable`` memory's inner model)."""
        return self.make_model()

    def train_fresh_model(self, x: torch.Tensor, y: torch.Tensor, ts: torch.Tensor, *, init_seed: int,
                          order_seed: int, epochs: int, batch: int, optimizer, clip: float | None = None,
                          scheduler=None) -> nn.Module:
        """A newly initialised model (under ``init_seed``) trained ``epochs`` shuffled passes
        (orders from ``order_seed``) over ``(x, y)`` in minibatches of ``batch``, for learners that
        retrain from their memory (GDumb, compress-then-recall).

        Args:
            optimizer: ``parameters -> torch.optim.Optimizer``.
            clip: Gradient-norm clip, or None.
            scheduler: ``optimizer -> schedule`` stepped after every batch with the fractional
                epoch (``CosineAnnealingWarmRestarts``), or None.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = self.make_model()
        opt = optimizer(model.parameters())
        sched = None if scheduler is None else scheduler(opt)
        steps_per_epoch = -(-len(y) // batch)
        gen = torch.Generator().manual_seed(order_seed)
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(len(y), generator=gen).to(y.device)
            for i, start in enumerate(range(0, len(y), batch)):
                idx = order[start:start + batch]
                loss = self.loss(self.forward(x[idx], ts[idx] if ts is not None else None, model), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                if sched is not None:
                    sched.step(epoch + (i + 1) / steps_per_epoch)
        return model

    def make_optimizer(self) -> torch.optim.Optimizer | None:
        """Plain SGD without momentum, as GEM and the papers' baselines use (any
        ``torch.optim`` optimiser over ``self.model.parameters()`` may be returned instead)."""
        return PlainSGD(self.model.parameters(), lr=self.settings["lr"])

    def make_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        """A ``torch.optim.lr_scheduler`` schedule over :attr:`optimizer`; none by default.

        It steps after every optimiser step (``SCHEDULE_EVERY = "step"``, through a step post-hook,
        so learners that call ``optimizer.step()`` themselves are covered) or once per task end
        (``SCHEDULE_EVERY = "task"``); checkpoints keep its state. ``StreamInfo.n_examples`` gives
        the horizon of schedules that need one (``OneCycleLR``, ``CosineAnnealingLR``).
        ``ReduceLROnPlateau`` needs a metric and is not driven here.
        """
        return None

    # ----------------------------------------------------------------- settings
    @classmethod
    def all_settings(cls) -> dict[str, Any]:
        """Every setting and its default, merged over the class hierarchy."""
        return settings.all_settings(cls)

    @classmethod
    def setting_rules(cls) -> dict[str, Any]:
        """What each setting accepts, merged over the class hierarchy."""
        return settings.setting_rules(cls)

    @classmethod
    def check_setting(cls, key: str, value: Any) -> Any:
        """``value`` if ``--set key=value`` is acceptable, else one clear :class:`InvalidValueError`."""
        return settings.check_setting(cls, key, value)

    @classmethod
    def resolve_settings(cls, given: dict) -> dict:
        """Defaults overridden by ``given``; an unknown key raises with the valid ones, a bad
        value (wrong type, out of range, not finite) with what is allowed."""
        return settings.resolve_settings(cls, given)

    # ----------------------------------------------------------------- model
    def forward(self, x: torch.Tensor, t: int | torch.Tensor | None, model: nn.Module | None = None,
                layer: str | None = None) -> torch.Tensor:
        """Logits of ``model`` (default the agent's), masked to the task's classes when the head
        is masked and ``t`` (an int, or one task id per row) is known.

        One path for images and features: with ``layer`` (a cut point; a feature memory's
        ``ReplayBatch.layer``), ``x`` holds activations at that cut and only the layers above it
        run. Once the layers below a cut are frozen (:meth:`slow_lower`), images run the lower
        part without gradient and in eval mode, then the upper part as replayed features do.
        """
        if layer is not None:
            logits = self.split(layer, model)[1](x)
        elif model is None and self._frozen_cut is not None:
            logits = self.split(self._frozen_cut)[1](self.frozen_lower(x))
        else:
            logits = (self.model if model is None else model)(x)
        if self.masked and t is not None:
            logits = logits.masked_fill(~self.class_mask[t], float("-inf"))
        return logits

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        """Evaluation logits (model in eval mode, no gradient)."""
        was = self.model.training
        self.model.eval()
        out = self.forward(x.to(self.device), t)
        self.model.train(was)
        return out

    # ----------------------------------------------------------------- env protocol
    def _inputs(self, obs: dict) -> tuple[torch.Tensor, int | None]:
        x = torch.as_tensor(obs["x"], device=self.device)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        t = obs.get("t")
        return x, (None if t is None else int(t))

    def act(self, obs: dict):
        """Predicted labels for ``obs["x"]``.

        The forward pass is the training forward (train mode, with gradient), kept for
        :meth:`observe`, so a step costs one forward and one backward as in a plain loop.
        """
        x, t = self._inputs(obs)
        logits = self.forward(x, t)
        self._cache = (obs["x"], x, t, logits)
        pred = logits.detach().argmax(1)
        if isinstance(obs["x"], torch.Tensor):
            return pred if pred.numel() > 1 or obs["x"].ndim == 4 else pred[0]
        out = pred.cpu().numpy()
        return out if np.ndim(obs["x"]) == 4 else int(out[0])

    def observe(self, obs: dict, y) -> dict[str, torch.Tensor]:
        """Learn from the batch just acted on, now that its labels ``y`` are known.

        Returns:
            Named scalar tensors (losses) for the logger; never synchronised here.
        """
        cache, self._cache = self._cache, None
        if cache is not None and cache[0] is obs["x"]:
            _, x, t, logits = cache
        else:
            x, t = self._inputs(obs)
            logits = self.forward(x, t)
        y = torch.as_tensor(y, device=self.device).reshape(-1)
        return self.learn(x, t, y, logits)

    def end_task(self, t: int) -> None:
        """Task boundary, one path for every learner: the learner's :meth:`on_task_end` and the
        memory's ``end_task`` (the memory's first where :attr:`MEMORY_FIRST`), then a per-task
        schedule's step. Learners override :meth:`on_task_end`, never this."""
        memory = self.memory
        if memory is not None and self.MEMORY_FIRST:
            memory.end_task(t, ctx=self)
        self.on_task_end(t)
        if self.scheduler is not None and self.SCHEDULE_EVERY == "task":
            self.scheduler.step()
        if memory is not None and not self.MEMORY_FIRST:
            memory.end_task(t, ctx=self)

    # ----------------------------------------------------------------- hooks
    def learn(self, x: torch.Tensor, t: int | None, y: torch.Tensor,
              logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """One learning step on a batch (``logits`` = this batch's training forward)."""
        raise NotImplementedError

    def prepare(self, stream) -> None:  # noqa: B027 - optional hook
        """Called once with the whole stream before the first step; only upper bounds that are
        allowed to see all the data (``vae --set bound=full``) use it."""

    def on_task_end(self, t: int) -> None:  # noqa: B027 - optional hook
        """Learner-specific task-boundary work (after the memory's with :attr:`MEMORY_FIRST`)."""

    def extra_state(self) -> dict:
        """Learner-specific state for checkpoints."""
        return {}

    def load_extra_state(self, state: dict) -> None:  # noqa: B027 - optional hook
        """Restore :meth:`extra_state`."""

    def visuals(self) -> dict[str, torch.Tensor]:
        """Image batches in [0, 1] to show at task ends (what a memory replays); none by default."""
        return {}

    def summary(self) -> dict[str, float]:
        """Scalars to log at task ends beyond the runner's own; none by default."""
        return {}

    @property
    def uses_test_task_ids(self) -> bool:
        """Whether evaluation reads the test task's id (a masked head does; so does a learner that
        keeps one model per task). Results say so beside their numbers."""
        return self.masked

    def counters(self) -> dict[str, int]:
        """Counts of events a reader of the result must see (GEM's failed QP solves, projected
        steps); ``result.json`` carries them under ``counters``. The memory's own
        ``counters()``, if it has one, are added with a ``memory.`` prefix."""
        mem = getattr(self.memory, "counters", None)
        return {} if mem is None else {f"memory.{k}": v for k, v in mem().items()}

    @property
    def overhead_bits(self) -> int:
        """Sunk storage the learner itself keeps (an old model, Fisher), beyond the memory's."""
        return 0

    def storage(self) -> dict[str, int]:
        """What the run reports: the memory's ``storage_bits`` and ``items``, and the overheads."""
        mem = self.memory
        return {
            "storage_bits": 0 if mem is None else mem.storage_bits,
            "overhead_bits": self.overhead_bits + (0 if mem is None else mem.overhead_bits),
            "items": 0 if mem is None else mem.items,
        }

    # ----------------------------------------------------------------- updates (the sync points of stacked seeds)
    def sgd_step(self, loss: torch.Tensor) -> None:
        """One optimiser step along the gradient of ``loss``."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def gradient(self, loss: torch.Tensor) -> torch.Tensor:
        """The gradient of ``loss`` with respect to the model's trainable parameters, flattened
        into one new vector in ``parameters()`` order (zeros for parameters it does not reach);
        the parameters' ``.grad`` are left alone. For learners that change the gradient before
        stepping (A-GEM's projection), with :meth:`step_with`."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                          for g, p in zip(grads, params, strict=True)])

    def step_with(self, flat_gradient: torch.Tensor) -> None:
        """One optimiser step along ``flat_gradient`` (laid out as :meth:`gradient` returns it):
        each parameter's ``.grad`` becomes its slice, then ``optimizer.step()``."""
        i = 0
        for p in self.model.parameters():
            if p.requires_grad:
                n = p.numel()
                p.grad = flat_gradient[i:i + n].view_as(p)  # views of the vector: no copy
                i += n
        self.optimizer.step()

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "memory": None if self.memory is None else self.memory.state_dict(),
            "generator": self.generator.get_state(),
            "extra": self.extra_state(),
            "lower": None if self.lower is None else list(self.lower),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if state.get("lower") is not None:  # the optimiser's groups depend on it: before loading them
            self.slow_lower(state["lower"][0], state["lower"][1])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.memory is not None:
            self.memory.load_state_dict(state["memory"], ctx=self)
        self.generator.set_state(state["generator"])
        self.load_extra_state(state["extra"])
