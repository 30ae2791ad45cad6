"""Results you can cite: a run's identity, atomic result files, loading, grouping and the tables.

The one module that owns results. ``cl-env run`` writes a run directory through it, ``compare``,
``report`` and ``sweep`` read run directories through it, so every tool groups and checks runs the
same way:

- **Identity.** A run's configuration (:func:`run_config`) is the env id with every stream option
  resolved (defaults included), batch size, agent, every setting with its default, memory,
  memory options, budget, seed and device; its hash (:func:`config_hash`) is a run's identity.
  Two sections are recorded but are not identity: ``runtime`` (torch threads, package versions,
  git commit, host) and ``derived`` (what the built objects resolved, e.g. the model an image
  shape picks).
- **Grouping.** Runs are grouped by their identity without the seed (:func:`group_hash`); a table
  shows the data source and every key whose value differs between the groups it shows; a group
  whose runs differ in ``runtime`` (threads, versions) says so in its notes.
- **Status.** ``completed`` runs are aggregated; ``diverged`` runs are shown flagged in rows of
  their own and never averaged in.
- **Files.** Every result file is written atomically (:func:`write_json_atomic`); a malformed or
  foreign ``result.json`` is named and skipped (:func:`find_results`), never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.harness import schema
from agents.harness.config import (  # noqa: F401 - the identity's functions, re-exported
    NON_IDENTITY,
    RunConfig,
    canonical,
    config_hash,
    group_hash,
    identity,
)
from cl_env.error import CLEnvError

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
# configuration sections that are recorded but do not make a different run
STATUSES = ("completed", "diverged")
# keys a result.json always has
REQUIRED = ("env", "agent", "seed", "config")


class RunDirectoryError(CLEnvError, ValueError):
    """An output directory holds another run (or nothing to resume)."""


class ResultFileError(CLEnvError, ValueError):
    """A ``result.json`` that does not parse or is not a cl-env result."""


# --------------------------------------------------------------------------- files
def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None (strict JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON to ``path`` atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(_finite(obj), indent=2, allow_nan=False, default=str) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`write_bytes_atomic`, UTF-8)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the new one, never a
    part (a uniquely named temporary in the same directory, fsync, ``os.replace``)."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # a failed write() names no file: name the one being written
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def read_json(path: str | Path) -> dict:
    """A JSON object from ``path``.

    Raises:
        ResultFileError: The file is empty, does not parse, or is not a JSON object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{path}: cannot be read ({exc})") from None
    if not text.strip():
        raise ResultFileError(f"{path}: empty file (a run killed while writing it, by an older cl-env)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise ResultFileError(f"{path}: JSON nested too deeply to be a cl-env file") from None
    if not isinstance(data, dict):
        raise ResultFileError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


# --------------------------------------------------------------------------- identity
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
    import subprocess

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
    import platform
    from importlib import metadata

    import torch

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
    from cl_env.registration import _plain

    return _plain(value)


def hparams_of(config: dict) -> dict:
    """The flat identity of a run for TensorBoard's HParams tab (seed included, runtime threads too)."""
    flat = {_label(k): v for k, v in flatten(identity(config)).items()}
    flat["torch_threads"] = (config.get("runtime") or {}).get("torch_threads")
    return {k: ("None" if v is None else v) for k, v in flat.items()}


# --------------------------------------------------------------------------- loading
@dataclass
class Run:
    """One loaded ``result.json``.

    Attributes:
        path: The file.
        data: Its contents (a legacy file's configuration normalised into today's sections).
    """

    path: Path
    data: dict

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def status(self) -> str:
        return self.data.get("status", "completed")

    @property
    def seed(self) -> int:
        return self.data["seed"]

    @property
    def generative(self) -> bool:
        return self.data.get("neg_test_elbo") is not None

    @property
    def group(self) -> str:
        return group_hash(self.config)


def _normalise_legacy(data: dict) -> dict:
    """A result.json written before run identity existed: its versions move to ``runtime``."""
    cfg = dict(data.get("config") or {})
    if "runtime" not in cfg:
        runtime = {k: cfg.pop(k) for k in ("python", "torch", "cl_env", "frechet_classifier_accuracy") if k in cfg}
        cfg["runtime"] = runtime
        cfg.setdefault("env", data.get("env"))
        cfg.setdefault("agent", data.get("agent"))
        cfg.setdefault("memory", data.get("memory"))
        cfg.setdefault("seed", data.get("seed"))
    data = {**data, "config": cfg}
    data.setdefault("status", "completed")
    data.setdefault("config_hash", config_hash(cfg))
    return data


def load_result(path: str | Path) -> Run:
    """Load one ``result.json`` and check it against the result schema (:mod:`agents.harness.schema`:
    types, ranges, ``config_hash`` against its ``config``, the top-level ``env``/``agent``/``memory``/
    ``seed`` against the configuration, summary metrics against the accuracy matrix).

    Raises:
        ResultFileError: It does not parse, is not a cl-env result, or fails the schema (the
            message names the file and the first reason).
    """
    path = Path(path)
    data = read_json(path)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ResultFileError(f"{path}: not a cl-env result (missing keys {missing})")
    if not isinstance(data["config"], dict):
        raise ResultFileError(f"{path}: not a cl-env result ('config' is not an object)")
    if schema.depth(data) > schema.MAX_DEPTH:
        raise ResultFileError(f"{path}: not a cl-env result (nested more than {schema.MAX_DEPTH} levels deep)")
    data = _normalise_legacy(data)
    found = schema.problem(data, config_hash)
    if found:
        raise ResultFileError(f"{path}: {found}; left out")
    return Run(path, data)


def find_results(paths: list[str | Path]) -> tuple[list[Run], list[str]]:
    """Every ``result.json`` at or under ``paths``; the second list names each skipped file and why.

    A path that is a file other than ``.json`` (a shell glob that caught logs) is ignored, and so
    are results under hidden directories below a given path (a Ray sweep's ``.storage``
    snapshots copy its cells' results; the cells' own directories hold the ones to read).
    """
    runs, skipped = [], []
    for p in map(Path, paths):
        if p.is_file() and p.suffix != ".json":
            continue
        files = [p] if p.is_file() else sorted(
            f for f in p.rglob(RESULT_FILE) if not any(part.startswith(".") for part in f.relative_to(p).parts[:-1]))
        for f in files:
            try:
                runs.append(load_result(f))
            except ResultFileError as exc:
                skipped.append(str(exc))
    return runs, skipped


def is_finished(run_dir: str | Path, expected_hash: str) -> bool:
    """Whether ``run_dir`` holds a parsed result of exactly the configuration ``expected_hash``."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return False
    try:
        run = load_result(path)
    except ResultFileError:
        return False
    return run.data.get("config_hash") == expected_hash and config_hash(run.config) == expected_hash


# --------------------------------------------------------------------------- grouping
@dataclass
class Group:
    """Runs of one configuration (all but the seed) and one status bucket."""

    key: str
    status: str
    runs: list[Run] = field(default_factory=list)
    duplicates: list[Run] = field(default_factory=list)  # same configuration and seed, not counted

    @property
    def config(self) -> dict:
        return {k: v for k, v in identity(self.runs[0].config).items() if k != "seed"}

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]


def group_runs(runs: list[Run]) -> list[Group]:
    """Group by configuration except the seed; diverged runs form groups of their own."""
    groups: dict[tuple[str, str], Group] = {}
    for r in runs:
        bucket = "diverged" if r.status == "diverged" else "completed"
        key = (r.group, bucket)
        groups.setdefault(key, Group(r.group, bucket)).runs.append(r)
    for g in groups.values():
        g.runs.sort(key=lambda r: (r.seed, str(r.path)))
        seen: set[str] = set()
        kept = []
        for r in g.runs:  # a run copied or repeated into two directories counts once
            h = config_hash(r.config)
            (g.duplicates if h in seen else kept).append(r)
            seen.add(h)
        g.runs = kept
    return list(groups.values())


def data_source(run_or_group: Run | Group) -> str:
    """The data source a run used (``mnist5k``, ``fashion_mnist``, ``cifar10`` ...)."""
    run = run_or_group.runs[0] if isinstance(run_or_group, Group) else run_or_group
    src = (run.data.get("data") or {}).get("data", {}) or {}
    if isinstance(src, dict) and src.get("source"):
        return str(src["source"])
    stream = run.config.get("stream_kwargs") or {}
    return str(stream.get("source") or stream.get("mnist_source") or "-")


# keys always shown as their own columns (not repeated among the differing settings)
_SHOWN = {"env", "agent", "memory", "stream_kwargs.source", "seed"}


def _label(key: str) -> str:
    for prefix, short in (("settings.", ""), ("memory_options.", "memory."), ("stream_kwargs.", "stream.")):
        if key.startswith(prefix):
            return short + key[len(prefix):]
    return key


def varying_config_keys(configs: list[dict], skip: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Dotted keys whose values differ between the ``configs`` that have them.

    A key only some configurations have (a setting of one agent, an option of one stream) counts
    when those disagree on it; the others show ``-`` there.
    """
    flats = [flatten(c) for c in configs]
    keys = sorted({k for f in flats for k in f} - set(skip))
    return [k for k in keys if len({canonical(f[k]) for f in flats if k in f}) > 1]


def varying_keys(groups: list[Group]) -> list[str]:
    """Identity keys (seed aside) that differ between ``groups``: the table's extra columns."""
    return varying_config_keys([g.config for g in groups], _SHOWN)


def _runtime_notes(g: Group) -> list[str]:
    notes = []
    rts = [r.config.get("runtime") or {} for r in g.runs]
    threads = sorted({str(rt.get("torch_threads")) for rt in rts if rt.get("torch_threads") is not None})
    if len(threads) > 1:
        notes.append(f"mixed torch threads {'/'.join(threads)}")
    for name in ("torch", "cl-env"):
        vs = sorted({str((rt.get("versions") or {}).get(name) or rt.get(name.replace("-", "_")))
                     for rt in rts} - {"None"})
        if len(vs) > 1:
            notes.append(f"mixed {name} {'/'.join(vs)}")
    commits = sorted({str(rt.get("git_commit"))[:8] for rt in rts if rt.get("git_commit")})
    if len(commits) > 1:
        notes.append(f"mixed commits {'/'.join(commits)}")
    return notes


def _stats(values: list[float | None]) -> tuple[float | None, float | None, int]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None, None, 0
    return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else None), len(vals)


