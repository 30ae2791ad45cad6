"""Data sources: real files in their original formats, loaded into uint8 tensors.

``SOURCES`` is the one table of source names; :func:`load_source` loads one by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from cl_env.data.base import ImageData, default_root
from cl_env.error import UnknownNameError

SOURCES: dict[str, str] = {
    "mnist5k": "cl_env.data.mnist:load_mnist5k",
    "mnist": "cl_env.data.mnist:load_mnist",
    "fashion_mnist": "cl_env.data.mnist:load_fashion_mnist",
    "cifar10": "cl_env.data.cifar:load_cifar10",
    "cifar100": "cl_env.data.cifar:load_cifar100",
    "svhn": "cl_env.data.svhn:load_svhn",
    "omniglot": "cl_env.data.folders:load_omniglot",
    "miniimagenet": "cl_env.data.folders:load_miniimagenet",
}


def load_source(
    name: str, *, env_id: str, root: str | Path | None = None, download: bool = False, **options
) -> ImageData:
    """Load the data source ``name`` for the stream ``env_id``.

    ``options`` go to the loader (e.g. ``verify=False`` to skip the MD5 check of CIFAR/SVHN).

    Raises:
        UnknownNameError: ``name`` is not in :data:`SOURCES`.
        DataNotFoundError: The files are missing (the message names the path and the fix).
        CorruptDataError: A file is malformed.
    """
    if name not in SOURCES:
        raise UnknownNameError("data source", name, SOURCES)
    module, func = SOURCES[name].split(":")
    return getattr(importlib.import_module(module), func)(env_id, root=root, download=download,
                                                          **options)


__all__ = ["SOURCES", "ImageData", "default_root", "load_source"]
