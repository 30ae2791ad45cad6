"""``cl-env list``: the registered envs, agents and memories; ``cl-env list presets``: the presets."""

from __future__ import annotations

import argparse
import sys

import cl_env
from agents.presets import format_presets
from agents.registry import agent_class, agent_entry, agent_names
from memory import memory_names


def cmd_list(args: argparse.Namespace) -> int:
    if getattr(args, "what", None) == "presets":
        sys.stdout.write(format_presets())
        return 0
    print("Environments:")
    for env_id, spec in cl_env.STREAMS.items():
        print(f"  {env_id:24s} {spec.description}")
    print("\nAgents (memories it accepts; settings with defaults; plugins from installed packages too):")
    for name in agent_names():
        entry = agent_entry(name)
        mems = ", ".join(entry.memories) or "none"
        sets = ", ".join(f"{k}={v}" for k, v in agent_class(name).all_settings().items())
        print(f"  {name:8s} {entry.description}\n           memories: {mems}; settings: {sets}")
    print("\nMemories:")
    for name, path in memory_names().items():
        print(f"  {name:12s} {path}")
    print("\nPresets: cl-env list presets")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="registered envs, agents and memories; `list presets`: the presets")
    ls.add_argument("what", nargs="?", choices=["presets"], help="presets: every preset with its source")
    ls.set_defaults(func=cmd_list)