def _text(mean: float | None, std: float | None, scale: float, digits: int) -> str:
    if mean is None:
        return "-"
    if std is None:
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def _divergence_note(g: Group) -> str:
    parts = []
    for r in g.runs:
        d = r.data.get("divergence") or {}
        where = f"task {d.get('task')}, step {d.get('step')}" if d else "unknown step"
        parts.append(f"seed {r.seed} diverged at {where}" + (f" ({d['reason']})" if d.get("reason") else ""))
    return "; ".join(parts)


# metric key, column title, scale for the Markdown text, digits
CLASSIFIER_METRICS = [
    ("effective_examples", "incremental storage (examples)", 1, 1),
    ("items", "items", 1, 0),
    ("retained_accuracy", "retained acc %", 100, 2),
    ("bti", "BTI %", 100, 2),
    ("backward_transfer", "BWT %", 100, 2),
    ("forward_transfer", "FWT %", 100, 2),
    ("forgetting", "forgetting %", 100, 2),
    ("online_accuracy", "online acc %", 100, 2),
    ("wall_time_s", "wall time s", 1, 1),
]


def _metric(run: Run, key: str) -> float | None:
    if key == "bti":
        from cl_env import metrics

        R = run.data.get("accuracy_matrix")
        return metrics.bti(R) if R else None
    v = run.data.get(key)
    return None if v is None else float(v)


