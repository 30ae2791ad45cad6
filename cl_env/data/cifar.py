"""CIFAR-10 and CIFAR-100 from the Python pickles, in torchvision's layout.

``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` and
``root/cifar-100-python/{train, test, meta}``: dicts with ``b"data"`` (``N x 3072`` uint8, channel
planes in order R, G, B) and ``b"labels"`` / ``b"fine_labels"`` + ``b"coarse_labels"``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from cl_env.data.base import ImageData, default_root, locate, verify_md5
from cl_env.error import CorruptDataError, DataNotFoundError

# published MD5s of the extracted files (torchvision's CIFAR10/CIFAR100 train_list, test_list, meta)
CIFAR10 = {
    "folder": "cifar-10-batches-py",
    "train": [("data_batch_1", "c99cafc152244af753f735de768cd75f"),
              ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
              ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
              ("data_batch_4", "634d18415352ddfa80567beed471001a"),
              ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")],
    "test": [("test_batch", "40351d587109b95175f43aff81a1287e")],
    "meta": ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
    "label_key": b"labels", "names_key": b"label_names", "n_classes": 10, "tv": "CIFAR10",
}
CIFAR100 = {
    "folder": "cifar-100-python",
    "train": [("train", "16019d7e3df5f24257cddd939b257f8d")],
    "test": [("test", "f0ef6b0ae62326f3e7ffdfab6717acfc")],
    "meta": ("meta", "7973b15100ade9c7d40fb424638fde48"),
    "label_key": b"fine_labels", "names_key": b"fine_label_names", "n_classes": 100, "tv": "CIFAR100",
}


# Everything the CIFAR-10/100 Python pickles contain: NumPy arrays (rebuilt by these three), and
# `_codecs.encode`, which protocol-2 pickles written by Python 3 use for bytes. Nothing else is
# ever imported or called while unpickling, so a crafted file cannot run code.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only :data:`_CIFAR_GLOBALS`."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch holds only NumPy "
                                         f"arrays, lists, numbers and bytes")
        if module == "numpy.core.multiarray":  # NumPy 2 moved it; the files name the old place
            import numpy

            module = "numpy._core.multiarray" if hasattr(numpy, "_core") else module
        return super().find_class(module, name)


def _unpickle(env_id: str, path: Path, fix: str) -> dict:
    try:
        with open(path, "rb") as f:
            d = _CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise CorruptDataError(env_id, str(path), f"not a CIFAR pickle ({exc})", fix) from None
    if not isinstance(d, dict):
        raise CorruptDataError(env_id, str(path), f"a {type(d).__name__} found, expected a dict", fix)
    return d


def _read_split(env_id: str, files: list[Path], spec: dict, fix: str, coarse: bool):
    xs, ys, cs = [], [], []
    for path in files:
        d = _unpickle(env_id, path, fix)
        if b"data" not in d or spec["label_key"] not in d:
            raise CorruptDataError(env_id, str(path),
                                   f"keys {sorted(d)} found, expected b'data' and {spec['label_key']}", fix)
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[spec["label_key"]], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise CorruptDataError(env_id, str(path), f"data {data.shape} with {len(labels)} labels, "
                                   "expected N x 3072 and N labels", fix)
        if labels.size and (labels.min() < 0 or labels.max() >= spec["n_classes"]):
            raise CorruptDataError(env_id, str(path), f"labels in [{labels.min()}, {labels.max()}], "
                                   f"expected [0, {spec['n_classes'] - 1}]", fix)
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
        if coarse:
            cs.append(np.asarray(d[b"coarse_labels"], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs))
    y = torch.from_numpy(np.concatenate(ys))
    return x, y, (torch.from_numpy(np.concatenate(cs)) if coarse else None)


def _load(spec: dict, source: str, env_id: str, root, download: bool, verify: bool) -> ImageData:
    root = Path(root).expanduser() if root is not None else default_root()
    folder = root / spec["folder"]
    fix = (f"pass download=True (needs network), or extract torchvision's {spec['tv']} archive so "
           f"that {folder} holds its pickles")
    names = [n for n, _ in spec["train"]] + [n for n, _ in spec["test"]] + [spec["meta"][0]]

    def fetch() -> None:
        import torchvision.datasets as tvd

        try:
            getattr(tvd, spec["tv"])(str(root), train=True, download=True)
        except Exception as exc:  # network errors come in many types
            raise DataNotFoundError(env_id, str(folder), f"download failed ({exc}); {fix}") from exc

    files = locate(env_id, [folder], names, fix, download, fetch)
    if verify:
        md5s = [m for _, m in spec["train"]] + [m for _, m in spec["test"]] + [spec["meta"][1]]
        verify_md5(env_id, files, md5s, fix)
    n_train = len(spec["train"])
    coarse = spec is CIFAR100
    tx, ty, tc = _read_split(env_id, files[:n_train], spec, fix, coarse)
    vx, vy, vc = _read_split(env_id, files[n_train:-1], spec, fix, coarse)
    meta = _unpickle(env_id, files[-1], fix)
    names_out = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(spec["names_key"], [])]
    extras = {"train_coarse": tc, "test_coarse": vc} if coarse else {}
    return ImageData(tx, ty, vx, vy, spec["n_classes"], source, [str(p) for p in files],
                     extras=extras, class_names=names_out)


def load_cifar10(env_id: str, root=None, download: bool = False, verify: bool = True) -> ImageData:
    """CIFAR-10 (50,000 / 10,000), MD5-checked against the published files unless ``verify=False``."""
    return _load(CIFAR10, "cifar10", env_id, root, download, verify)


def load_cifar100(env_id: str, root=None, download: bool = False, verify: bool = True) -> ImageData:
    """CIFAR-100 (50,000 / 10,000) with fine labels; ``extras`` holds the 20 coarse labels."""
    return _load(CIFAR100, "cifar100", env_id, root, download, verify)
