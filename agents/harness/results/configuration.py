"""A run's identity as the tables and loggers see it: flattened keys, the differences between two
configurations, :func:`run_config` (:class:`agents.harness.config.RunConfig` as a dict) and the
``runtime`` section that is recorded but is not identity."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from agents.harness.config import RunConfig, canonical, identity
from cl_env.registration import _plain


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"settings": {"lr": 0.1}}`` -> ``{"settings.lr": 0.1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def differing_keys(a: dict, b: dict) -> list[str]:
    """Dotted identity keys whose values differ between two configurations (absent counts)."""
    fa, fb = flatten(identity(a)), flatten(identity(b))
    absent = "<absent>"
    return sorted(k for k in {*fa, *fb} if canonical(fa.get(k, absent)) != canonical(fb.get(k, absent)))


def describe_differences(old: dict, new: dict, keys: list[str] | None = None, limit: int = 8) -> str:
    """``"settings.lr: 0.1 -> 0.05, seed: 0 -> 1"`` for the differing keys."""
    fa, fb = flatten(identity(old)), flatten(identity(new))
    keys = differing_keys(old, new) if keys is None else keys
    parts = [f"{k}: {fa.get(k, '<absent>')!r} -> {fb.get(k, '<absent>')!r}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"... and {len(keys) - limit} more")
    return ", ".join(parts)


def _git_commit(where: Path) -> dict:
    """The commit of the source checkout cl-env runs from, if it is one (and whether it is dirty)."""
    for parent in (where, *where.parents):
        if (parent / ".git").exists():
            break
    else:
        return {}
    try:
        head = subprocess.run(["git", "-C", str(parent), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return {}
        dirty = subprocess.run(["git", "-C", str(parent), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"git_commit": head.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


_RUNTIME_CACHE: dict = {}


def runtime_info() -> dict:
    """Threads, package versions, git commit and host of this process (not part of identity)."""
    if not _RUNTIME_CACHE:
        versions = {}
        for dist in ("cl-env", "torch", "torchvision", "numpy", "gymnasium", "quadprog",
                     "stable-baselines3"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                versions[dist] = None
        _RUNTIME_CACHE.update({"python": platform.python_version(), "versions": versions,
                               "host": platform.node(), "platform": platform.platform(),
                               **_git_commit(Path(__file__).resolve().parent)})
    return {"torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), **_RUNTIME_CACHE}


def run_config(env_id: str, agent: str = "online", memory: str | None = None, budget: float | None = None,
               seed: int = 0, device: str = "cpu", settings: dict | None = None,
               stream_kwargs: dict | None = None, batch_size: int | None = None,
               items: int | None = None, preset: str | None = None) -> dict:
    """The fully resolved identity of a run as a dict: :meth:`RunConfig.build`'s ``to_dict()``
    (every default filled in, every value checked; a ``preset`` fills what the explicit arguments
    leave out and is recorded; see :mod:`agents.harness.config`)."""
    return RunConfig.build(env_id, agent, memory, budget, seed, device, settings, stream_kwargs, batch_size,
                           items, preset).to_dict()


def plain(value: Any) -> Any:
    """A JSON-able form of a configuration value (paths as strings, tuples as lists)."""
    return _plain(value)


def hparams_of(config: dict) -> dict:
    """The flat identity of a run for TensorBoard's HParams tab (seed included, runtime threads too)."""
    flat = {_label(k): v for k, v in flatten(identity(config)).items()}
    flat["torch_threads"] = (config.get("runtime") or {}).get("torch_threads")
    return {k: ("None" if v is None else v) for k, v in flat.items()}


def _label(key: str) -> str:
    for prefix, short in (("settings.", ""), ("memory_options.", "memory."), ("stream_kwargs.", "stream.")):
        if key.startswith(prefix):
            return short + key[len(prefix):]
    return key

