"""Errors raised by cl-env for user mistakes and missing data.

Every error says what was wrong, what was expected and how to fix it.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable

_NAME = reprlib.Repr()
_NAME.maxstring, _NAME.maxother, _NAME.maxlevel = 60, 60, 1


class CLEnvError(Exception):
    """Base class of every error cl-env raises on purpose."""


class DataNotFoundError(CLEnvError, FileNotFoundError):
    """The files of a data source are missing.

    Args:
        env_id: The environment or stream id that asked for the data.
        path: The path that was looked at.
        fix: The exact way to make the data available.
    """

    def __init__(self, env_id: str, path: str, fix: str):
        self.env_id, self.path, self.fix = env_id, str(path), fix
        super().__init__(f"{env_id}: data not found at {path}. Fix: {fix}")


class CorruptDataError(CLEnvError, ValueError):
    """A data file exists but does not have the expected format or size.

    Args:
        env_id: The environment or stream id that asked for the data.
        path: The offending file.
        problem: What is wrong with it (expected vs found).
        fix: How to repair it.
    """

    def __init__(self, env_id: str, path: str, problem: str, fix: str):
        self.env_id, self.path, self.problem, self.fix = env_id, str(path), problem, fix
        super().__init__(f"{env_id}: corrupt data file {path}: {problem}. Fix: {fix}")


class UnknownNameError(CLEnvError, KeyError):
    """A name (env id, agent, memory, setting) is not in its registry.

    The message lists the closest matches and every valid choice.
    """

    def __init__(self, kind: str, name: str, choices: Iterable[str], note: str | None = None):
        choices = sorted(choices)
        # a huge or non-string name (a YAML value) is rendered in part, never whole
        short = isinstance(name, str) and len(name) <= 200
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5) if short else []
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        self.kind, self.name, self.choices = kind, name, choices
        shown = _NAME.repr(name)
        if note is not None:  # a plugin path that did not import: say why, then the choices
            msg = f"unknown {kind} {shown}: {note}. Valid choices: {', '.join(choices)}, or package.module:Class"
        else:
            msg = f"unknown {kind} {shown}.{hint} Valid choices: {', '.join(choices)}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0])
