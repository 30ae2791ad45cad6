"""The one logger: TensorBoard event files (``torch.utils.tensorboard``) under the run directory,
and, on request, the scalars as CSV (``progress.csv``), JSON lines (``progress.jsonl``) or a table
on stdout, written by Stable-Baselines3's logger formats (a dependency already), and to Weights &
Biases (``wandb``, the optional ``[wandb]`` extra; ``WANDB_MODE=offline`` writes the run locally).

Agents never hold a writer; they return named loss tensors and the runner logs them here. Every
scalar, image and text uses one x-axis, the number of training examples seen, so training and
evaluation curves overlay; a resumed run purges what the killed run logged after its checkpoint
(``purge_step``, in examples). The run's configuration goes in as text and as TensorBoard hparams
(:meth:`Logger.hparams`), so the HParams tab filters and compares runs by agent, memory, budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cl_env import checks
from cl_env.error import CLEnvError

FORMATS = ("tensorboard", "csv", "jsonl", "stdout", "wandb")
WANDB_ID_FILE = "wandb-run-id"  # a resumed run continues the same W&B run
STEP_KEY = "examples"  # the x-axis column of the CSV / JSON-lines files


def parse_formats(text: str | list | tuple | None, name: str = "log") -> tuple[str, ...]:
    """``"tensorboard,csv"`` (or a list of names) -> the formats, each checked; None -> TensorBoard
    only. ``name``: what errors call the value (a sweep file's ``log`` key names its file)."""
    if text is None:
        return ("tensorboard",)
    if isinstance(text, str):
        text_items = text.split(",")
    elif isinstance(text, (list, tuple)) and all(isinstance(s, str) for s in text):
        text_items = list(text)
    else:
        raise checks.fail(name, text, f"formats as text or a list of names, of {list(FORMATS)}", "--log tensorboard,csv")
    items = [s.strip() for s in text_items if s.strip()]
    for item in items:
        checks.choice(name, item, FORMATS, fix="--log tensorboard,csv,jsonl,stdout,wandb")
    if not items:
        raise checks.fail(name, text, f"one or more of {list(FORMATS)}", "--log tensorboard,csv")
    if "wandb" in items:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            raise CLEnvError("--log wandb needs the wandb package, which is not installed; expected the "
                             "[wandb] extra; fix: pip install -e '.[wandb]' (or drop wandb from --log)")
    return tuple(dict.fromkeys(items))


def _ordered_csv(path: str):
    """Stable-Baselines3's CSV writer, its new columns in the order they first appear: SB3 adds
    them as a set difference, whose order changes with Python's hash seed, so two processes
    logging the same run wrote different headers (a resumed run's file differed from an
    uninterrupted one's)."""
    from stable_baselines3.common.logger import CSVOutputFormat

    class OrderedCSV(CSVOutputFormat):
        def write(self, key_values, key_excluded, step=0):
            new = [k for k in key_values if k not in self.keys]
            if new:  # SB3's header rewrite, in a fixed order; then SB3 writes the row
                self.keys.extend(new)
                self.file.seek(0)
                lines = self.file.readlines()
                self.file.seek(0)
                self.file.write(",".join(self.keys) + "\n")
                for line in lines[1:]:
                    self.file.write(line[:-1] + self.separator * len(new) + "\n")
            super().write(key_values, key_excluded, step)

    return OrderedCSV(path)


def _number(text: str) -> int | float:
    """A CSV cell back as the number it was written from (``50`` stays an int)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _kept_rows(path: Path, purge_step: int | None) -> list[dict]:
    """Rows of an existing CSV / JSON-lines file logged before ``purge_step`` (a resumed run keeps
    them and rewrites the file; what the killed run logged after its checkpoint is dropped)."""
    if purge_step is None or not path.exists():
        return []
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    else:
        import csv

        with path.open(newline="") as f:
            rows = [{k: _number(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
    return [r for r in rows if r.get(STEP_KEY, 0) < purge_step]


def _after_existing_event_files(out: Path) -> None:
    """Wait (at most about a second) until the clock is past the newest event file's timestamp.

    TensorBoard reads a run's event files in name order, ``events.out.tfevents.<seconds>.<host>.
    <pid>.<counter>``: a resumed session started in the same second as the killed one sorts by pid
    and counter as text (``.10`` before ``.9``), so its file could be read first and the killed
    session's earlier points dropped as out of order. A later second sorts it last."""
    import time

    stamps = []
    for path in out.glob("events.out.tfevents.*"):
        parts = path.name.split(".")
        if len(parts) > 3 and parts[3].isdigit():
            stamps.append(int(parts[3]))
    if stamps:
        while int(time.time()) <= max(stamps):
            time.sleep(0.05)


def _wandb_run(out: str | Path | None, purge_step: int | None, run_name: str | None):
    """A W&B run under ``out`` (its ``wandb/`` folder); a resumed run (``purge_step``) continues
    the run whose id the first session left in ``out/wandb-run-id``. The project is
    ``$WANDB_PROJECT`` (default ``cl-env``); ``WANDB_MODE=offline`` logs without a network (sync
    later with ``wandb sync``). W&B keeps steps monotonic, so on resume it drops the points the
    killed session had logged past its checkpoint rather than replacing them (TensorBoard and the
    CSV / JSON-lines files purge them exactly)."""
    import os

    import wandb

    id_file = None if out is None else Path(out) / WANDB_ID_FILE
    run_id = None
    if purge_step is not None and id_file is not None and id_file.exists():
        run_id = id_file.read_text().strip() or None
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "cl-env"), name=run_name, id=run_id,
                     resume="allow" if run_id else None, dir=None if out is None else str(out),
                     reinit="finish_previous")
    if id_file is not None:
        id_file.write_text(run.id)
    return run


