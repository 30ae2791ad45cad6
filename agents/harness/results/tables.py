"""The comparison tables (classifiers and generative runs) and their Markdown, CSV and JSON forms."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from agents.harness.config import canonical
from agents.harness.results.configuration import _label, flatten
from agents.harness.results.files import _finite
from agents.harness.results.grouping import (
    Group,
    _divergence_note,
    _runtime_notes,
    _stats,
    _text,
    data_source,
    group_runs,
    varying_keys,
)
from agents.harness.results.loading import Run
from cl_env import metrics

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


TASK_IL = ("task_il_retained_accuracy", "Task-IL acc %", 100, 2)  # class-incremental runs: Task-IL beside


def classifier_metrics(groups: list[Group]) -> list[tuple[str, str, int, int]]:
    """:data:`CLASSIFIER_METRICS`, with the Task-IL column after retained accuracy when any run
    scored it (class-incremental streams with a single head)."""
    if not any(r.data.get(TASK_IL[0]) is not None for g in groups for r in g.runs):
        return CLASSIFIER_METRICS
    i = [k for k, *_ in CLASSIFIER_METRICS].index("retained_accuracy") + 1
    return [*CLASSIFIER_METRICS[:i], TASK_IL, *CLASSIFIER_METRICS[i:]]


def _metric(run: Run, key: str) -> float | None:
    if key == "bti":
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
    shown_metrics = classifier_metrics(groups)
    columns = ["env", "source", "method", "memory", *labels, "seeds",
               *[title for _, title, _, _ in shown_metrics], "status", "notes"]
    rows, records = [], []
    for g in sorted(groups, key=lambda g: _sort_key(g, varying)):
        head = _group_columns(g, varying)
        seeds = ",".join(str(s) for s in g.seeds)
        record: dict[str, Any] = {**head, "seeds": seeds, "status": g.status, "config_hash": g.key}
        texts = []
        notes = _runtime_notes(g)
        for key, _, scale, digits in shown_metrics:
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
