"""The run's identity: one frozen :class:`RunConfig`, built and validated once, hashed once.

Every way of starting a run — ``cl-env run``, :func:`agents.run`, a sweep cell, a Ray task —
builds a :class:`RunConfig` with :meth:`RunConfig.build` (every default filled in, every name and
value checked), and everything downstream reads it: the run directory's ``config.json``, the
checkpoint's hash, ``result.json``'s ``config``/``config_hash``, a sweep cell's directory name.
:meth:`RunConfig.from_dict` reads one back from those files.

Settings and memory options stay free-form mappings (each agent and memory declares its own),
checked against the agent's declared settings (:mod:`agents.settings`) and stored read-only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any

from agents.harness import limits
from agents.presets import apply_preset
from agents.registry import agent_class, agent_entry, check_compressed_policy, check_size
from agents.registry import memory_options as registry_memory_options
from cl_env import checks
from cl_env.error import UnknownNameError
from cl_env.registration import _plain, resolve_stream_kwargs
from memory import is_memory_name, memory_class, memory_names

# the keys of result.json's / config.json's "config" that are not the identity
NON_IDENTITY = ("runtime", "derived")
FIELDS = ("env", "stream_kwargs", "batch_size", "agent", "settings", "memory", "memory_options", "budget",
          "seed", "device")
# fields added after runs were first recorded: in the identity only when set (older hashes hold)
OPTIONAL_FIELDS = ("memory_items", "preset")


def _finite(obj: Any) -> Any:
    """``obj`` with non-finite floats as None (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def canonical(obj: Any) -> str:
    """The canonical JSON text of ``obj`` (sorted keys, no spaces): what hashes are taken of."""
    return json.dumps(_finite(obj), sort_keys=True, separators=(",", ":"), default=str)


def identity(config: Mapping) -> dict:
    """The keys of ``config`` that make a run what it is (everything but ``runtime``/``derived``)."""
    return {k: v for k, v in config.items() if k not in NON_IDENTITY}


def config_hash(config: Mapping) -> str:
    """A run's identity: 16 hex digits of the SHA-256 of its identity keys (seed included)."""
    return hashlib.sha256(canonical(identity(config)).encode()).hexdigest()[:16]


def group_hash(config: Mapping) -> str:
    """The identity of a group of runs: :func:`config_hash` without the seed."""
    return config_hash({k: v for k, v in config.items() if k != "seed"})


def _coerce_numbers(values: dict, defaults: dict) -> dict:
    """An int given where the default is a float becomes that float (``alpha=1`` is ``alpha=1.0``),
    so one configuration has one identity however it was typed."""
    out = dict(values)
    for k, v in values.items():
        d = defaults.get(k)
        if isinstance(d, float) and isinstance(v, int) and not isinstance(v, bool):
            out[k] = float(v)
    return out


def _frozen(value: Any) -> Any:
    """A read-only copy of a JSON-able value (mappings as ``MappingProxyType``, lists as tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    """The plain JSON form of a :func:`_frozen` value (dicts and lists)."""
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True, eq=False)
class RunConfig:
    """The fully resolved identity of one run (what ``result.json``'s ``config`` holds, less
    ``runtime`` and ``derived``). Build it with :meth:`build`; never mutated.

    Attributes:
        env: The registered env id.
        stream_kwargs: Every option of the stream, defaults filled in.
        batch_size: Examples per step.
        agent: The agent's name (or ``package.module:Class``).
        settings: Every setting of the agent, defaults filled in.
        memory: The memory's name, or None for an agent without one.
        memory_options: Keyword arguments of the memory (the agent's own and ``memory.KEY`` settings).
        budget: Incremental storage in effective real examples, or None (the memory's default).
        seed: The seed of the agent and of the order of examples.
        device: ``cpu`` or ``cuda[:N]``.
        memory_items: An exact item count instead of ``budget`` (``--items``), or None.
        preset: The preset's record (:func:`agents.presets.apply_preset`: name, version, source,
            overridden keys), or None; in the identity (and ``to_dict``) only when given.
    """

    env: str
    stream_kwargs: Mapping[str, Any]
    batch_size: int
    agent: str
    settings: Mapping[str, Any]
    memory: str | None
    memory_options: Mapping[str, Any]
    budget: float | None
    seed: int
    device: str
    memory_items: int | None = None
    preset: Mapping[str, Any] | None = None

    def __post_init__(self):
        for name in ("stream_kwargs", "settings", "memory_options", "preset"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    # ----------------------------------------------------------------- building
    @classmethod
    def build(cls, env_id: str, agent: str = "online", memory: str | None = None, budget: float | None = None,
              seed: int = 0, device: str = "cpu", settings: Mapping | None = None,
              stream_kwargs: Mapping | None = None, batch_size: int | None = None,
              items: int | None = None, preset: str | None = None) -> RunConfig:
        """The run's identity from what a user gave, every default filled in and every value checked.

        Defaults: the stream's options (:func:`cl_env.registration.resolve_stream_kwargs`), the
        agent's settings (``memory.KEY`` settings go to ``memory_options``), the agent's default
        memory, budget and batch size, and the memory keyword arguments the agent itself passes
        (GEM's per-task SRM policy).

        Raises:
            UnknownNameError, ValueError, TypeError: An unknown name, setting or stream option, or
                a value out of its range (one line naming it, what is allowed and the fix).
        """
        if not isinstance(env_id, str):
            raise checks.fail("env id", env_id, "a registered id such as 'MNISTRotations-v0' (cl-env list)")
        if not isinstance(agent, str):
            raise checks.fail("agent", agent, "a registered agent name (cl-env list)")
        if memory is not None and not isinstance(memory, str):
            raise checks.fail("memory", memory, "a registered memory name or None (cl-env list)")
        checks.integer("seed", seed, 0, 2**32 - 1, fix="--seed 0")
        checks.device("device", device)
        if budget is not None:
            checks.number("budget", budget, 0.0, strict_minimum=True,
                          fix="--budget 200 (effective real examples of storage)")
        if batch_size is not None:
            checks.integer("batch_size", batch_size, 1, fix="--batch-size 10")
        if items is not None:
            checks.integer("items", items, 1, fix="--items 500 (replayable items the memory holds)")
        if settings is not None and not isinstance(settings, Mapping):
            raise checks.fail("settings", settings, "a mapping of setting names to values", "--set lr=0.05")
        if stream_kwargs is not None and not isinstance(stream_kwargs, Mapping):
            raise checks.fail("stream_kwargs", stream_kwargs, "a mapping of stream options",
                              "--stream source=mnist5k")
        applied = None if preset is None else apply_preset(preset, env_id, agent, memory, budget,
                                                           settings and dict(settings), stream_kwargs and dict(stream_kwargs))
        record = None
        if applied is not None:  # the preset's memory, settings and item count under the explicit ones
            memory, settings = applied.memory, applied.settings
            record = dict(applied.record)
            if items is not None and items != record["items"]:
                record["overridden"] = [*record["overridden"], "items"]
            if budget is None and items is None:
                items = applied.items
        settings = dict(settings or {})
        for key in settings:
            if not isinstance(key, str):
                raise checks.fail("settings", key, "setting names (text)", "--set lr=0.05")
        memory_options = {k.split(".", 1)[1]: settings.pop(k) for k in list(settings) if k.startswith("memory.")}
        klass = agent_class(agent)
        resolved = _coerce_numbers(klass.resolve_settings(settings), klass.all_settings())
        entry = agent_entry(agent)
        if memory is not None and not is_memory_name(memory):
            raise UnknownNameError("memory", memory, memory_names())
        mem = memory or entry.default_memory
        if mem is None and (memory is not None or budget is not None or items is not None):
            raise ValueError(f"agent {agent!r} uses no memory; drop --memory/--budget/--items")
        check_size(budget, items, memory_options, None if mem is None else memory_class(mem))
        if mem is None and memory_options:
            raise ValueError(f"agent {agent!r} uses no memory; drop the memory.* settings {sorted(memory_options)}")
        if mem is not None:  # checked and typed once, so that one configuration has one identity
            own = entry.memory_kwargs.get(mem, {})
            memory_options = {**own, **registry_memory_options(mem, memory_options, keep=own)}
            check_compressed_policy(agent, mem, memory_options.get("policy"))
            if budget is None and items is None:
                budget = entry.default_budget
        if batch_size is None:
            batch_size = klass.batch_sizes[0] if klass.batch_sizes else 10
        built = cls(env=env_id, stream_kwargs=resolve_stream_kwargs(env_id, stream_kwargs and dict(stream_kwargs)),
                    batch_size=int(batch_size), agent=agent, settings=_plain(resolved), memory=mem,
                    memory_options=_plain(memory_options), budget=None if budget is None else float(budget),
                    seed=int(seed), device=str(device), memory_items=None if items is None else int(items),
                    preset=None if applied is None else record)
        limits.check_config(built.to_dict())  # every number in its documented range
        return built

    @classmethod
    def from_dict(cls, config: Mapping) -> RunConfig:
        """A configuration as ``to_dict`` wrote it (``runtime``/``derived`` ignored), its field
        types checked; :class:`ValueError` names the first key that is missing or of the wrong type."""
        if not isinstance(config, Mapping):
            raise ValueError(f"a run configuration is a mapping, got {type(config).__name__}")
        kinds = {"env": str, "stream_kwargs": Mapping, "batch_size": int, "agent": str, "settings": Mapping,
                 "memory": (str, type(None)), "memory_options": Mapping, "budget": (int, float, type(None)),
                 "seed": int, "device": str}
        for key, kind in kinds.items():
            if key not in config:
                raise ValueError(f"run configuration without {key!r}")
            value = config[key]
            if not isinstance(value, kind) or (kind in (int,) and isinstance(value, bool)):
                raise ValueError(f"run configuration key {key!r}: expected {getattr(kind, '__name__', kind)}, "
                                 f"got {type(value).__name__}")
        values = {k: config[k] for k in FIELDS}
        items = config.get("memory_items")
        if items is not None and (not isinstance(items, int) or isinstance(items, bool)):
            raise ValueError(f"run configuration key 'memory_items': expected int, got {type(items).__name__}")
        values["memory_items"] = items
        if config.get("preset") is not None:
            if not isinstance(config["preset"], Mapping):
                raise ValueError(f"run configuration key 'preset': expected Mapping, got {type(config['preset']).__name__}")
            values["preset"] = config["preset"]
        if values["budget"] is not None:
            values["budget"] = float(values["budget"])
        return cls(**values)

    # ----------------------------------------------------------------- reading
    def to_dict(self) -> dict:
        """The plain JSON form (what ``config.json``/``result.json`` hold under ``config``)."""
        out = {name: _thawed(getattr(self, name)) for name in FIELDS}
        out.update({name: _thawed(getattr(self, name)) for name in OPTIONAL_FIELDS if getattr(self, name) is not None})
        return out

    @cached_property
    def hash(self) -> str:
        """:func:`config_hash` of this identity (computed once)."""
        return config_hash(self.to_dict())

    @cached_property
    def group_hash(self) -> str:
        """The identity less the seed: the seeds of one configuration share it."""
        return group_hash(self.to_dict())

    def with_seed(self, seed: int) -> RunConfig:
        """The same configuration for another seed."""
        checks.integer("seed", seed, 0, 2**32 - 1, fix="--seed 0")
        return dataclasses.replace(self, seed=int(seed))

    def user_settings(self) -> dict:
        """Settings and memory options in the ``--set`` form (``memory.KEY`` for the memory's)."""
        return {**_thawed(self.settings), **{f"memory.{k}": v for k, v in _thawed(self.memory_options).items()}}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunConfig) and self.hash == other.hash

    def __hash__(self) -> int:
        return int(self.hash, 16)
