"""The one table of agents: name -> class, the memories each accepts, its default memory and budget."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from cl_env.error import UnknownNameError
from memory import MEMORIES, memory_class


@dataclass(frozen=True)
class AgentEntry:
    """A row of :data:`AGENTS`.

    Attributes:
        cls: ``"module:Class"``.
        memories: Memory names the agent can use (empty: it uses none).
        default_memory: Used when ``--memory`` is not given.
        default_budget: Effective examples when ``--budget`` is not given; None means the
            memory's own default size (GEM: 256 per task).
        description: One line for ``cl-env list``.
        memory_kwargs: Per memory, how this agent needs it built (GEM: SRM's per-task policy).
    """

    cls: str
    memories: tuple[str, ...] = ()
    default_memory: str | None = None
    default_budget: float | None = None
    description: str = ""
    memory_kwargs: dict = field(default_factory=dict)


AGENTS: dict[str, AgentEntry] = {
    "online": AgentEntry("agents.online:Online", description="online SGD, no memory (lower bound)"),
    "er": AgentEntry("agents.replay:ExperienceReplay", ("reservoir", "task_ring", "srm", "teacher", "addressable"), "reservoir", 200,
                     "experience replay: current batch + replay batch (Chaudhry et al. 2019); "
                     "with --memory teacher, generative replay (GEN)"),
    "gem": AgentEntry("agents.gem:GEM", ("task_ring", "srm", "addressable"), "task_ring", None,
                      "Gradient Episodic Memory, QP projection (Lopez-Paz & Ranzato 2017)",
                      {"srm": {"policy": "task_ring"}}),
    "agem": AgentEntry("agents.gem:AGEM", ("task_ring", "reservoir"), "task_ring", None,
                       "Averaged GEM: one reference gradient (Chaudhry et al. 2019)"),
    "ewc": AgentEntry("agents.ewc:EWC", description="Elastic Weight Consolidation, diagonal Fisher"),
    "lwf": AgentEntry("agents.lwf:LwF", description="Learning without Forgetting (distillation)"),
    "arm": AgentEntry("agents.arm:ARM", ("self_recall",), "self_recall", None,
                      "Automatic Recall Machines: replay recalled from an old copy of the model (Ji et al.)"),
    "adi": AgentEntry("agents.arm:ADI", ("self_recall",), "self_recall", None,
                      "Adaptive DeepInversion baseline of ARM: generate seen classes from the old model"),
    "recall": AgentEntry("agents.recall:CompressThenRecall", ("addressable",), "addressable", 200,
                         "compress-then-recall: distil each task, train a fresh model on the recalled memories"),
    "lvae": AgentEntry("agents.generative:GenerativeAgent", ("teacher",), "teacher", None,
                       "lifelong generative model: student-teacher VAE, eq. 6 (Ramapuram et al.)",
                       {"teacher": {"mode": "lifelong"}}),
    "vae": AgentEntry("agents.generative:VanillaVAE", ("teacher",), "teacher", None,
                      "vanilla VAE on the stream (--set bound=upto|full: the upper bounds)",
                      {"teacher": {"mode": "vanilla"}}),
    "ewc_vae": AgentEntry("agents.generative:EWCVAE", ("teacher",), "teacher", None,
                          "student-teacher VAE with EWC on the ELBO's Fisher (LGM baseline)",
                          {"teacher": {"mode": "ewc"}}),
    "sb3": AgentEntry("agents.sb3:SB3Agent",
                      description="a Stable-Baselines3 algorithm (--set algo=ppo|a2c|dqn) as a contextual bandit"),
}


def agent_class(name: str):
    if name not in AGENTS:
        raise UnknownNameError("agent", name, AGENTS)
    module, cls = AGENTS[name].cls.split(":")
    return getattr(importlib.import_module(module), cls)


def build_memory(agent: str, memory: str | None, budget: float | None, spec, seed: int = 0,
                 options: dict | None = None):
    """The memory an agent runs with, validated against what it accepts.

    Raises:
        UnknownNameError: ``memory`` is not registered.
        ValueError: The agent cannot use ``memory`` (lists those it can), or takes none.
    """
    entry = AGENTS[agent]
    if memory is not None and memory not in MEMORIES:
        raise UnknownNameError("memory", memory, MEMORIES)
    if not entry.memories:
        if memory is not None or budget is not None:
            raise ValueError(f"agent {agent!r} uses no memory; drop --memory/--budget "
                             f"(agents with memories: {[a for a, e in AGENTS.items() if e.memories]})")
        return None
    name = memory or entry.default_memory
    if name not in entry.memories:
        raise ValueError(f"agent {agent!r} cannot use memory {name!r}; it accepts: {list(entry.memories)}")
    cls = memory_class(name)
    kwargs = {"seed": seed} if name in ("reservoir", "self_recall", "srm", "teacher", "addressable") else {}
    kwargs.update(entry.memory_kwargs.get(name, {}))
    kwargs.update(options or {})
    _check_options(cls, name, options or {})
    if budget is None and entry.default_budget is None:
        return cls.default(spec, **kwargs)  # the protocol's own size (GEM: 256 items per task)
    return cls.for_budget(budget if budget is not None else entry.default_budget, spec, **kwargs)


def _check_options(cls, name: str, options: dict) -> None:
    """``--set memory.KEY=VALUE`` keys must be arguments of the memory (or of ``for_budget``)."""
    import inspect

    valid = set()
    for fn in (cls.__init__, cls.for_budget):
        valid |= {k for k in inspect.signature(fn).parameters if k not in ("self", "spec", "budget", "kwargs")}
    for key in options:
        if key not in valid:
            raise UnknownNameError(f"option of memory {name!r} (--set memory.KEY=...)", key, valid)
