"""Loading torch files without executing anything in them.

``torch.load(weights_only=True)`` admits tensors and plain containers and refuses every other
pickled global before it is called. :func:`load_weights_only` wraps it so every failure is one
clear line: a crafted file ("refused without running them", naming the refused global), an
empty, truncated or foreign file, with the fix.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from cl_env.error import CLEnvError


class UnsafeFileError(CLEnvError, ValueError):
    """A torch file that cannot be loaded safely: crafted, truncated, empty or not a torch file."""


def describe_load_error(exc: Exception) -> tuple[bool, str]:
    """``(crafted, reason)`` for an exception of ``torch.load(weights_only=True)``."""
    text = str(exc)
    found = re.search(r"unsupported GLOBAL (\S+)", text, flags=re.I) or re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return True, f"refused to call {found.group(1)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "WeightsUnpickler error:" in ln:
            rest = ln.split("WeightsUnpickler error:", 1)[1].strip() or (lines[i + 1] if i + 1 < len(lines) else "")
            return False, f"{type(exc).__name__}: {rest[:200]}"
    # never torch's advice to re-run with weights_only=False: that is what would run a payload
    kept = [ln for ln in lines if "weights_only" not in ln]
    return False, f"{type(exc).__name__}: {(kept[0] if kept else 'not loadable with weights_only=True')[:200]}"


def load_weights_only(path: str | Path, what: str, fix: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure one :class:`UnsafeFileError`.

    Args:
        path: The file.
        what: What it is, for the message (``"checkpoint"``, ``"memory.vae_path"``).
        fix: How the user repairs it.
    """
    path = Path(path)
    if not path.is_file():
        raise UnsafeFileError(f"{what} {path} does not exist; {fix}")
    if path.stat().st_size == 0:
        raise UnsafeFileError(f"{what} {path} is empty (0 bytes); {fix}")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickle protocols: the error below says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure is one clear line
        crafted, reason = describe_load_error(exc)
        if crafted:
            raise UnsafeFileError(f"{what} {path} holds objects other than tensors and plain containers, "
                                  f"refused without running them ({reason}); {fix}") from None
        raise UnsafeFileError(f"{what} {path} cannot be read as a torch file ({reason}); {fix}") from None
