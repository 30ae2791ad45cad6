"""Folder-of-images sources: Omniglot (torchvision's ``omniglot-py`` tree) and MiniImageNet
(an ImageFolder-style tree, or the usual split CSVs beside an ``images/`` folder).

Decoding tens of thousands of image files is slow, so the decoded uint8 arrays are cached as
``.npz`` under :func:`cl_env.data.mnist.cache_dir`, keyed by the folder, the file count and the
newest modification time.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import torch

from cl_env.data.base import ImageData, default_root
from cl_env.data.cache import cached_arrays
from cl_env.data.mnist import cache_dir
from cl_env.error import CorruptDataError, DataNotFoundError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _cache_path(kind: str, files: list[Path], size: int) -> Path:
    h = hashlib.sha1()
    for f in files:
        h.update(str(f).encode())
        h.update(str(f.stat().st_mtime_ns).encode())
    return cache_dir() / f"{kind}-{size}-{len(files)}-{h.hexdigest()[:16]}.npz"


def _decode(env_id: str, files: list[Path], mode: str, size: int, fix: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    c = 1 if mode == "L" else 3
    out = np.empty((len(files), c, size, size), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert(mode)
                if im.size != (size, size):
                    # area averaging (the "box" filter) for the large downscale of Omniglot
                    im = im.resize((size, size), Image.Resampling.BOX)
                arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            raise CorruptDataError(env_id, str(f), f"not a readable image ({exc})", fix) from exc
        out[i] = arr[None] if c == 1 else arr.transpose(2, 0, 1)
    return out


def _decode_cached(kind: str, env_id: str, files: list[Path], mode: str, size: int, fix: str) -> np.ndarray:
    """Decoded images, cached in a self-verifying ``.npz`` (:func:`cl_env.data.cache.cached_arrays`)."""
    return cached_arrays(_cache_path(kind, files, size),
                         lambda: {"x": _decode(env_id, files, mode, size, fix)})["x"]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_omniglot(env_id: str, root=None, download: bool = False, size: int = 28,
                  invert: bool = True) -> ImageData:
    """All of Omniglot (background + evaluation: 50 alphabets, 1,623 characters, 32,460 images).

    Images are resized from 105x105 to ``size`` by area averaging and, with ``invert``, made
    strokes-bright like MNIST. Labels are characters, numbered in sorted order (background
    alphabets first); ``extras["train_group"]`` is each image's alphabet. Every image is in the
    ``train`` split: the stream makes the per-alphabet train/test split.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    base = root / "omniglot-py"
    fix = (f"pass download=True (needs network), or extract images_background.zip and "
           f"images_evaluation.zip into {base}")
    sets = [base / "images_background", base / "images_evaluation"]
    if not all(s.is_dir() for s in sets):
        if download:
            import torchvision.datasets as tvd

            try:
                for bg in (True, False):
                    tvd.Omniglot(str(root), background=bg, download=True)
            except Exception as exc:  # network errors come in many types
                raise DataNotFoundError(env_id, str(base), f"download failed ({exc}); {fix}") from exc
        missing = [s for s in sets if not s.is_dir()]
        if missing:
            raise DataNotFoundError(env_id, str(missing[0]), fix)
    files, labels, groups, names = [], [], [], []
    n_chars = 0
    for s in sets:
        for alphabet in sorted(p for p in s.iterdir() if p.is_dir()):
            group = len(names)
            names.append(alphabet.name)
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                imgs = _images(character)
                files += imgs
                labels += [n_chars] * len(imgs)
                groups += [group] * len(imgs)
                n_chars += 1
    if not files:
        raise DataNotFoundError(env_id, str(base), fix)
    x = _decode_cached("omniglot", env_id, files, "L", size, fix)
    if invert:
        x = 255 - x
    empty = torch.zeros(0, *x.shape[1:], dtype=torch.uint8)
    return ImageData(torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64), empty,
                     torch.zeros(0, dtype=torch.int64), n_chars, "omniglot", [str(base)],
                     notes=f"{len(files)} images of {n_chars} characters in {len(names)} alphabets",
                     extras={"train_group": torch.tensor(groups, dtype=torch.int64)},
                     class_names=names)


def _csv_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if rows and rows[0][:2] == ["filename", "label"]:
        rows = rows[1:]
    return [(r[0], r[1]) for r in rows if len(r) >= 2]


def load_miniimagenet(env_id: str, root=None, download: bool = False, size: int = 84) -> ImageData:
    """MiniImageNet's 100 classes x 600 images, 3x84x84 (resized if the files are larger).

    Reads either an ImageFolder-style tree (``root/miniimagenet/<class>/<image>``, or ``root``
    itself holding the 100 class folders) or the split CSVs of Ravi & Larochelle
    (``train.csv``, ``val.csv``, ``test.csv`` with ``filename,label`` rows, and ``images/``).
    Classes are numbered in sorted name order; images of a class keep file (or CSV) order. There
    is no download: the error says where to put the files. Every image is in the ``train`` split:
    the stream makes the per-class train/validation/test split.
    """
    del download
    root = Path(root).expanduser() if root is not None else default_root()
    candidates = [root / "miniimagenet", root / "mini-imagenet", root]
    fix = ("MiniImageNet has no download: put the 100 class folders (ImageFolder layout) under "
           f"{root / 'miniimagenet'}, or the split CSVs (train.csv, val.csv, test.csv) and images/ there")
    by_class: dict[str, list[Path]] = {}
    used = None
    for base in candidates:
        if (base / "train.csv").is_file() and (base / "images").is_dir():
            for split in ("train.csv", "val.csv", "test.csv"):
                if (base / split).is_file():
                    for fname, label in _csv_rows(base / split):
                        by_class.setdefault(label, []).append(base / "images" / fname)
            used = base
            break
        if base.is_dir():
            folders = sorted(p for p in base.iterdir() if p.is_dir() and _images(p))
            if len(folders) >= 2:
                by_class = {p.name: _images(p) for p in folders}
                used = base
                break
    if used is None:
        raise DataNotFoundError(env_id, " or ".join(str(c) for c in candidates), fix)
    names = sorted(by_class)
    files = [f for n in names for f in by_class[n]]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataNotFoundError(env_id, str(missing[0]), fix)
    labels = [i for i, n in enumerate(names) for _ in by_class[n]]
    x = _decode_cached("miniimagenet", env_id, files, "RGB", size, fix)
    empty = torch.zeros(0, *x.shape[1:], dtype=torch.uint8)
    return ImageData(torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64), empty,
                     torch.zeros(0, dtype=torch.int64), len(names), "miniimagenet", [str(used)],
                     notes=f"{len(files)} images of {len(names)} classes", class_names=names)