def accuracy_heatmap(R: np.ndarray, title: str = "accuracy matrix"):
    """A matplotlib figure of ``R[i, j]`` (rows: after task i; columns: test task j).

    Built with ``matplotlib.figure.Figure`` on the Agg canvas, without pyplot (0.3 s to import).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    T = R.shape[1]
    fig = Figure(figsize=(1.2 + 0.35 * T, 1.0 + 0.35 * T))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(np.where(np.isnan(R), np.nan, R), vmin=0.0, vmax=1.0, cmap="viridis")
    for axis in (ax.xaxis, ax.yaxis):  # tasks are integers: never a tick at 2.5
        axis.set_major_locator(MaxNLocator(integer=True, nbins=min(T, 10)))
    ax.set_xlabel("test task j")
    ax.set_ylabel("after training task i")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


class Logger:
    """Writes scalars, figures and image grids to TensorBoard, and scalars to the other formats
    asked for (``formats``: any of :data:`FORMATS`); a no-op when ``out`` is None (``stdout``
    still prints).

    CSV and JSON-lines rows are ``{"examples": step, tag: value, ...}``, one per call of
    :meth:`scalars`; the CSV grows a column whenever a new tag appears (rewritten by SB3's writer).
    """

    def __init__(self, out: str | Path | None, purge_step: int | None = None,
                 formats: tuple[str, ...] | list[str] = ("tensorboard",), run_name: str | None = None):
        self.writer = None
        self.kv: list = []
        self.wandb = None
        formats = parse_formats(list(formats))
        if "wandb" in formats:
            self.wandb = _wandb_run(out, purge_step, run_name)
        if out is not None and "tensorboard" in formats:
            from torch.utils.tensorboard import SummaryWriter

            if purge_step is not None:
                _after_existing_event_files(Path(out))
            self.writer = SummaryWriter(str(out), purge_step=purge_step)
        for fmt, name in (("csv", "progress.csv"), ("jsonl", "progress.jsonl")):
            if out is not None and fmt in formats:
                from stable_baselines3.common.logger import JSONOutputFormat

                path = Path(out) / name
                kept = _kept_rows(path, purge_step)
                w = _ordered_csv(str(path)) if fmt == "csv" else JSONOutputFormat(str(path))
                for row in kept:
                    w.write(row, dict.fromkeys(row, ()), int(row.get(STEP_KEY, 0)))
                self.kv.append(w)
        if "stdout" in formats:
            import sys

            from stable_baselines3.common.logger import HumanOutputFormat

            self.kv.append(HumanOutputFormat(sys.stdout))

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def hparams(self, hparams: dict, metrics: list[str]) -> None:
        """Write the HParams plugin's experiment and session-start summaries into this run.

        ``hparams``: flat name -> bool/int/float/str (others as text); ``metrics``: the scalar
        tags the HParams tab shows per run (logged later with :meth:`scalars`). Written into the
        run's own event file rather than through ``SummaryWriter.add_hparams``, which opens a
        second run directory; with W&B, the run's config.
        """
        from torch.utils.tensorboard.summary import hparams as hp_summary

        clean = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hparams.items()}
        if self.wandb is not None:
            self.wandb.config.update(clean, allow_val_change=True)
        if self.writer is None:
            return
        exp, ssi, _ = hp_summary(clean, {m: 0.0 for m in metrics})  # values: logged as scalars
        fw = self.writer._get_file_writer()
        fw.add_summary(exp)
        fw.add_summary(ssi)

    def end_session(self, status: str) -> None:
        """The HParams session-end summary (status ``completed`` -> success, else failure); W&B's
        summary gets ``status``."""
        if self.wandb is not None:
            self.wandb.summary["status"] = status
        if self.writer is None:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.plugins.hparams.api_pb2 import Status
        from tensorboard.plugins.hparams.metadata import (
            PLUGIN_DATA_VERSION,
            PLUGIN_NAME,
            SESSION_END_INFO_TAG,
        )
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

        code = Status.Value("STATUS_SUCCESS" if status == "completed" else "STATUS_FAILURE")
        content = HParamsPluginData(session_end_info=SessionEndInfo(status=code), version=PLUGIN_DATA_VERSION)
        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content.SerializeToString()))
        self.writer._get_file_writer().add_summary(
            Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=meta)]))

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def scalars(self, values: dict[str, float | torch.Tensor], step: int, prefix: str = "") -> None:
        if not values:
            return
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(prefix + k, float(v), step)
        if self.kv:
            row = {STEP_KEY: int(step), **{prefix + k: float(v) for k, v in values.items()}}
            excluded = dict.fromkeys(row, ())  # SB3's writers take one (empty) exclusion per key
            for w in self.kv:
                w.write(row, excluded, int(step))
        if self.wandb is not None:
            self.wandb.log({prefix + k: float(v) for k, v in values.items()}, step=int(step))

    def accuracy_matrix(self, R: np.ndarray, step: int, figure: bool = False) -> None:
        """The accuracy matrix as a heatmap image (cheap: a colour map, 16 px per cell); with
        ``figure=True`` also as a labelled matplotlib figure (about 0.3 s, so once per run)."""
        if self.writer is None:
            return
        from matplotlib import colormaps

        rgba = colormaps["viridis"](np.nan_to_num(np.clip(R, 0, 1), nan=0.0))[..., :3]
        img = np.repeat(np.repeat(rgba, 16, axis=0), 16, axis=1).transpose(2, 0, 1)
        self.writer.add_image("eval/accuracy_matrix", img.astype(np.float32), step)
        if figure:
            fig = accuracy_heatmap(R)
            fig.canvas.draw()
            rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].transpose(2, 0, 1)
            self.writer.add_image("eval/accuracy_matrix_figure", rgb, step, dataformats="CHW")

    def images(self, tag: str, x: torch.Tensor, step: int, nrow: int = 10) -> None:
        """A grid of images in [0, 1] (what a memory replays)."""
        if (self.writer is None and self.wandb is None) or x is None or len(x) == 0:
            return
        from torchvision.utils import make_grid

        grid = make_grid(x[:100].detach().float().cpu(), nrow=nrow)
        if self.writer is not None:
            self.writer.add_image(tag, grid, step)
        if self.wandb is not None:
            import wandb

            self.wandb.log({tag: wandb.Image(grid.permute(1, 2, 0).numpy())}, step=int(step))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        for w in self.kv:
            w.close()  # SB3's stdout writer does not close a stream it does not own
        self.kv = []
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
