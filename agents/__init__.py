"""Agents: learners that join a model and a memory; the runner, logging and the CLI in :mod:`agents.harness`.

The only layer that imports all three of ``cl_env``, ``memory`` and ``agents``.
"""

from cl_env.install import require_own_packages

require_own_packages()  # another distribution's `agents` merged into this folder: say so, and the fix

from agents.base import Agent, StreamInfo  # noqa: E402
from agents.harness.run import Result, run, run_seeds  # noqa: E402
from agents.registry import AGENTS, agent_class  # noqa: E402

__all__ = ["AGENTS", "Agent", "Result", "StreamInfo", "agent_class", "run", "run_seeds"]
