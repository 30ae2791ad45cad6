"""Task streams: an ordered list of tasks with their train and test tensors.

Everything that defines a benchmark instance (angles, permutations, which examples each task
gets, class order) is fixed when the stream is built, by the stream's own seed. The order of
examples inside a task is the only thing a later seed (``train_order(seed)``, ``reset(seed=...)``)
changes.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

SETTINGS = ("domain", "class", "task")


@dataclass(frozen=True)
class Task:
    """One task of a stream.

    Attributes:
        t: Task id (position in the stream).
        name: Human-readable name, e.g. ``"rotation 12.3deg"``.
        train_x: ``uint8`` training images ``(N, C, H, W)``.
        train_y: ``int64`` training labels.
        test_x: ``uint8`` test images.
        test_y: ``int64`` test labels.
        classes: The labels this task can contain (the mask of a task-incremental head).
        train_index: None, or the task's examples as indices into ``train_x``/``train_y``, which
            are then a pool shared with other tasks (a long phase drawn in passes over one
            dataset holds its pixels once and its order as indices).
        val_index: None, or the task's held-out validation examples as indices into
            ``train_x``/``train_y`` (:func:`with_validation`); never emitted for training.
    """

    t: int
    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[int, ...]
    train_index: torch.Tensor | None = None
    val_index: torch.Tensor | None = None

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0] if self.train_index is None else self.train_index.shape[0])

    def train_examples(self, start: int = 0, stop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's training examples ``start:stop`` in stored order, as ``(x uint8, y)``."""
        if self.train_index is None:
            return self.train_x[start:stop], self.train_y[start:stop]
        idx = self.train_index[start:stop]
        return self.train_x[idx], self.train_y[idx]


class Batch(NamedTuple):
    """A training batch from :meth:`TaskStream.train_batches` (x as float32 in [0, 1])."""

    x: torch.Tensor
    y: torch.Tensor
    t: int
    task_end: bool


