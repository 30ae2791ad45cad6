"""Image-stream protocols of the four papers: incremental CIFAR-100, split CIFAR-10, incremental
Omniglot, split MiniImageNet, sequential Fashion-MNIST, permuted MNIST (generative) and SVHN→MNIST.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from cl_env import checks
from cl_env.data import ImageData, load_source
from cl_env.stream import Task, TaskStream, concat
from cl_env.streams.mnist import _metadata, permutations


def _class_tasks(data: ImageData, groups: list[tuple[int, ...]], names: list[str],
                 train_keep=None) -> list[Task]:
    """One task per group of classes: every train and test image of those classes; with
    ``train_keep`` (a boolean mask over the training set), the others are the task's held-out
    validation examples (``Task.val_index``), never emitted for training."""
    tasks = []
    for t, (classes, name) in enumerate(zip(groups, names, strict=True)):
        cl = torch.tensor(classes)
        tr = torch.nonzero(torch.isin(data.train_y, cl)).flatten()
        te = torch.nonzero(torch.isin(data.test_y, cl)).flatten()
        keep = None if train_keep is None else train_keep[tr]
        tasks.append(Task(t, name, data.train_x[tr], data.train_y[tr], data.test_x[te],
                          data.test_y[te], tuple(int(c) for c in classes),
                          None if keep is None else torch.nonzero(keep).flatten(),
                          None if keep is None else torch.nonzero(~keep).flatten()))
    return tasks


def inc_cifar100(
    *,
    env_id: str = "IncCIFAR100-v0",
    root: str | Path | None = None,
    download: bool = False,
    verify: bool = True,
    grouping: str = "fine",
    n_tasks: int = 20,
    seed: int = 0,
) -> TaskStream:
    """Incremental CIFAR-100 (GEM; SRM Tables 2-3): 20 tasks of 5 classes, task-incremental.

    ``grouping="fine"`` (GEM): task t holds fine labels [kt, kt+k) in label order, ``k = 100 /
    n_tasks`` (``n_tasks=10``: the 10 x 10 class-incremental protocol of iCaRL / DER; with a single
    head, ``--set head=single``). ``grouping="coarse"`` (the SRM paper): task t holds the 5 fine
    classes of superclass t (20 tasks only).
    Each task keeps all its 2,500 training and 500 test images; pixels are stored as uint8 and
    emitted / 255, no normalisation, no augmentation (GEM). Heads are masked to the task's classes
    (``setting="task"``). The protocol has no randomness: ``seed`` is recorded only.
    """
    if 100 % n_tasks or (grouping == "coarse" and n_tasks != 20):
        raise checks.fail(f"{env_id} option n_tasks", n_tasks,
                          "a divisor of 100 (2, 4, 5, 10, 20, 25, 50, 100; 20 with grouping='coarse')",
                          "n_tasks=10")
    data = load_source("cifar100", env_id=env_id, root=root, download=download, verify=verify)
    if grouping == "fine":
        k = 100 // n_tasks
        groups = [tuple(range(k * t, k * t + k)) for t in range(n_tasks)]
    elif grouping == "coarse":
        coarse = data.extras["train_coarse"]
        groups = [tuple(sorted(set(data.train_y[coarse == t].tolist()))) for t in range(20)]
    else:
        raise ValueError(f"grouping must be 'fine' or 'coarse', got {grouping!r}")
    names = [f"classes {g[0]}-{g[-1]}" if grouping == "fine" else f"superclass {t}"
             for t, g in enumerate(groups)]
    tasks = _class_tasks(data, groups, names)
    return TaskStream(tasks, env_id, 100, "task", _metadata(data, seed, grouping=grouping))


def split_cifar10(
    *,
    env_id: str = "SplitCIFAR10-v0",
    root: str | Path | None = None,
    download: bool = False,
    verify: bool = True,
    validation_fraction: float = 0.05,
    seed: int = 0,
) -> TaskStream:
    """Split CIFAR-10, the MIR / ARM protocol (ARM Table 1): 5 tasks of 2 classes, single head.

    Of each class, the first 95% of its training images (file order) train and the last 5% are
    held out for validation (47,500 / 2,500; ``metadata["validation_per_task"]``); the test set
    of a task is every test image of its two classes (2,000). Class-incremental. The protocol has
    no randomness: ``seed`` is recorded only.
    """
    data = load_source("cifar10", env_id=env_id, root=root, download=download, verify=verify)
    keep = torch.zeros(len(data.train_y), dtype=torch.bool)
    for c in range(10):
        idx = torch.nonzero(data.train_y == c).flatten()
        keep[idx[: int(round(len(idx) * (1 - validation_fraction)))]] = True
    groups = [(2 * t, 2 * t + 1) for t in range(5)]
    tasks = _class_tasks(data, groups, [f"classes {a},{b}" for a, b in groups], keep)
    val = [int((~keep & torch.isin(data.train_y, torch.tensor(g))).sum()) for g in groups]
    return TaskStream(tasks, env_id, 10, "class",
                      _metadata(data, seed, validation_per_task=val, class_names=data.class_names))


def sequential_classes(
    *,
    env_id: str = "SeqFashionMNIST-v0",
    source: str = "fashion_mnist",
    root: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    classes: tuple[int, ...] | list[int] | None = None,
    verify: bool = True,
) -> TaskStream:
    """One distribution per class, in label order (or the order of ``classes``, a subset), whole
    splits (Lifelong Generative Modeling §5: sequential Fashion-MNIST). Labels are kept, so
    classifiers can use it too (class-incremental)."""
    data = load_source(source, env_id=env_id, root=root, download=download, verify=verify)
    order = list(range(data.n_classes)) if classes is None else [int(c) for c in classes]
    bad = [c for c in order if not 0 <= c < data.n_classes]
    if bad or len(set(order)) != len(order) or not order:
        raise ValueError(f"{env_id}: classes must be distinct labels in [0, {data.n_classes}), got {classes}")
    groups = [(c,) for c in order]
    names = [data.class_names[c] if data.class_names else f"class {c}" for c in order]
    return TaskStream(_class_tasks(data, groups, names), env_id, data.n_classes, "class",
                      _metadata(data, seed))


def permuted_gen(*, env_id: str = "PermutedMNISTGen-v0", **kwargs) -> TaskStream:
    """The generative permuted-MNIST protocol (Lifelong Generative Modeling §5): the plain images,
    then 4 pixel permutations; every task holds the whole train and test splits."""
    kwargs.setdefault("n_tasks", 5)
    return permutations(env_id=env_id, identity_first=True, train_per_task=None, **kwargs)


permuted_gen._cl_env_delegate = permutations  # its other options are permutations' (run identity)
permuted_gen._cl_env_fixed = ("identity_first", "train_per_task")


def _to_shape(x: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 images to ``channels`` x ``size`` x ``size``: luma for RGB->grey (ITU-R 601-2, as PIL),
    replication for grey->RGB, zero padding when smaller, area averaging when larger."""
    if x.shape[1] == 3 and channels == 1:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    elif x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1).contiguous()
    h = x.shape[-1]
    if h < size:
        p = (size - h) // 2
        x = F.pad(x, (p, size - h - p, p, size - h - p))
    elif h > size:
        x = F.adaptive_avg_pool2d(x.float(), size).round().to(torch.uint8)
    return x


