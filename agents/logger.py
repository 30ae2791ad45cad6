"""The one logger: TensorBoard event files (``torch.utils.tensorboard``) under the run directory.

Agents never hold a writer; they return named loss tensors and the runner logs them here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def accuracy_heatmap(R: np.ndarray, title: str = "accuracy matrix"):
    """A matplotlib figure of ``R[i, j]`` (rows: after task i; columns: test task j).

    Built with ``matplotlib.figure.Figure`` on the Agg canvas, without pyplot (0.3 s to import).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    T = R.shape[1]
    fig = Figure(figsize=(1.2 + 0.35 * T, 1.0 + 0.35 * T))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(np.where(np.isnan(R), np.nan, R), vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xlabel("test task j")
    ax.set_ylabel("after training task i")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


class Logger:
    """Writes scalars, figures and image grids to TensorBoard; a no-op when ``out`` is None."""

    def __init__(self, out: str | Path | None, purge_step: int | None = None):
        self.writer = None
        if out is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out), purge_step=purge_step)

    def scalars(self, values: dict[str, float | torch.Tensor], step: int, prefix: str = "") -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            self.writer.add_scalar(prefix + k, float(v), step)

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
        if self.writer is None or x is None or len(x) == 0:
            return
        from torchvision.utils import make_grid

        self.writer.add_image(tag, make_grid(x[:100].detach().float().cpu(), nrow=nrow), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
