"""Plots and the self-contained HTML report of a run or a sweep (``cl-env report DIR``).

Every figure is drawn with matplotlib (Agg) and embedded as a base64 PNG, so the report is one
file that opens anywhere: the comparison table and retention-vs-storage plot, then per run the
accuracy-matrix heatmap, each task's accuracy over the stream (ARM Figure 4 / SRM Figure 2
style), the storage accounting, and the last image grids its memory logged to TensorBoard (what it
replays: recollections, recalled samples, teacher generations, distilled memories).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def retention_vs_storage(results: list[dict], path: str | Path | None = None):
    """Retained accuracy (%) against incremental storage (effective examples), one series per
    (env, agent, memory), mean ± std over seeds (the SRM paper's comparisons). Returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, dict[float, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.get("retained_accuracy") is None:
            continue
        budget = r.get("config", {}).get("budget")
        groups[(r["env"], r["agent"], r["memory"] or "-")][budget].append(
            (r["effective_examples"], 100 * r["retained_accuracy"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for (env, agent, mem), by_budget in sorted(groups.items()):
        pts = sorted((np.mean([s for s, _ in v]), np.mean([a for _, a in v]), np.std([a for _, a in v]))
                     for v in by_budget.values())
        xs, ys, es = zip(*pts, strict=True)
        label = f"{agent} ({mem})" + (f" · {env}" if len({k[0] for k in groups}) > 1 else "")
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    ax.set_xlabel("incremental storage (effective real examples)")
    ax.set_ylabel("retained accuracy %")
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _heatmap(R: np.ndarray, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.4))
    im = ax.imshow(100 * R, vmin=0, vmax=100, cmap="viridis")
    ticks = range(0, len(R), max(1, len(R) // 10))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("evaluated on task j")
    ax.set_ylabel("after task i")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="accuracy %")
    return fig


def _curves(R: np.ndarray, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    T = len(R)
    for j in range(T):
        ax.plot(range(j, T), 100 * R[j:, j], lw=1, marker=".", label=f"task {j}" if T <= 10 else None)
    ax.plot(range(T), [100 * R[i, : i + 1].mean() for i in range(T)], "k--", lw=2, label="mean of seen")
    ax.set_xticks(range(0, T, max(1, T // 10)))
    ax.set_xlabel("after task")
    ax.set_ylabel("accuracy %")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    return fig


def _generative(r: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, label in zip(axes, ("neg_test_elbo", "frechet_distance"), ("-ELBO (nats)", "Fréchet distance"),
                              strict=True):
        ax.plot(range(1, len(r[key]) + 1), r[key], marker="o")
        ax.set_xlabel("distributions seen")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    return fig


def _event_images(run_dir: Path) -> dict[str, str]:
    """The last image of every image tag in the run's TensorBoard events (PNG, base64)."""
    events = sorted(run_dir.glob("events.out.tfevents.*"))
    if not events:
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for ev in events:
        acc = EventAccumulator(str(ev), size_guidance={"images": 1})
        acc.Reload()
        for tag in acc.Tags().get("images", []):
            if tag.startswith("eval/accuracy_matrix"):
                continue  # redrawn above
            out[tag] = base64.b64encode(acc.Images(tag)[-1].encoded_image_string).decode()
    return out


def build_report(root: str | Path, out: str | Path | None = None) -> Path:
    """Write ``root/report.html`` (or ``out``) for every ``result.json`` under ``root``."""
    import matplotlib

    matplotlib.use("Agg")
    from agents.cli import compare_table

    root = Path(root)
    files = [root] if root.is_file() else sorted(root.rglob("result.json"))
    if not files:
        raise FileNotFoundError(f"no result.json at or under {root}: run `cl-env run ... --out {root}` first")
    results = [(f.parent, json.loads(f.read_text())) for f in files]
    header, rows = compare_table([r for _, r in results])
    parts = [f"<h1>cl-env report: {html.escape(str(root))}</h1>",
             f"<p>{len(results)} run(s).</p>", "<h2>Comparison</h2>", _table(header, rows)]
    classifiers = [r for _, r in results if r.get("retained_accuracy") is not None]
    if classifiers:
        parts += ["<h2>Retention against incremental storage</h2>",
                  _img(_png(retention_vs_storage(classifiers)), "retention vs storage")]
    parts.append("<h2>Runs</h2>")
    for run_dir, r in results:
        rel = run_dir.relative_to(root) if run_dir != root and root in run_dir.parents else run_dir.name
        title = f"{r['agent']} · {r['memory'] or 'no memory'} · {r['env']} · seed {r['seed']}"
        parts.append(f'<section><h3>{html.escape(title)}</h3><p class="path">{html.escape(str(rel))}</p>')
        if r.get("accuracy_matrix"):
            R = np.array(r["accuracy_matrix"], dtype=float)
            parts.append(_img(_png(_heatmap(R, "accuracy matrix")), "accuracy matrix")
                         + _img(_png(_curves(R, "accuracy of each task over the stream")), "per-task accuracy"))
            scores = (f"retained accuracy {100 * r['retained_accuracy']:.2f} %, BWT "
                      f"{100 * r['backward_transfer']:+.2f} %, forgetting {100 * r['forgetting']:.2f} %")
        else:
            parts.append(_img(_png(_generative(r)), "generative metrics"))
            scores = f"-ELBO {r['neg_test_elbo'][-1]:.2f} nats, Fréchet {r['frechet_distance'][-1]:.2f}"
        storage = [["incremental storage (bits)", f"{r['storage_bits']:,}"],
                   ["effective real examples", f"{r['effective_examples']:.1f}"],
                   ["replayable items", f"{r['items']:,}"], ["overhead (bits)", f"{r['overhead_bits']:,}"],
                   ["wall time (s)", f"{r['wall_time_s']:.1f}"]]
        parts.append(f"<p>{html.escape(scores)}</p>" + _table(["storage", "value"], storage))
        for tag, b64 in _event_images(run_dir).items():
            parts.append(f"<figure>{_img(b64, tag)}<figcaption>{html.escape(tag)}</figcaption></figure>")
        parts.append("</section>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
             "font-size:12px}img{margin:4px;vertical-align:top}section{border-top:1px solid #ddd;margin-top:1em}"
             ".path{color:#777;font-size:11px}figure{display:inline-block;margin:4px}"
             "figcaption{font-size:11px;color:#555}")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>cl-env report</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(out) if out is not None else (root if root.is_dir() else root.parent) / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
