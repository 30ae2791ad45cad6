"""SVHN (cropped digits) from torchvision's ``.mat`` files: ``root/{train,test}_32x32.mat``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cl_env.data.base import ImageData, default_root, locate, verify_md5
from cl_env.error import CorruptDataError, DataNotFoundError

FILES = [("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
         ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3")]


def _read(env_id: str, path: Path, fix: str) -> tuple[torch.Tensor, torch.Tensor]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
    except (ValueError, OSError, TypeError) as exc:
        raise CorruptDataError(env_id, str(path), f"not a MATLAB file ({exc})", fix) from exc
    if "X" not in mat or "y" not in mat:
        raise CorruptDataError(env_id, str(path), "expected variables X and y", fix)
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).astype(np.int64).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise CorruptDataError(env_id, str(path), f"X {x.shape} with {len(y)} labels, "
                               "expected (32, 32, 3, N) and N labels", fix)
    y[y == 10] = 0  # SVHN writes the digit 0 as label 10
    if y.size and (y.min() < 0 or y.max() > 9):
        raise CorruptDataError(env_id, str(path), f"labels in [{y.min()}, {y.max()}], expected 1-10", fix)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1), dtype=np.uint8)), torch.from_numpy(y)


def load_svhn(env_id: str, root=None, download: bool = False, verify: bool = True) -> ImageData:
    """SVHN train (73,257) and test (26,032), 3x32x32, labels 0-9 (the file's 10 read as 0)."""
    root = Path(root).expanduser() if root is not None else default_root()
    dirs = [root, root / "svhn"]
    fix = f"pass download=True (needs network), or put train_32x32.mat and test_32x32.mat in {root}"

    def fetch() -> None:
        import torchvision.datasets as tvd

        try:
            for split in ("train", "test"):
                tvd.SVHN(str(root), split=split, download=True)
        except Exception as exc:  # network errors come in many types
            raise DataNotFoundError(env_id, str(root), f"download failed ({exc}); {fix}") from exc

    files = locate(env_id, dirs, [n for n, _ in FILES], fix, download, fetch)
    if verify:
        verify_md5(env_id, files, [m for _, m in FILES], fix)
    (tx, ty), (vx, vy) = (_read(env_id, p, fix) for p in files)
    return ImageData(tx, ty, vx, vy, 10, "svhn", [str(p) for p in files])
