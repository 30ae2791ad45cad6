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


def write_cifar(root: str | Path, *, which: str = "cifar10", train_per_class: int = 10,
                test_per_class: int = 4, seed: int = 0) -> Path:
    """Write CIFAR-10 or CIFAR-100 pickles in torchvision's layout (few images per class).

    CIFAR-100's coarse label of fine class ``c`` is ``c // 5`` here (the real mapping differs).
    """
    import pickle

    rng = np.random.default_rng(seed)
    n_classes = 10 if which == "cifar10" else 100
    folder = Path(root) / ("cifar-10-batches-py" if which == "cifar10" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)

    def split(per_class):
        labels = np.repeat(np.arange(n_classes), per_class)
        rng.shuffle(labels)
        data = class_images(labels, (3, 32, 32), rng, n_classes).reshape(len(labels), 3072)
        return data, labels.tolist()

    def dump(name, data, labels):
        d = {b"data": data}
        if which == "cifar10":
            d[b"labels"] = labels
        else:
            d[b"fine_labels"] = labels
            d[b"coarse_labels"] = [c // 5 for c in labels]
        with open(folder / name, "wb") as f:
            pickle.dump(d, f)

    if which == "cifar10":
        data, labels = split(train_per_class)
        parts = np.array_split(np.arange(len(labels)), 5)
        for i, idx in enumerate(parts):
            dump(f"data_batch_{i + 1}", data[idx], [labels[j] for j in idx])
        dump("test_batch", *split(test_per_class))
        meta = {b"label_names": [f"class{c}".encode() for c in range(10)]}
        meta_name = "batches.meta"
    else:
        dump("train", *split(train_per_class))
        dump("test", *split(test_per_class))
        meta = {b"fine_label_names": [f"fine{c}".encode() for c in range(100)],
                b"coarse_label_names": [f"coarse{c}".encode() for c in range(20)]}
        meta_name = "meta"
    with open(folder / meta_name, "wb") as f:
        pickle.dump(meta, f)
    return folder


def write_svhn(root: str | Path, *, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """Write ``train_32x32.mat`` and ``test_32x32.mat`` (X as (32, 32, 3, N), y in 1-10)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        labels = np.arange(n) % 10
        imgs = class_images(labels, (3, 32, 32), rng)  # (N, C, H, W)
        y = np.where(labels == 0, 10, labels).astype(np.uint8).reshape(-1, 1)
        scipy.io.savemat(root / name, {"X": imgs.transpose(2, 3, 1, 0), "y": y})
    return root


def _save_images(folder: Path, images: np.ndarray, suffix: str) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        arr = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(arr).save(folder / f"{i:04d}{suffix}")


def write_omniglot(root: str | Path, *, n_background: int = 30, n_evaluation: int = 20,
                   chars_per_alphabet: int = 2, images_per_char: int = 5, size: int = 105,
                   seed: int = 0) -> Path:
    """Write an ``omniglot-py`` tree of PNGs: alphabets / characters / images (dark strokes on white)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "omniglot-py"
    k = 0
    for set_name, n in (("images_background", n_background), ("images_evaluation", n_evaluation)):
        for a in range(n):
            for c in range(chars_per_alphabet):
                labels = np.full(images_per_char, k % 10)
                imgs = 255 - class_images(labels, (1, size, size), rng)
                _save_images(base / set_name / f"Alphabet_{set_name[7]}{a:02d}" / f"character{c + 1:02d}",
                             imgs, ".png")
                k += 1
    return base


def write_miniimagenet(root: str | Path, *, n_classes: int = 100, per_class: int = 25,
                       layout: str = "folders", size: int = 84, seed: int = 0) -> Path:
    """Write MiniImageNet as an ImageFolder tree (``layout="folders"``) or as split CSVs + images/."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "miniimagenet"
    names = [f"n{c:08d}" for c in range(n_classes)]
    rows: dict[str, list[tuple[str, str]]] = {"train.csv": [], "val.csv": [], "test.csv": []}
    for c, name in enumerate(names):
        imgs = class_images(np.full(per_class, c % 10), (3, size, size), rng)
        if layout == "folders":
            _save_images(base / name, imgs, ".png")
        else:
            _save_images(base / "images" / name, imgs, ".png")
            split = "train.csv" if c < 0.64 * n_classes else "val.csv" if c < 0.8 * n_classes else "test.csv"
            rows[split] += [(f"{name}/{i:04d}.png", name) for i in range(per_class)]
    if layout != "folders":
        for split, rs in rows.items():
            (base / split).write_text("filename,label\n" + "".join(f"{f},{lab}\n" for f, lab in rs))
    return base
