"""A sweep's progress: a line per finished cell (or a tqdm bar) and the summary table."""

from __future__ import annotations

import threading
import time

from tqdm.auto import tqdm

from agents.harness.sweep.cells import Cell


class _Progress:
    """One line per finished cell: counts, elapsed time and an ETA; or, with ``bar``, a tqdm bar
    (on stderr) whose postfix is the last finished cell (failures and divergences still get a line)."""

    def __init__(self, total: int, log, bar: bool = False):
        self.total, self.log, self.done, self.workers = total, log, 0, 1
        self.started = time.monotonic()
        self.seconds: list[float] = []
        self.bar = tqdm(total=total, unit="cell", dynamic_ncols=True) if bar else None
        self.lock = threading.Lock()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __call__(self, rec: dict) -> dict:
        with self.lock:  # cells finish in this process and in a thread beside it (sweep._alongside)
            return self._update(rec)

    def _update(self, rec: dict) -> dict:
        self.done += 1
        if rec.get("seconds"):
            self.seconds.append(rec["seconds"])
        c = Cell(**rec["cell"])
        what = c.describe()
        if rec["status"] == "completed":
            score = rec.get("score")
            head = f"done: {what}: {score:.4f}" if score is not None else f"done: {what}"
        elif rec["status"] == "diverged":
            d = rec.get("divergence") or {}
            head = f"DIVERGED: {what}: at step {d.get('step')} (task {d.get('task')})"
        else:
            head = f"FAILED: {what}: {rec.get('error')}"
        if self.bar is not None:
            budget = "default" if c.budget is None else f"{c.budget:g}"
            score = rec.get("score")
            self.bar.set_postfix_str(f"last: {c.agent} {c.memory or ''} budget={budget} seed={c.seed} "
                                     + (rec["status"] if score is None else f"{score:.4f}"), refresh=False)
            self.bar.update(1)
            if rec["status"] != "completed":
                tqdm.write(head)
            return rec
        elapsed = time.monotonic() - self.started
        left = self.total - self.done
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else 0.0
        eta = left * mean / max(1, self.workers)
        self.log(f"[{self.done}/{self.total}] {head} ({rec.get('seconds', 0):.1f} s) | elapsed "
                 f"{_duration(elapsed)}, ETA {_duration(eta) if left else '0 s'}")
        return rec


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else (f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s")


def summary_table(records: list[dict]) -> str:
    """Counts of completed / diverged / failed cells and a Markdown row per cell."""
    counts = {k: sum(r["status"] == k for r in records) for k in ("completed", "diverged", "failed")}
    nodes = any(r.get("node") for r in records)
    lines = [f"sweep summary: {len(records)} cell(s) run: {counts['completed']} finished, "
             f"{counts['diverged']} diverged, {counts['failed']} failed",
             "| cell | status | score | seconds | attempts | " + ("node | " if nodes else "") + "directory / error |",
             "|---|---|---|---|---|" + ("---|" if nodes else "") + "---|"]
    for r in records:
        score = "-" if r.get("score") is None else f"{r['score']:.4f}"
        where = r.get("error") if r["status"] == "failed" else r.get("dir", "")
        node = ""
        if nodes:
            n = r.get("node") or {}
            node = f"{n.get('host', '?')} {str(n.get('node_id', ''))[:8]}".strip()
            back = r.get("resumed_from")
            if back:
                node += f" (resumed at step {back['steps']} from {str(back['node'].get('node_id', ''))[:8]})"
            node += " | "
        lines.append(f"| {Cell(**r['cell']).describe()} | {r['status']} | {score} | {r.get('seconds', 0):.1f} | "
                     f"{r.get('attempts', 1)} | {node}{where} |")
    return "\n".join(lines)