@dataclass
class Table:
    """One comparison table: text rows for Markdown, numeric records for CSV/JSON."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    records: list[dict]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def _group_columns(g: Group, varying: list[str]) -> dict[str, Any]:
    cfg = g.config
    flat = flatten(cfg)
    out = {"env": cfg.get("env"), "source": data_source(g), "method": cfg.get("agent"),
           "memory": cfg.get("memory") or "-"}
    for k in varying:
        v = flat.get(k, "-")
        out[_label(k)] = v if v is None or isinstance(v, (int, float, str, bool)) else canonical(v)
    return out


def _sort_key(g: Group, varying: list[str]):
    cols = _group_columns(g, varying)
    return tuple(canonical(v) for v in cols.values()) + (g.status,)


def classifier_table(groups: list[Group]) -> Table:
    """The papers' layout: one row per configuration, seeds aggregated (mean ± sample std)."""
    varying = varying_keys(groups)
    labels = [_label(k) for k in varying]
    columns = ["env", "source", "method", "memory", *labels, "seeds",
               *[title for _, title, _, _ in CLASSIFIER_METRICS], "status", "notes"]
    rows, records = [], []
    for g in sorted(groups, key=lambda g: _sort_key(g, varying)):
        head = _group_columns(g, varying)
        seeds = ",".join(str(s) for s in g.seeds)
        record: dict[str, Any] = {**head, "seeds": seeds, "status": g.status, "config_hash": g.key}
        texts = []
        notes = _runtime_notes(g)
        for key, _, scale, digits in CLASSIFIER_METRICS:
            if g.status == "diverged" and key not in ("effective_examples", "items", "wall_time_s"):
                mean, std, n = None, None, 0
            else:
                mean, std, n = _stats([_metric(r, key) for r in g.runs])
            record.update({f"{key}_mean": mean, f"{key}_std": std, f"{key}_n": n})
            texts.append(_text(mean, std, scale, digits))
        if g.status == "diverged":
            notes.insert(0, _divergence_note(g))
        if g.duplicates:
            notes.append(f"{len(g.duplicates)} duplicate run(s) of a seed not counted: "
                         + ", ".join(str(r.path.parent) for r in g.duplicates))
        if any(((r.data.get("config") or {}).get("derived") or {}).get("test_task_ids") for r in g.runs):
            notes.append("task ids used at test time")
        warn = sorted({w for r in g.runs for w in (r.data.get("warnings") or [])})
        if warn:
            notes.append(f"{len(warn)} warning(s) in result.json")
        record["notes"] = "; ".join(notes)
        rows.append([str(v) for v in head.values()] + [seeds, *texts,
                    "**DIVERGED**" if g.status == "diverged" else g.status, record["notes"] or "-"])
        records.append(record)
    notes = []
    if any(g.status == "diverged" for g in groups):
        notes.append("diverged runs are listed in rows of their own and never averaged in")
    return Table("classification", columns, rows, records, notes)


