"""The MNIST-family protocols: rotations, permutations, MANY and split (class-incremental).

Each builder takes the data ``source`` (``"mnist5k"`` embedded, ``"mnist"``, ``"fashion_mnist"``)
and a ``seed`` that fixes the benchmark instance. Protocols follow GEM (Lopez-Paz & Ranzato 2017),
MER (Riemer et al. 2019) and MIR / ARM (MNIST-5k-5); see ``docs/environments.md``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from cl_env.data import ImageData, load_source
from cl_env.stream import Task, TaskStream

SPLIT_TRAIN_PER_CLASS = 500  # MNIST-5k-5: 500 per class (every one a class has, when it has fewer)


def _pick(rng: np.random.Generator, n_pool: int, n: int | None, what: str) -> torch.Tensor:
    """GEM's draw: a random permutation of the pool, first ``n`` (all when ``n`` is None)."""
    if n is not None and n > n_pool:
        raise ValueError(f"{what}: {n} training examples per task asked for, the pool has {n_pool}")
    return torch.from_numpy(rng.permutation(n_pool)[: n if n is not None else n_pool])


def rotation_sources(h: int, w: int, angle: float) -> torch.Tensor:
    """For each output pixel of a ``h x w`` image rotated by ``angle`` degrees counter-clockwise
    (nearest-neighbour, about the centre, no expand), the flat index of its source pixel plus 1,
    or 0 where it falls outside the image.

    The arithmetic is torchvision's tensor rotation step for step (its inverse affine matrix,
    ``_gen_affine_grid`` and ``grid_sample(mode="nearest", align_corners=False)``), applied to an
    image of pixel indices, so the result is bit-identical to
    ``torchvision.transforms.functional.rotate`` without importing torchvision (1 s of start-up).
    """
    rot = math.radians(-angle)
    a, b, c, d = math.cos(rot), -math.sin(rot), math.sin(rot), math.cos(rot)
    theta = torch.tensor([d, -b, 0.0, -c, a, 0.0], dtype=torch.float32).reshape(1, 2, 3)
    base = torch.empty(1, h, w, 3, dtype=torch.float32)
    base[..., 0].copy_(torch.linspace(-w * 0.5 + 0.5, w * 0.5 + 0.5 - 1, steps=w))
    base[..., 1].copy_(torch.linspace(-h * 0.5 + 0.5, h * 0.5 + 0.5 - 1, steps=h).unsqueeze_(-1))
    base[..., 2].fill_(1)
    rescaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], dtype=torch.float32)
    grid = base.view(1, h * w, 3).bmm(rescaled).view(1, h, w, 2)
    ids = torch.arange(1, h * w + 1, dtype=torch.float32).reshape(1, 1, h, w)
    out = F.grid_sample(ids, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.flatten().long()


def rotate_nearest(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate ``uint8`` images ``(N, C, H, W)`` counter-clockwise by ``angle`` degrees, nearest-neighbour.

    Bit-identical to ``torchvision.transforms.functional.rotate(x, angle, NEAREST)`` (no expand,
    zero fill), but the source pixel of every output pixel is found once
    (:func:`rotation_sources`) and then gathered for the whole batch in one indexing operation.
    """
    n, c, h, w = x.shape
    src = rotation_sources(h, w, angle)
    padded = torch.cat([torch.zeros(n, c, 1, dtype=x.dtype), x.reshape(n, c, h * w)], dim=2)
    return padded[:, :, src].reshape(n, c, h, w)


def _metadata(data: ImageData, seed: int, **extra) -> dict:
    return {"data": data.info(), "stream_seed": seed, **extra}


def rotations(
    *,
    env_id: str = "MNISTRotations-v0",
    source: str = "mnist5k",
    root: str | Path | None = None,
    download: bool = False,
    n_tasks: int = 20,
    train_per_task: int | None = 1000,
    seed: int = 0,
    verify: bool = True,
) -> TaskStream:
    """MNIST-Rotations (GEM): task t rotates every image by one angle drawn in [9t, 9(t+1)) degrees.

    The 180 degrees are split into ``n_tasks`` equal bins (9 degrees each for 20 tasks). Rotation
    is nearest-neighbour, counter-clockwise, without expanding the canvas. Each task draws
    ``train_per_task`` examples from the training split (a random permutation, first n) and
    holds the whole test split rotated. Domain-incremental: one 10-way head.
    """
    data = load_source(source, env_id=env_id, root=root, download=download, verify=verify)
    rng = np.random.default_rng(seed)
    width = 180.0 / n_tasks
    tasks, angles = [], []
    for t in range(n_tasks):
        angle = float(rng.uniform(width * t, width * (t + 1)))
        idx = _pick(rng, len(data.train_y), train_per_task, env_id)
        tx = rotate_nearest(data.train_x[idx], angle)
        vx = rotate_nearest(data.test_x, angle)
        tasks.append(Task(t, f"rotation {angle:.2f}deg", tx, data.train_y[idx], vx, data.test_y,
                          tuple(range(data.n_classes))))
        angles.append(angle)
    return TaskStream(tasks, env_id, data.n_classes, "domain",
                      _metadata(data, seed, angles=angles))


def permutations(
    *,
    env_id: str = "MNISTPermutations-v0",
    source: str = "mnist5k",
    root: str | Path | None = None,
    download: bool = False,
    n_tasks: int = 20,
    train_per_task: int | None = 1000,
    identity_first: bool = False,
    seed: int = 0,
    verify: bool = True,
) -> TaskStream:
    """MNIST-Permutations (GEM) and MANY (MER): each task applies one fixed random pixel permutation.

    Every task, task 0 included, gets its own permutation as in GEM; ``identity_first=True`` makes
    task 0 the unpermuted images as in MIR. Each task draws ``train_per_task`` training examples
    and holds the whole test split permuted. Domain-incremental: one 10-way head.
    """
    data = load_source(source, env_id=env_id, root=root, download=download, verify=verify)
    rng = np.random.default_rng(seed)
    shape = data.train_x.shape[1:]
    n_pix = int(np.prod(shape))
    flat_train = data.train_x.reshape(len(data.train_x), n_pix)
    flat_test = data.test_x.reshape(len(data.test_x), n_pix)
    tasks = []
    for t in range(n_tasks):
        perm = torch.arange(n_pix) if identity_first and t == 0 else torch.from_numpy(rng.permutation(n_pix))
        idx = _pick(rng, len(data.train_y), train_per_task, env_id)
        tx = flat_train[idx][:, perm].reshape(-1, *shape)
        vx = flat_test[:, perm].reshape(-1, *shape)
        name = "identity" if identity_first and t == 0 else f"permutation {t}"
        tasks.append(Task(t, name, tx, data.train_y[idx], vx, data.test_y,
                          tuple(range(data.n_classes))))
    return TaskStream(tasks, env_id, data.n_classes, "domain",
                      _metadata(data, seed, identity_first=identity_first, spatial=False))


def many(
    *,
    env_id: str = "MANY-v0",
    n_tasks: int = 100,
    train_per_task: int | None = 200,
    **kwargs,
) -> TaskStream:
    """MANY (MER, Riemer et al. 2019): 100 permutations with 200 training examples each."""
    return permutations(env_id=env_id, n_tasks=n_tasks, train_per_task=train_per_task, **kwargs)


many._cl_env_delegate = permutations  # its other options are permutations' (run identity)


def split(
    *,
    env_id: str = "SplitMNIST-v0",
    source: str = "mnist5k",
    root: str | Path | None = None,
    download: bool = False,
    classes_per_task: int = 2,
    train_per_class: int | None = 500,  # SPLIT_TRAIN_PER_CLASS
    class_order: str | list[int] = "sorted",
    seed: int = 0,
    verify: bool = True,
) -> TaskStream:
    """Split MNIST, MNIST-5k-5 protocol (MIR / ARM Table 6): 5 tasks of 2 digits, single head.

    Each class contributes ``train_per_class`` training images (500, i.e. 1,000 per task and 5,000
    in all), or every one it has when the source has fewer (the embedded MNIST-5k keeps 400 per
    digit for training after holding out its test pool: 800 training and 200 test images per
    task); ``None`` takes every image. The whole test split of the task's classes is the task's
    test set. Any other ``train_per_class`` larger than every class's pool is
    refused (it would be the same data under another identity). ``class_order="sorted"`` gives tasks (0,1), (2,3), ...; ``"random"`` shuffles the
    classes with the stream seed; a list fixes them.

    With ``source="mnist"`` the registry's default is ``train_per_class=None``: Seq-MNIST as the
    DER paper (Buzzega et al. 2020, Sec. 5) and Mammoth's ``seq-mnist`` define it, all 60,000
    training images (11,263 to 12,665 per task) and the whole 10,000-image test split (1,874 to
    2,115 per task); an explicit ``train_per_class`` still wins (500: MIR's 1,000 per task).
    """
    data = load_source(source, env_id=env_id, root=root, download=download, verify=verify)
    rng = np.random.default_rng(seed)
    n = data.n_classes
    if class_order == "sorted":
        order = list(range(n))
    elif class_order == "random":
        order = [int(c) for c in rng.permutation(n)]
    else:
        order = [int(c) for c in class_order]
        if sorted(order) != list(range(n)):
            raise ValueError(f"class_order must be a permutation of 0..{n - 1}, got {class_order}")
    if n % classes_per_task:
        raise ValueError(f"{n} classes do not split into tasks of {classes_per_task}")
    largest = int(torch.bincount(data.train_y.flatten().long(), minlength=n).max())
    if train_per_class is not None and train_per_class > largest and train_per_class != SPLIT_TRAIN_PER_CLASS:
        # more than any class has would be the same data as the largest pool under another identity;
        # only the protocol's 500 stands for "500, or every one a class has when it has fewer"
        raise ValueError(f"{env_id}: train_per_class={train_per_class} asks for more examples than any class of "
                         f"source {source!r} has (at most {largest}); pass train_per_class={largest} or fewer, "
                         f"or leave it at its default ({SPLIT_TRAIN_PER_CLASS})")
    tasks = []
    for t in range(n // classes_per_task):
        classes = tuple(order[t * classes_per_task:(t + 1) * classes_per_task])
        train_idx = []
        for c in classes:
            pool = torch.nonzero(data.train_y == c).flatten()
            keep = len(pool) if train_per_class is None else min(train_per_class, len(pool))
            train_idx.append(pool[torch.from_numpy(rng.permutation(len(pool))[:keep])])
        idx = torch.cat(train_idx)
        idx = idx[torch.from_numpy(rng.permutation(len(idx)))]  # mix the classes in stored order
        test_idx = torch.nonzero(torch.isin(data.test_y, torch.tensor(classes))).flatten()
        tasks.append(Task(t, "classes " + ",".join(map(str, classes)), data.train_x[idx],
                          data.train_y[idx], data.test_x[test_idx], data.test_y[test_idx], classes))
    return TaskStream(tasks, env_id, n, "class",
                      _metadata(data, seed, class_order=order, train_per_class=train_per_class))
