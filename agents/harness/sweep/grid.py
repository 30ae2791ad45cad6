"""A sweep's grid: the cells of a config (every combination, the ones an agent cannot run
skipped and named, one cell per configuration however it was spelled) and seed lists (``0-4``)."""

from __future__ import annotations

import itertools
import math

from agents.harness import limits
from agents.harness.sweep.cells import Cell
from agents.presets import preset_agents, preset_mismatch
from agents.registry import agent_entry, memory_option_names
from cl_env import checks
from cl_env.error import UnknownNameError
from memory import is_memory_name, memory_names


def expand(cfg: dict) -> tuple[list[Cell], list[str]]:
    """The grid's cells, and a note for every combination skipped (an agent that cannot use a memory)."""
    def listed(key: str, default: list) -> list:
        v = cfg.get(key, default)
        return v if isinstance(v, list) else [v]

    presets = listed("preset", [None])
    agents = listed("agents", []) if "agents" in cfg else preset_agents(presets)  # a preset names its agent
    axes = [listed("envs", []), listed("streams", [{}]), agents, listed("memories", [None]),
            listed("budgets", [None]), listed("items", [None]), presets, listed("settings", [{}]),
            listed("seeds", [0])]
    limits.check_seed_count(len(axes[-1]), "sweep config: seeds", "seeds: [0, 1, 2]")
    n = math.prod(len(a) for a in axes)
    if n > limits.MAX_CELLS:
        raise checks.fail("sweep config", n, f"a grid of at most {limits.MAX_CELLS:,} cells", "fewer values per key")
    for memory in axes[3]:  # a misspelt memory is an error, not a silently skipped cell
        if memory is not None and not is_memory_name(memory):
            raise UnknownNameError("memory (sweep config: memories)", memory, memory_names())
    cells, skipped = [], []
    # the memory options some memory of this grid takes: where a pair's memory does not, the pair is skipped
    elsewhere = set().union(*(memory_option_names(m) for m in _grid_memories(axes[2], axes[3])))
    for env, stream, agent, memory, budget, items, preset, settings, seed in itertools.product(*axes):
        if preset is not None and (why := preset_mismatch(preset, env, agent)):
            skipped.append(why)
            continue
        entry = agent_entry(agent)  # built in, a plugin's entry point, or package.module:Class
        if memory is not None and memory not in entry.memories:
            skipped.append(f"{agent} + {memory}: the agent accepts {list(entry.memories) or 'no memory'}")
            continue
        mem_keys = sorted(k.split(".", 1)[1] for k in (settings or {}) if isinstance(k, str) and k.startswith("memory."))
        mem = memory or entry.default_memory
        foreign = set(mem_keys) - (set() if mem is None else memory_option_names(mem))
        if foreign and foreign <= elsewhere:
            # settings of the other memories of this grid: not this pair's (a misspelt key still fails below)
            skipped.append(f"{agent} + {mem or 'no memory'}: memory options {mem_keys} are another memory's")
            continue
        if not entry.memories:
            budget = items = None  # a memoryless agent runs once per remaining combination
        cell = Cell(env, agent, memory, None if budget is None else float(budget), int(seed),
                    dict(settings or {}), {**(cfg.get("stream") or {}), **(stream or {})}, cfg.get("batch_size"),
                    cfg.get("device", "cpu"), None if items is None else int(items), preset)
        cell.config()  # every name, setting and stream option checked before any cell runs
        cells.append(cell)
    unique: dict[str, Cell] = {}
    for c in cells:  # one run per configuration, however it was spelled
        unique.setdefault(c.config_hash(), c)
    return list(unique.values()), sorted(set(skipped))


def parse_seeds(spec: str) -> list[int]:
    """``0-4`` -> [0, 1, 2, 3, 4]; ``0,2,5`` -> [0, 2, 5]; ranges and lists combine (``0-2,7``);
    at most :data:`agents.harness.limits.MAX_SEEDS` seeds."""
    seeds: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (hi and int(hi) < int(lo)):
            raise checks.fail("--seeds", spec, "seeds and ascending ranges of non-negative integers",
                              "--seeds 0-4 (or 0,1,2)")
        if int(hi or lo) > 2**32 - 1:
            raise checks.fail("--seeds", spec, f"seeds in [0, {2**32 - 1}]", "--seeds 0-4")
        # counted before any list is built: a range of a billion seeds is refused, not a MemoryError
        limits.check_seed_count(len(seeds) + (int(hi) - int(lo) + 1 if hi else 1), "--seeds", "--seeds 0-4")
        seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    if len(set(seeds)) != len(seeds):
        raise checks.fail("--seeds", spec, "each seed once", "--seeds 0-4")
    return seeds


def _grid_memories(agents: list, memories: list) -> set[str]:
    """Every memory a grid's cells can use: the ``memories`` axis, and each agent's own where it is null."""
    out = {m for m in memories if m is not None}
    if None in memories:
        out |= {agent_entry(a).default_memory for a in agents if a is not None and agent_entry(a).default_memory}
    return out
