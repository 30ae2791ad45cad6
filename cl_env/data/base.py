"""The data-source contract: uint8 images ``(N, C, H, W)`` and int64 labels for a train and a test split."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cl_env.error import CorruptDataError, DataNotFoundError


@dataclass
class ImageData:
    """A loaded data source.

    Attributes:
        train_x: ``uint8`` images, shape ``(N, C, H, W)``.
        train_y: ``int64`` labels, shape ``(N,)``.
        test_x: ``uint8`` test images.
        test_y: ``int64`` test labels.
        n_classes: Number of classes of the label space.
        source: The source name (``"mnist5k"``, ``"mnist"``, ``"fashion_mnist"``, ...).
        paths: The files the data was read from.
        notes: Free text about how the split was made (e.g. a held-out test pool).
        extras: Per-example side information by name, e.g. ``"train_coarse"`` (CIFAR-100's
            superclasses) or ``"train_group"`` (Omniglot's alphabets), each aligned with its split.
        class_names: Names of the labels, where the format has them.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    n_classes: int
    source: str
    paths: list[str] = field(default_factory=list)
    notes: str = ""
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("train", "test"):
            x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
            assert x.dtype == torch.uint8 and x.ndim == 4, (name, x.dtype, x.shape)
            assert y.dtype == torch.int64 and y.shape == (x.shape[0],), (name, y.dtype, y.shape)

    def info(self) -> dict:
        """What a result records about its data: source, paths and example counts."""
        return {
            "source": self.source,
            "paths": list(self.paths),
            "n_train": int(self.train_x.shape[0]),
            "n_test": int(self.test_x.shape[0]),
            "image_shape": list(self.train_x.shape[1:]),
            "notes": self.notes,
        }


def default_root() -> Path:
    """Where sources look for files when no ``root`` is given: ``$CL_ENV_DATA`` or ``~/.cl_env/data``."""
    return Path(os.environ.get("CL_ENV_DATA", "~/.cl_env/data")).expanduser()


def find_file(dirs: Sequence[Path], stem: str) -> Path | None:
    """The first ``dir/stem`` or ``dir/stem.gz`` that exists, or None."""
    for d in dirs:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


def require_files(env_id: str, dirs: Sequence[Path], stems: Sequence[str], fix: str) -> list[Path]:
    """Locate every file of a source or raise one :class:`DataNotFoundError` naming the first missing one."""
    found = []
    for stem in stems:
        path = find_file(dirs, stem)
        if path is None:
            where = " or ".join(str(d / stem) + "[.gz]" for d in dirs)
            raise DataNotFoundError(env_id, where, fix)
        found.append(path)
    return found


def locate(env_id: str, dirs: Sequence[Path], stems: Sequence[str], fix: str, download: bool,
           fetch: Callable[[], None]) -> list[Path]:
    """Find a source's files; if missing and ``download`` is set, ``fetch()`` them and look again.

    Raises:
        DataNotFoundError: Missing, and not downloaded (the message names the path and ``fix``).
    """
    try:
        return require_files(env_id, dirs, stems, fix)
    except DataNotFoundError:
        if not download:
            raise
        fetch()
        return require_files(env_id, dirs, stems, fix)


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_md5(env_id: str, files: Sequence[Path], expected: Sequence[str], fix: str) -> None:
    """Compare each file's MD5 with the published one (torchvision's lists); raise on a mismatch."""
    for path, want in zip(files, expected, strict=True):
        got = md5sum(path)
        if got != want:
            raise CorruptDataError(env_id, str(path), f"MD5 {got}, expected {want}",
                                   f"{fix}; or pass verify=False to read a modified copy")