def generative_table(groups: list[Group]) -> Table:
    """Generative runs: -ELBO and Fréchet distance after each task (LGM Figures 3-4), seeds aggregated."""
    varying = varying_keys(groups)
    labels = [_label(k) for k in varying]
    T = max((len(r.data.get("neg_test_elbo") or []) for g in groups for r in g.runs), default=0)
    columns = ["env", "source", "method", *labels, "seeds", "metric", *[f"after {t + 1}" for t in range(T)],
               "status"]
    rows, records = [], []
    for g in sorted(groups, key=lambda g: _sort_key(g, varying)):
        head = _group_columns(g, varying)
        head.pop("memory")
        seeds = ",".join(str(s) for s in g.seeds)
        record: dict[str, Any] = {**head, "seeds": seeds, "status": g.status, "config_hash": g.key}
        for key, label in (("neg_test_elbo", "-ELBO (nats)"), ("frechet_distance", "Fréchet")):
            texts = []
            for t in range(T):
                if g.status == "diverged":
                    mean, std, n = None, None, 0
                else:
                    mean, std, n = _stats([(r.data.get(key) or [None] * T)[t] if len(r.data.get(key) or []) > t
                                           else None for r in g.runs])
                record.update({f"{key}_after{t + 1}_mean": mean, f"{key}_after{t + 1}_std": std,
                               f"{key}_after{t + 1}_n": n})
                texts.append(_text(mean, std, 1, 1))
            rows.append([str(v) for v in head.values()] + [seeds, label, *texts,
                        "**DIVERGED**" if g.status == "diverged" else g.status])
        record["notes"] = "; ".join(([_divergence_note(g)] if g.status == "diverged" else []) + _runtime_notes(g))
        records.append(record)
    return Table("generative", columns, rows, records)


def comparison_tables(runs: list[Run]) -> list[Table]:
    """The tables of ``runs``: classifiers and generative runs separately, grouped by configuration."""
    groups = group_runs(runs)
    tables = []
    # a generative run, diverged or not, has neg_test_elbo (a list, maybe empty)
    cls = [g for g in groups if not any(r.generative for r in g.runs)]
    gen = [g for g in groups if g not in cls]
    if cls:
        tables.append(classifier_table(cls))
    if gen:
        tables.append(generative_table(gen))
    return tables



def to_markdown(tables: list[Table]) -> str:
    parts = []
    for t in tables:
        if len(tables) > 1:
            parts.append(f"### {t.title}\n")
        parts.append(t.markdown())
        parts += [f"\n{n}" for n in t.notes]
        parts.append("")
    return "\n".join(parts).rstrip() + "\n"


def to_csv(tables: list[Table]) -> str:
    """One CSV, a row per group, numeric ``*_mean``/``*_std``/``*_n`` columns (empty: no value)."""
    import csv
    import io

    columns: list[str] = []
    for t in tables:
        for rec in t.records:
            columns += [k for k in rec if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["table", *columns], lineterminator="\n")
    w.writeheader()
    for t in tables:
        for rec in t.records:
            w.writerow({"table": t.title, **{k: ("" if v is None else v) for k, v in rec.items()}})
    return buf.getvalue()


def to_json(tables: list[Table], groups: list[Group] | None = None, skipped: list[str] | None = None) -> str:
    """Tables as JSON: per group its numeric record, full configuration and result files."""
    by_key = {(g.key, g.status): g for g in (groups or [])}
    out = []
    for t in tables:
        recs = []
        for rec in t.records:
            g = by_key.get((rec["config_hash"], rec["status"]))
            extra = {} if g is None else {"config": g.config, "runs": [str(r.path) for r in g.runs]}
            recs.append({**rec, **extra})
        out.append({"table": t.title, "columns": t.columns, "records": recs, "notes": t.notes})
    return json.dumps(_finite({"tables": out, "skipped": skipped or []}), indent=2, allow_nan=False,
                      default=str) + "\n"