def svhn_to_mnist(
    *,
    env_id: str = "SVHNToMNIST-v0",
    root: str | Path | None = None,
    download: bool = False,
    verify: bool = True,
    mnist_source: str = "mnist5k",
    mnist_root: str | Path | None = None,
    channels: int = 1,
    size: int = 32,
    seed: int = 0,
) -> TaskStream:
    """All of SVHN, then all of MNIST, as two tasks (Lifelong Generative Modeling §5.3).

    One shared image shape, ``channels`` x ``size`` x ``size`` (default 1x32x32): SVHN is turned
    grey by luma, MNIST is zero-padded from 28 to 32 (with ``channels=3``, MNIST is replicated to
    RGB and SVHN keeps its colour). Same 10 digit labels in both (domain-incremental).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    svhn = load_source("svhn", env_id=env_id, root=root, download=download, verify=verify)
    mnist = load_source(mnist_source, env_id=env_id, root=mnist_root, download=download, verify=verify)
    tasks = []
    for t, (d, name) in enumerate(((svhn, "SVHN"), (mnist, "MNIST"))):
        tasks.append(Task(t, name, _to_shape(d.train_x, channels, size), d.train_y,
                          _to_shape(d.test_x, channels, size), d.test_y, tuple(range(10))))
    meta = {"data": {"svhn": svhn.info(), "mnist": mnist.info()}, "stream_seed": seed,
            "shape": [channels, size, size]}
    return TaskStream(tasks, env_id, 10, "domain", meta)


def _split_by_fraction(idx: torch.Tensor, fractions: tuple[float, ...]) -> list[torch.Tensor]:
    n = len(idx)
    bounds = np.round(np.cumsum((0.0, *fractions)) * n).astype(int)
    bounds[-1] = n
    return [idx[bounds[i]:bounds[i + 1]] for i in range(len(fractions))]


def inc_omniglot(
    *,
    env_id: str = "IncOmniglot-v0",
    root: str | Path | None = None,
    download: bool = False,
    train_fraction: float = 0.9,
    seed: int = 0,
) -> TaskStream:
    """Incremental Omniglot (SRM §4): each of the 50 alphabets (background then evaluation, sorted)
    is a task over its own characters; 28x28, strokes bright. Each alphabet's images are shuffled
    with the stream seed, the first 90% train and the rest test. Task-incremental (heads masked
    to the alphabet's characters; 1,623 classes in all)."""
    data = load_source("omniglot", env_id=env_id, root=root, download=download)
    rng = np.random.default_rng(seed)
    group = data.extras["train_group"]
    tasks = []
    for t in range(int(group.max()) + 1):
        idx = torch.nonzero(group == t).flatten()
        idx = idx[torch.from_numpy(rng.permutation(len(idx)))]
        tr, te = _split_by_fraction(idx, (train_fraction, 1 - train_fraction))
        classes = tuple(sorted(set(data.train_y[idx].tolist())))
        name = data.class_names[t] if data.class_names else f"alphabet {t}"
        tasks.append(Task(t, name, data.train_x[tr], data.train_y[tr], data.train_x[te],
                          data.train_y[te], classes))
    return TaskStream(tasks, env_id, data.n_classes, "task", _metadata(data, seed))


def split_miniimagenet(
    *,
    env_id: str = "SplitMiniImageNet-v0",
    root: str | Path | None = None,
    classes_per_task: int = 5,
    seed: int = 0,
    download: bool = False,
) -> TaskStream:
    """Split MiniImageNet (ARM Table 5): 100 classes in sorted order, 20 tasks of 5, 84x84,
    class-incremental single head. Of each class's 600 images (file order), 456 train, 24 are
    validation (recorded) and 120 test (the fractions 0.76 / 0.04 / 0.20 on other sizes). The
    protocol has no randomness: ``seed`` is recorded only."""
    data = load_source("miniimagenet", env_id=env_id, root=root, download=download)
    n = data.n_classes
    if n % classes_per_task:
        raise ValueError(f"{n} classes do not split into tasks of {classes_per_task}")
    tasks, val = [], []
    for t in range(n // classes_per_task):
        classes = tuple(range(t * classes_per_task, (t + 1) * classes_per_task))
        tr, va, te = [], [], []
        for c in classes:
            a, b, d = _split_by_fraction(torch.nonzero(data.train_y == c).flatten(), (0.76, 0.04, 0.20))
            tr.append(a)
            va.append(b)
            te.append(d)
        tr, te = torch.cat(tr), torch.cat(te)
        val.append(int(sum(len(v) for v in va)))
        tasks.append(Task(t, f"classes {classes[0]}-{classes[-1]}", data.train_x[tr],
                          data.train_y[tr], data.train_x[te], data.train_y[te], classes))
    return TaskStream(tasks, env_id, n, "class", _metadata(data, seed, validation_per_task=val))


def long_term_retention(
    *,
    env_id: str = "IncCIFAR100LongTerm-v0",
    root: str | Path | None = None,
    download: bool = False,
    verify: bool = True,
    grouping: str = "fine",
    cifar10_examples: int = 1_000_000,
    seed: int = 0,
) -> TaskStream:
    """Long-term retention (SRM Figure 2): incremental CIFAR-100, then a long CIFAR-10 phase.

    The 20 CIFAR-100 tasks are followed by one task of ``cifar10_examples`` CIFAR-10 training
    examples drawn in passes (each pass a fresh permutation of the 50,000 images, fixed by the
    stream seed). The phase holds CIFAR-10's pixels once and its million examples as indices, so
    nothing is materialised: the env prepares float images a chunk at a time. CIFAR-10 labels
    are offset by 100 (classes 100-109) so the two label spaces stay apart; heads are masked per
    task. The CIFAR-10 test split is the last task's test set.
    """
    first = inc_cifar100(env_id=env_id, root=root, download=download, verify=verify,
                         grouping=grouping, seed=seed)
    c10 = load_source("cifar10", env_id=env_id, root=root, download=download, verify=verify)
    rng = np.random.default_rng(seed)
    n = len(c10.train_y)
    passes = -(-cifar10_examples // n)
    index = torch.from_numpy(np.concatenate([rng.permutation(n) for _ in range(passes)])[:cifar10_examples])
    phase = Task(0, f"CIFAR-10 x {cifar10_examples:,}", c10.train_x, c10.train_y + 100,
                 c10.test_x, c10.test_y + 100, tuple(range(100, 110)), train_index=index)
    second = TaskStream([phase], "CIFAR-10 phase", 110, "task",
                        {"data": c10.info(), "cifar10_examples": cifar10_examples, "passes": passes})

    stream = concat(first, second, name=env_id)
    stream.n_classes = 110
    stream.metadata.update({"stream_seed": seed, "data": {"cifar100": first.metadata["data"],
                                                          "cifar10": c10.info()}})
    return stream
