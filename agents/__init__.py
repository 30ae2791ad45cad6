"""Agents: learners that join a model and a memory, the benchmark runner, logging and the CLI.

The only layer that imports all three of ``cl_env``, ``memory`` and ``agents``.
"""

from agents.base import Agent, StreamInfo
from agents.registry import AGENTS, agent_class
from agents.runner import Result, run

__all__ = ["AGENTS", "Agent", "Result", "StreamInfo", "agent_class", "run"]
