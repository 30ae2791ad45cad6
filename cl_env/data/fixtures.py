"""Tiny data files in the exact on-disk formats of the real sources, for tests and examples.

The images are learnable: class ``c`` lights a class-specific block of pixels on top of noise,
so a learner trained on a fixture stream beats chance. Everything is written deterministically
from ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cl_env.data.idx import write_idx
from cl_env.data.mnist import IDX_STEMS


def class_images(
    labels: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator, n_classes: int = 10
) -> np.ndarray:
    """``uint8`` images whose class is visible: a bright patch whose position encodes the label."""
    n = len(labels)
    *lead, h, w = shape
    img = rng.integers(0, 60, size=(n, *shape), dtype=np.uint8)
    cols = int(np.ceil(np.sqrt(n_classes)))
    ph, pw = max(1, h // cols), max(1, w // cols)
    for c in range(n_classes):
        r0, c0 = (c // cols) * ph, (c % cols) * pw
        img[labels == c, ..., r0:r0 + ph, c0:c0 + pw] = 230
    return img


def write_mnist_like(
    root: str | Path,
    *,
    layout: str = "torchvision",
    name: str = "MNIST",
    n_train: int = 200,
    n_test: int = 50,
    gz: bool = False,
    seed: int = 0,
) -> Path:
    """Write the four IDX files of MNIST or Fashion-MNIST.

    Args:
        root: Data root.
        layout: ``"torchvision"`` writes ``root/<name>/raw/*``; ``"flat"`` writes the files
            straight into ``root`` (Debian's ``/usr/share/datasets/fashion-mnist`` layout).
        name: ``"MNIST"`` or ``"FashionMNIST"`` (torchvision's folder names).
        n_train: Training images (labels cycle through 0-9).
        n_test: Test images.
        gz: Write ``.gz`` files as the original distribution does.
        seed: Fixes the pixels.

    Returns:
        The folder holding the files.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / name / "raw" if layout == "torchvision" else Path(root)
    suffix = ".gz" if gz else ""
    for stem, n in zip(IDX_STEMS[::2], (n_train, n_test), strict=True):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        write_idx(folder / (stem + suffix), class_images(labels, (28, 28), rng))
        write_idx(folder / (stem.replace("images-idx3", "labels-idx1") + suffix), labels)
    return folder