@dataclass
class TaskStream:
    """An ordered list of tasks, usable with or without gymnasium.

    Args:
        tasks: The tasks, with ``tasks[i].t == i``.
        name: The stream id, e.g. ``"MNISTRotations-v0"``.
        n_classes: Size of the label space shared by all tasks.
        setting: ``"domain"`` (shared head, same labels every task), ``"class"`` (single head,
            new labels per task) or ``"task"`` (heads masked to ``task_classes(t)``).
        metadata: What results record: data source, paths, example counts, the instance's
            transforms (angles, permutation seeds), the stream seed.
    """

    tasks: list[Task]
    name: str
    n_classes: int
    setting: str
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ValueError(f"setting {self.setting!r} is not one of {SETTINGS}")
        if not self.tasks:
            raise ValueError(f"{self.name}: a stream needs at least one task, got none")
        shape = tuple(self.tasks[0].train_x.shape[1:])
        for i, task in enumerate(self.tasks):
            assert task.t == i, (task.t, i)
            if tuple(task.train_x.shape[1:]) != shape or tuple(task.test_x.shape[1:]) != shape:
                raise ValueError(
                    f"{self.name}: task {i} has images of shape {tuple(task.train_x.shape[1:])}, "
                    f"expected {shape} like task 0; resize the sources to one shape before composing"
                )
        self.metadata.setdefault("train_per_task", [t.n_train for t in self.tasks])
        self.metadata.setdefault("test_per_task", [int(t.test_x.shape[0]) for t in self.tasks])

    # ------------------------------------------------------------------ shape
    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.tasks[0].train_x.shape[1:])  # type: ignore[return-value]

    @property
    def n_train(self) -> int:
        return sum(t.n_train for t in self.tasks)

    def task_classes(self, t: int) -> tuple[int, ...]:
        """The labels of task ``t`` (the logits a masked, task-incremental head keeps)."""
        return self.tasks[t].classes

    def test_set(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole test set of task ``t`` as ``(x float32 in [0, 1], y int64)``."""
        task = self.tasks[t]
        return task.test_x.float().div_(255.0), task.test_y

    @property
    def has_validation(self) -> bool:
        return all(t.val_index is not None for t in self.tasks)

    def validation_set(self, t: int, as_uint8: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Task ``t``'s held-out validation examples (``validation_fraction``) as ``(x, y)``: float32
        in [0, 1], or the stored ``uint8`` with ``as_uint8``. For choosing hyperparameters; the
        training pass never emits them."""
        task = self.tasks[t]
        if task.val_index is None:
            raise ValueError(f"{self.name} has no validation split; build it with validation_fraction=0.1 "
                             "(a fraction of each task's training examples held out)")
        x, y = task.train_x[task.val_index], task.train_y[task.val_index]
        return (x, y) if as_uint8 else (x.float().div_(255.0), y)

    # ------------------------------------------------------------------ order
    def usable_sizes(self, batch_size: int) -> list[int]:
        """Examples per task that a pass at ``batch_size`` emits (each size rounded down)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        sizes = [t.n_train - t.n_train % batch_size for t in self.tasks]
        if any(s == 0 for s in sizes):
            small = [t.t for t, s in zip(self.tasks, sizes, strict=True) if s == 0]
            raise ValueError(
                f"{self.name}: tasks {small} have fewer than batch_size={batch_size} training "
                "examples; use a smaller batch_size"
            )
        return sizes

    def dropped(self, batch_size: int) -> list[int]:
        """Per task, how many trailing examples a pass at ``batch_size`` leaves out."""
        return [t.n_train % batch_size for t in self.tasks]

    def warn_if_dropped(self, batch_size: int) -> None:
        dropped = self.dropped(batch_size)
        if any(dropped):
            warnings.warn(
                f"{self.name}: task sizes are not multiples of batch_size={batch_size}; "
                f"dropping {sum(dropped)} examples (per task: {dropped}); "
                "stream.dropped(batch_size) records it",
                stacklevel=3,
            )

    def train_order(self, batch_size: int, rng: np.random.Generator | None) -> np.ndarray:
        """Global indices of one training pass: tasks in order, examples shuffled inside each.

        Each task keeps its first ``usable_sizes(batch_size)[t]`` examples (fixed at build), and
        ``rng`` only permutes them; ``rng=None`` keeps the stored order.
        """
        parts, offset = [], 0
        for task, size in zip(self.tasks, self.usable_sizes(batch_size), strict=True):
            idx = np.arange(size) if rng is None else rng.permutation(size)
            parts.append(idx + offset)
            offset += task.n_train
        return np.concatenate(parts)

    def train_plan(self, batch_size: int, rng: np.random.Generator | None, passes: int = 1,
                   transition: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The batches of one run over the stream: example order, each batch's task, task ends.

        Each task emits its usable examples ``passes`` times, each pass in a fresh order (``rng``;
        None keeps the stored order), before the next task; with ``transition > 0`` consecutive
        tasks overlap: the last ``transition // 2`` batches' worth of examples of task ``t`` and
        the first of task ``t + 1`` (each at most half its task) are interleaved batch by batch,
        the chance that the next batch comes from task ``t + 1`` ramping linearly from 0 to 1
        across the window (:func:`ramp_interleave`). A batch never mixes tasks, a task's batches
        keep their order, and a task's end is its last batch, which inside a window comes before
        some of the next task's batches.

        Returns:
            ``(order, batch_t, batch_end)``: global example indices (``pools()`` positions), one
            task id per batch, and whether each batch is its task's last.
        """
        sizes = self.usable_sizes(batch_size)
        blocks, offset = [], 0
        for task, size in zip(self.tasks, sizes, strict=True):
            parts = [np.arange(size) if rng is None else rng.permutation(size) for _ in range(passes)]
            blocks.append((np.concatenate(parts) + offset).reshape(-1, batch_size))
            offset += task.n_train
        seq = np.concatenate([np.full(len(b), t) for t, b in enumerate(blocks)])
        if transition > 0 and self.n_tasks > 1:
            seq = ramp_interleave(seq, [len(b) for b in blocks], transition // (2 * batch_size),
                                  rng if rng is not None else np.random.default_rng(0))
        taken = np.zeros(self.n_tasks, dtype=np.int64)
        order = np.empty((len(seq), batch_size), dtype=np.int64)
        for i, t in enumerate(seq):
            order[i] = blocks[t][taken[t]]
            taken[t] += 1
        last = {int(t): i for i, t in enumerate(seq)}
        batch_end = np.zeros(len(seq), dtype=bool)
        batch_end[list(last.values())] = True
        return order.reshape(-1), seq, batch_end

    def pools(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training data without copies of shared pools: ``(pool_x, pool_y, index, t)``.

        ``pool_x``/``pool_y`` concatenate each distinct tensor the tasks hold once; ``index[k]``
        is the pool row of the stream's k-th example (tasks in order, stored order inside) and
        ``t[k]`` its task.
        """
        pools: dict[int, int] = {}
        xs, ys, idx = [], [], []
        offset = 0
        for task in self.tasks:
            key = id(task.train_x)
            if key not in pools:
                pools[key] = offset
                xs.append(task.train_x)
                ys.append(task.train_y)
                offset += len(task.train_x)
            base = pools[key]
            local = torch.arange(task.n_train) if task.train_index is None else task.train_index
            idx.append(local + base)
        tt = torch.cat([torch.full((t.n_train,), t.t, dtype=torch.int64) for t in self.tasks])
        return torch.cat(xs), torch.cat(ys), torch.cat(idx), tt

    def train_batches(self, batch_size: int = 10, seed: int | None = None,
                      chunk_bytes: int = 256 << 20) -> Iterator[Batch]:
        """One pass over the stream in batches that never span two tasks.

        Args:
            batch_size: Examples per batch; each task's remainder is dropped (with a warning).
            seed: Shuffles the examples inside each task; None keeps the stored order.
            chunk_bytes: Float32 images are prepared this many bytes at a time.
        """
        self.warn_if_dropped(batch_size)
        rng = None if seed is None else np.random.default_rng(seed)
        order = torch.from_numpy(self.train_order(batch_size, rng))
        px, py, pidx, tt = self.pools()
        rows, ys, ts = pidx[order], py[pidx[order]], tt[order]
        n = len(order)
        per_example = 4 * int(np.prod(self.image_shape))
        chunk = max(batch_size, (chunk_bytes // per_example) // batch_size * batch_size)
        for c in range(0, n, chunk):
            xs = px[rows[c:c + chunk]].float().div_(255.0)
            for s in range(c, min(c + chunk, n), batch_size):
                t = int(ts[s])
                end = s + batch_size
                yield Batch(xs[s - c:end - c], ys[s:end], t, end == n or int(ts[end]) != t)

    def describe(self) -> dict:
        """Metadata plus the stream's shape, as a result records it."""
        return {
            "name": self.name,
            "n_tasks": self.n_tasks,
            "n_classes": self.n_classes,
            "setting": self.setting,
            "image_shape": list(self.image_shape),
            **self.metadata,
        }


def with_validation(stream: TaskStream, fraction: float, seed: int = 0) -> TaskStream:
    """Hold out ``round(fraction * n_train)`` of each task's training examples for validation.

    Which examples are held out is drawn per task from ``seed`` (the stream's seed), uniformly;
    the kept ones stay in their stored order. The pixels are not copied: both parts are indices
    into the task's tensors. The metadata records the fraction and the new per-task sizes.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)``, or a task left with no training example.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return stream
    rng = np.random.default_rng([seed, 7_001])
    tasks = []
    for task in stream.tasks:
        local = torch.arange(task.n_train) if task.train_index is None else task.train_index
        n_val = round(fraction * len(local))
        if n_val >= len(local):
            raise ValueError(f"{stream.name}: validation_fraction={fraction} leaves task {task.t} no "
                             f"training example (it has {len(local)}); use a smaller fraction")
        held = np.zeros(len(local), dtype=bool)
        held[rng.choice(len(local), n_val, replace=False)] = True
        mask = torch.from_numpy(held)
        tasks.append(Task(task.t, task.name, task.train_x, task.train_y, task.test_x, task.test_y,
                          task.classes, local[~mask], local[mask]))
    meta = {k: v for k, v in stream.metadata.items() if k != "train_per_task"}
    meta.update(validation_fraction=fraction, validation_per_task=[int(t.val_index.numel()) for t in tasks])
    return TaskStream(tasks, stream.name, stream.n_classes, stream.setting, meta)


def ramp_interleave(seq: np.ndarray, counts: list[int], half: int, rng: np.random.Generator) -> np.ndarray:
    """Gradual task boundaries: interleave consecutive tasks' batches over a window.

    ``seq`` lists task ids batch by batch, tasks in order (``counts[t]`` batches each). At each
    boundary the last ``a = min(half, counts[t] // 2)`` batches of task ``t`` and the first
    ``b = min(half, counts[t+1] // 2)`` of task ``t + 1`` form a window of ``L = a + b`` slots;
    slot ``i`` takes task ``t + 1``'s next batch with probability ``(i + 0.5) / L`` (while both
    have batches left), so the mixture ramps from one task to the next.
    """
    out = list(seq)
    starts = np.concatenate([[0], np.cumsum(counts)])
    for t in range(len(counts) - 1):
        a, b = min(half, counts[t] // 2), min(half, counts[t + 1] // 2)
        if a == 0 or b == 0:
            continue
        lo, L = int(starts[t + 1]) - a, a + b
        left_a, left_b, window = a, b, []
        for i in range(L):
            take_next = left_a == 0 or (left_b > 0 and rng.random() < (i + 0.5) / L)
            window.append(t + 1 if take_next else t)
            left_b -= take_next
            left_a -= not take_next
        out[lo:lo + L] = window
    return np.asarray(out, dtype=np.int64)


def concat(*streams: TaskStream, name: str | None = None) -> TaskStream:
    """Compose streams: the tasks of ``streams[0]``, then of ``streams[1]``, ... renumbered.

    Labels keep their values (a shared label space of ``max(n_classes)``); the setting is the
    first stream's unless they differ, in which case ``"task"`` (masked heads) is used.
    """
    if not streams:
        raise ValueError("concat needs at least one stream")
    tasks: list[Task] = []
    for s in streams:
        for task in s.tasks:
            tasks.append(Task(len(tasks), f"{s.name}/{task.name}", task.train_x, task.train_y,
                              task.test_x, task.test_y, task.classes, task.train_index, task.val_index))
    settings = {s.setting for s in streams}
    return TaskStream(
        tasks=tasks,
        name=name or "+".join(s.name for s in streams),
        n_classes=max(s.n_classes for s in streams),
        setting=streams[0].setting if len(settings) == 1 else "task",
        metadata={"parts": [s.describe() for s in streams]},
    )

