"""The one table of agents: name -> class, the memories each accepts, its default memory and budget."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from agents.base import Agent
from cl_env import checks
from cl_env.error import UnknownNameError
from memory import MEMORIES, is_memory_name, load_object, memory_class, memory_names, plugin_names
from memory.base import Memory
from memory.packed import POLICIES, check_policy

__all__ = ["AGENTS", "MEMORIES", "AgentEntry", "agent_class", "agent_entry", "agent_names", "build_memory", "check_compressed_policy", "memory_option_names",
           "memory_options"]

ENTRY_POINTS = "cl_env.agents"  # a user's package registers agents here (pyproject entry points)


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


# Compressed real examples (memory.quantized, memory.codec) run the buffers' own write policies:
# each learner gets the policy its own memory uses (memory_kwargs), overridable with
# --set memory.policy=NAME. They cannot serve learners whose memory is not a buffer of examples:
# arm/adi (self_recall: the model's own recall), recall (distilled memories), lvae/vae/ewc_vae
# (a generative teacher), and codec cannot serve icarl (see its row).
COMPRESSED = ("quantized", "codec")


def check_compressed_policy(agent: str, memory: str, policy: str | None) -> None:
    """A compressed memory under write policy ``P`` is the buffer ``P`` holding compressed items, so
    it serves the learners that accept the buffer ``P`` itself (GEM reads per-task rings, DER the
    stored logits, iCaRL herding, GDumb class balance); a learner that only samples takes any of
    the plain policies (docs/memories.md's table). One line naming the ones that fit."""
    if memory not in COMPRESSED:
        return
    policy = policy or "reservoir"  # the memories' default
    check_policy(policy, memory)  # an unknown policy: the memory's own error, listing them
    fits = [m for m in agent_entry(agent).memories if m in POLICIES]
    plain = ["reservoir", "class_balanced", "task_ring"]
    if len(fits) > 1 and set(fits) <= set(plain):
        fits = plain  # a learner that only samples (er, er_ace, mir, agem) takes any plain policy
    if policy not in fits:
        raise checks.fail(f"memory.policy of {memory!r} for agent {agent!r}", policy,
                          f"a policy of the buffers the agent uses, one of {fits}", f"--set memory.policy={fits[0]}")


def compressed(policy: str) -> dict:
    """``memory_kwargs`` giving both compressed memories ``policy``."""
    return {name: {"policy": policy} for name in COMPRESSED}


AGENTS: dict[str, AgentEntry] = {
    "online": AgentEntry("agents.online:Online", description="online SGD, no memory (lower bound)"),
    "er": AgentEntry("agents.replay:ExperienceReplay", ("reservoir", "task_ring", "srm", "teacher", "addressable",
                                                         "latent", *COMPRESSED), "reservoir", 200,
                     "experience replay: current batch + replay batch (Chaudhry et al. 2019); "
                     "with --memory teacher, generative replay (GEN)"),
    "gem": AgentEntry("agents.gem:GEM", ("task_ring", "srm", "addressable", *COMPRESSED), "task_ring", None,
                      "Gradient Episodic Memory, QP projection (Lopez-Paz & Ranzato 2017)",
                      {"srm": {"policy": "task_ring"}, **compressed("task_ring")}),
    "agem": AgentEntry("agents.gem:AGEM", ("task_ring", "reservoir", *COMPRESSED), "task_ring", None,
                       "Averaged GEM: one reference gradient (Chaudhry et al. 2019)", compressed("task_ring")),
    "der": AgentEntry("agents.der:DER", ("logit_reservoir", "latent", *COMPRESSED), "logit_reservoir", 200,
                      "Dark Experience Replay: replay of stored logits (Buzzega et al. 2020)",
                      {"latent": {"logits": True}, **compressed("logit_reservoir")}),
    "derpp": AgentEntry("agents.der:DERPP", ("logit_reservoir", "latent", *COMPRESSED), "logit_reservoir", 200,
                        "DER++: stored logits and labels replayed (Buzzega et al. 2020)",
                        {"latent": {"logits": True}, **compressed("logit_reservoir")}),
    "er_ace": AgentEntry("agents.replay:ERACE", ("reservoir", "task_ring", "class_balanced", *COMPRESSED),
                         "reservoir", 200, "ER with asymmetric cross-entropy (Caccia et al. 2022)"),
    "mir": AgentEntry("agents.replay:MIR", ("reservoir", "task_ring", "class_balanced", *COMPRESSED), "reservoir", 200,
                      "Maximally Interfered Retrieval on ER (Aljundi et al. 2019)"),
    "remind": AgentEntry("agents.remind:Remind", ("pq",), "pq", 100,
                         "REMIND: frozen lower layers after base init, replay of product-quantised features "
                         "(Hayes et al. 2020)"),
    # codec cannot serve iCaRL: herding keeps a fixed count per class, a byte budget cannot promise one
    "icarl": AgentEntry("agents.icarl:ICaRL", ("herding", "quantized"), "herding", 200,
                        "iCaRL: herding exemplars, distillation, nearest-mean-of-exemplars (Rebuffi et al. 2017)",
                        {"quantized": {"policy": "herding"}}),
    "gdumb": AgentEntry("agents.gdumb:GDumb", ("class_balanced", *COMPRESSED), "class_balanced", 200,
                        "GDumb: class-balanced memory, retrained from scratch to evaluate (Prabhu et al. 2020)",
                        compressed("class_balanced")),
    "ewc": AgentEntry("agents.ewc:EWC", description="Elastic Weight Consolidation, diagonal Fisher"),
    "si": AgentEntry("agents.importance:SI", description="Synaptic Intelligence: path-integral importance (Zenke et al. 2017)"),
    "mas": AgentEntry("agents.importance:MAS", description="Memory Aware Synapses: output-sensitivity importance (Aljundi et al. 2018)"),
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


def agent_names() -> dict[str, str]:
    """Every agent name: the built-in table, then those of installed plugins (entry points in
    ``cl_env.agents``), each with its ``module:Class``."""
    return {**plugin_names(ENTRY_POINTS), **{k: e.cls for k, e in AGENTS.items()}}


def entry_of_class(path: str, cls) -> AgentEntry:
    """The registry row a user's agent class declares: ``MEMORIES`` (names it can use),
    ``DEFAULT_MEMORY``, ``DEFAULT_BUDGET``, ``MEMORY_KWARGS``; its docstring's first line."""
    doc = (cls.__doc__ or "").strip().splitlines()
    return AgentEntry(path, tuple(cls.MEMORIES), cls.DEFAULT_MEMORY, cls.DEFAULT_BUDGET,
                      doc[0] if doc else path, dict(cls.MEMORY_KWARGS))


def _plugin_class(name: str) -> tuple[str, type]:
    """A user's agent: ``(module:Class, the class)`` from an entry point or a path."""
    path = plugin_names(ENTRY_POINTS).get(name) or (name if ":" in name else None)
    if path is None:
        raise UnknownNameError("agent", name, agent_names())
    cls = load_object(path, "agent", agent_names)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise UnknownNameError("agent", name, agent_names(), note=f"{path!r} is not an agents.Agent subclass")
    return path, cls


def agent_entry(name: str) -> AgentEntry:
    """The row of ``name``: built in, a plugin's entry point, or ``"package.module:Class"``."""
    if name in AGENTS:
        return AGENTS[name]
    return entry_of_class(*_plugin_class(name))


def agent_class(name: str):
    """The class of ``name`` (see :func:`agent_entry`)."""
    if name in AGENTS:
        return load_object(AGENTS[name].cls, "agent", agent_names)
    return _plugin_class(name)[1]


def takes_items(cls) -> bool:
    """Whether a memory class can be sized by an exact item count (it overrides ``for_items``)."""
    return any("for_items" in vars(k) for k in cls.__mro__ if k is not Memory)


def check_size(budget: float | None, items: int | None, options: dict | None, cls=None) -> None:
    """A memory's size is given once: ``--budget`` (effective examples) or ``--items`` (an exact
    item count), never ``--set memory.capacity`` (the item count's internal name).

    Raises:
        ValueError: Both sizes, ``--items`` for a memory without an item count, or
            ``memory.capacity`` (the message says what to write instead).
    """
    name = getattr(cls, "name", None) or "this memory"
    by_items = cls is None or takes_items(cls)
    if options and "capacity" in options:
        n = checks.shown(options["capacity"], 24)  # never the whole of a huge value
        instead = (f"--items {n} (exact items; its bits are reported)" if by_items else
                   f"--set memory.items={n} (the items {name} keeps; --budget sets their bits)")
        raise checks.InvalidValueError(f"--set memory.capacity={n} is not an option of {name}: write {instead}")
    if budget is not None and items is not None:
        raise ValueError(f"give --budget ({budget:g} effective examples) or --items ({items} items), not both: "
                         "each sets the memory's size")
    if items is not None and not by_items:
        cls.for_items(items, None)  # raises its own one-line reason


def build_memory(agent: str, memory: str | None, budget: float | None, spec, seed: int = 0,
                 options: dict | None = None, items: int | None = None):
    """The memory an agent runs with, validated against what it accepts.

    ``budget`` sizes it in effective real examples (:meth:`memory.base.Memory.for_budget`),
    ``items`` as an exact item count (:meth:`memory.base.Memory.for_items`); neither: the agent's
    default budget, else the memory's own default size.

    Raises:
        UnknownNameError: ``memory`` is not registered.
        ValueError: The agent cannot use ``memory`` (lists those it can), or takes none; both
            ``budget`` and ``items``; ``memory.capacity`` among the options.
    """
    entry = agent_entry(agent)
    if memory is not None and not is_memory_name(memory):
        raise UnknownNameError("memory", memory, memory_names())
    if not entry.memories:
        if memory is not None or budget is not None or items is not None:
            raise ValueError(f"agent {agent!r} uses no memory; drop --memory/--budget/--items "
                             f"(agents with memories: {[a for a, e in AGENTS.items() if e.memories]})")
        return None
    check_size(budget, items, options, memory_class(memory or entry.default_memory))
    name = memory or entry.default_memory
    if name not in entry.memories:
        raise ValueError(f"agent {agent!r} cannot use memory {name!r}; it accepts: {list(entry.memories)}")
    cls = memory_class(name)
    kwargs = {"seed": seed} if _accepts_seed(cls) else {}
    kwargs.update(entry.memory_kwargs.get(name, {}))
    kwargs.update(memory_options(name, options or {}, keep=entry.memory_kwargs.get(name, {})))
    if items is not None:
        return cls.for_items(items, spec, **kwargs)
    if budget is None and entry.default_budget is None:
        return cls.default(spec, **kwargs)  # the protocol's own size (GEM: 256 items per task)
    return cls.for_budget(budget if budget is not None else entry.default_budget, spec, **kwargs)


def _accepts_seed(cls) -> bool:
    """Every memory whose constructor takes ``seed`` gets the run's seed (built in or a user's)."""
    import inspect

    return any("seed" in inspect.signature(fn).parameters for fn in (cls.__init__, cls.for_budget, cls.default))


def memory_options(name: str, options: Mapping, keep: Collection[str] = ()) -> dict:
    """``--set memory.KEY=VALUE`` options of memory ``name``, checked and normalised: each key an
    argument of the memory's constructor or of its ``for_budget`` (``capacity`` is ``--items``;
    arguments its size sets, ``Memory.sized_arguments``, are refused with their fix), each value of
    its default's type. An int where the default is a float becomes that float (``tau=1`` is
    ``tau=1.0``) and a default given explicitly is left out (``tau=1.0`` is no option at all), so
    one configuration has one identity however it was typed. Keys in ``keep`` (those the agent
    itself sets, ``AgentEntry.memory_kwargs``) stay, defaults or not: the user's value wins over the
    agent's.

    Raises:
        UnknownNameError: An unknown key (lists the valid ones).
        InvalidValueError: A sized argument, or a value not of its default's type (one line, the fix).
    """
    cls = memory_class(name)
    defaults = _option_defaults(cls)
    sized = getattr(cls, "sized_arguments", {})
    out = {}
    for key, value in options.items():
        where = f"memory.{key} of memory {name!r}"
        if key in sized:
            raise checks.fail(where, value, "no value: the memory's size sets it", sized[key])
        if key not in defaults or key in sized:
            raise UnknownNameError(f"option of memory {name!r} (--set memory.KEY=...)", key,
                                   sorted(k for k in defaults if k not in sized))
        value = _typed(where, key, value, defaults[key])
        if key in keep or type(value) is not type(defaults[key]) or value != defaults[key]:
            out[key] = value  # a default given explicitly is the default: one identity, not two
    return out


def _option_defaults(cls) -> dict:
    """The arguments of a memory's constructor and ``for_budget`` a user may set, with their defaults."""
    import inspect

    defaults: dict = {}
    for fn in (cls.__init__, cls.for_budget):
        for k, p in inspect.signature(fn).parameters.items():
            if k not in ("self", "cls", "spec", "budget", "kwargs", "capacity"):
                defaults.setdefault(k, p.default)
    return defaults


def memory_option_names(name: str) -> set[str]:
    """The ``memory.KEY`` options memory ``name`` takes (:func:`memory_options` checks values)."""
    cls = memory_class(name)
    return set(_option_defaults(cls)) - set(getattr(cls, "sized_arguments", {}))


def _typed(where: str, key: str, value, default):
    """``value`` checked against its default's type (bool, int, float, str; other defaults, None
    among them, leave it to the memory); an int for a float default becomes that float."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise checks.fail(where, value, "true or false", f"--set memory.{key}={str(default).lower()}")
    elif checks.is_int(default):
        if not checks.is_int(value):
            raise checks.fail(where, value, "an integer", f"--set memory.{key}={default}")
    elif isinstance(default, float):
        if not checks.is_number(value) or not math.isfinite(value):
            raise checks.fail(where, value, "a finite number", f"--set memory.{key}={default}")
        return float(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise checks.fail(where, value, "a string", f"--set memory.{key}={default}")
    return value
