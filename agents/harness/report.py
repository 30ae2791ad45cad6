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
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from agents.harness import frontier, frontier_grid, results
from cl_env.error import CLEnvError


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def retention_vs_storage(runs: list[results.Run], path: str | Path | None = None):
    """Retained accuracy (%) against incremental storage (effective examples), mean ± std over
    seeds (the SRM paper's comparisons). One series per configuration except the seed and the
    budget; completed runs only (a diverged run is no point on a curve). Returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, list[results.Run]]] = defaultdict(lambda: defaultdict(list))
    configs: dict[str, dict] = {}
    for r in runs:
        if (r.status != "completed" or r.data.get("retained_accuracy") is None
                or r.data.get("effective_examples") is None):  # no point without its storage
            continue
        cfg = {k: v for k, v in results.identity(r.config).items() if k not in ("seed", "budget")}
        key = results.canonical(cfg)
        configs[key] = cfg
        series[key][results.canonical(r.config.get("budget"))].append(r)
    varying = results.varying_config_keys([configs[k] for k in series], {"agent", "memory"})
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted(series):
        pts = sorted((np.mean([r.data["effective_examples"] for r in v]),
                      np.mean([100 * r.data["retained_accuracy"] for r in v]),
                      np.std([100 * r.data["retained_accuracy"] for r in v])) for v in series[key].values())
        xs, ys, es = zip(*pts, strict=True)
        cfg = configs[key]
        flat = results.flatten(cfg)
        label = f"{cfg['agent']} ({cfg.get('memory') or '-'})" + "".join(
            f" · {results._label(k)}={flat.get(k, '-')}" for k in varying)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=label)
    ax.set_xlabel("incremental storage (effective real examples)")
    ax.set_ylabel("retained accuracy %")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _heatmap(R: np.ndarray, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.4))
    im = ax.imshow(100 * R, vmin=0, vmax=100, cmap="viridis")
    ticks = range(0, R.shape[1], max(1, R.shape[1] // 10))
    ax.set_xticks(ticks)
    ax.set_yticks([t for t in ticks if t < len(R)])
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
        if _path_text(ev) != str(ev):
            continue  # TensorBoard's reader opens UTF-8 paths only: this run's images are left out
        acc = EventAccumulator(str(ev), size_guidance={"images": 1})
        acc.Reload()
        for tag in acc.Tags().get("images", []):
            if tag.startswith("eval/accuracy_matrix"):
                continue  # redrawn above
            out[tag] = base64.b64encode(acc.Images(tag)[-1].encoded_image_string).decode()
    return out


def build_report(root: str | Path, out: str | Path | None = None) -> Path:
    """Write ``root/report.html`` (or ``out``) for every ``result.json`` under ``root``.

    The comparison tables group runs as ``cl-env compare`` does (:mod:`agents.harness.results`); each
    run's section shows its status and its whole configuration; unreadable result files are
    listed, not fatal.
    """
    import matplotlib

    matplotlib.use("Agg")

    root = Path(root)
    runs, skipped = results.find_results([root])
    if not runs:
        more = f" ({len(skipped)} unreadable: {skipped[0]})" if skipped else ""
        raise FileNotFoundError(f"no readable result.json at or under {root}{more}: "
                                f"run `cl-env run ... --out {root}` first")
    parts = [f"<h1>cl-env report: {html.escape(str(root))}</h1>", f"<p>{len(runs)} run(s).</p>"]
    if skipped:
        parts.append("<p>Skipped (not readable results):</p><ul>"
                     + "".join(f"<li>{html.escape(n)}</li>" for n in skipped) + "</ul>")
    parts.append("<h2>Comparison</h2>")
    for t in results.comparison_tables(runs):
        parts.append(_table(t.columns, t.rows) + "".join(f"<p>{html.escape(n)}</p>" for n in t.notes))
    parts += _frontier_section(root, runs)
    classifiers = [r for r in runs if r.data.get("retained_accuracy") is not None]
    if classifiers:
        parts += ["<h2>Retention against incremental storage</h2>",
                  _img(_png(retention_vs_storage(classifiers)), "retention vs storage")]
    parts.append("<h2>Runs</h2>")
    for run in runs:
        run_dir, r = run.path.parent, run.data
        rel = run_dir.relative_to(root) if run_dir != root and root in run_dir.parents else run_dir.name
        title = f"{r['agent']} · {r.get('memory') or 'no memory'} · {r['env']} · seed {r['seed']}"
        if run.status != "completed":
            title += f" · {run.status.upper()}"
        parts.append(f'<section><h3>{html.escape(title)}</h3><p class="path">{html.escape(_path_text(rel))} · '
                     f'configuration {html.escape(r.get("config_hash", ""))}</p>')
        if run.status == "diverged":
            d = r.get("divergence") or {}
            parts.append(f'<p class="bad">Diverged at step {d.get("step")} (task {d.get("task")}): '
                         f'{html.escape(str(d.get("reason")))}. Not a result: never averaged in.</p>')
        R = np.array([[np.nan if v is None else v for v in row] for row in r.get("accuracy_matrix") or []], dtype=float)
        if R.ndim == 2 and R.size:  # (a run diverged before its first evaluation has none)
            parts.append(_img(_png(_heatmap(R, "accuracy matrix")), "accuracy matrix")
                         + _img(_png(_curves(R, "accuracy of each task over the stream")), "per-task accuracy"))
        if run.status == "completed" and r.get("retained_accuracy") is not None:
            scores = (f"retained accuracy {_pct(r['retained_accuracy'])} %, BWT "
                      f"{_pct(r.get('backward_transfer'), '+.2f')} %, forgetting {_pct(r.get('forgetting'))} %")
        elif run.status == "completed":
            parts.append(_img(_png(_generative(r)), "generative metrics"))
            scores = f"-ELBO {r['neg_test_elbo'][-1]:.2f} nats, Fréchet {r['frechet_distance'][-1]:.2f}"
        else:
            scores = "no scores: the run diverged"
        storage = [["incremental storage (bits)", _num(r.get("storage_bits"), ",")],
                   ["effective real examples", _num(r.get("effective_examples"), ".1f")],
                   ["replayable items", _num(r.get("items"), ",")], ["overhead (bits)", _num(r.get("overhead_bits"), ",")],
                   ["wall time (s)", _num(r.get("wall_time_s"), ".1f")]]
        parts.append(f"<p>{html.escape(scores)}</p>" + _table(["storage", "value"], storage))
        counters = {**(r.get("counters") or {})}
        if counters or r.get("warnings"):
            parts.append(_table(["counter / warning", "value"],
                                [[k, str(v)] for k, v in counters.items()]
                                + [["warning", w] for w in r.get("warnings") or []]))
        config_rows = [[k, json.dumps(v, default=str)] for k, v in results.flatten(run.config).items()]
        parts.append("<details><summary>configuration</summary>" + _table(["key", "value"], config_rows)
                     + "</details>")
        for tag, b64 in _event_images(run_dir).items():
            parts.append(f"<figure>{_img(b64, tag)}<figcaption>{html.escape(tag)}</figcaption></figure>")
        parts.append("</section>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
             "font-size:12px}img{margin:4px;vertical-align:top}section{border-top:1px solid #ddd;margin-top:1em}"
             ".path{color:#777;font-size:11px}figure{display:inline-block;margin:4px}"
             "figcaption{font-size:11px;color:#555}.bad{color:#b00;font-weight:bold}")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>cl-env report</title>"
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    path = Path(out) if out is not None else (root if root.is_dir() else root.parent) / "report.html"
    results.write_text_atomic(path, doc)
    return path


def _frontier_section(root: Path, runs: list[results.Run]) -> list[str]:
    """The frontier's table and plot when ``root`` holds one (``frontier.json``, written by
    ``cl-env frontier``): the same points, table and figure as its ``frontier.md``/``.png``."""
    try:
        grid = frontier_grid.read_grid(root) if root.is_dir() else None
        if grid is None:
            return []
        pts, missing = frontier_grid.points_of(grid, runs)
    except (CLEnvError, ValueError, TypeError) as exc:
        return [f"<p class=\"bad\">{html.escape(frontier_grid.GRID_FILE)} is not a readable frontier: "
                f"{html.escape(str(exc))}</p>"]
    t = frontier.frontier_table(pts)
    notes = t.notes + ([f"{len(missing)} cell(s) of the grid have no result yet"] if missing else [])
    return ["<h2>Frontier: retained accuracy against stored bits</h2>", _table(t.columns, t.rows),
            *(f"<p>{html.escape(n)}</p>" for n in notes),
            _img(_png(frontier.plot_frontier(pts, title=frontier.describe(grid.env, grid.agent, pts))),
                 "frontier: retained accuracy against stored kilobytes")]


def _num(v, spec: str) -> str:
    """A value of a result as text; ``-`` where the file has none (an older or hand-edited file)."""
    return "-" if v is None else format(v, spec)


def _pct(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(100 * v, spec)


def _path_text(p) -> str:
    """A path as text that UTF-8 can hold (a name with bytes that are not UTF-8 shows U+FFFD)."""
    return os.fsencode(str(p)).decode("utf-8", "replace")


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
