"""What an agent may know of the stream before it starts, and the recent-examples window."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from memory.base import MemorySpec


@dataclass(frozen=True)
class StreamInfo:
    """What an agent may know of the stream before it starts.

    Attributes:
        image_shape: ``(C, H, W)``.
        n_classes: Label space size.
        n_tasks: Number of tasks.
        setting: ``"domain"``, ``"class"`` or ``"task"`` (see :class:`cl_env.TaskStream`).
        task_classes: Per task, its labels (the mask of a task-incremental head).
        n_examples: Training examples in one pass over the stream (schedules that need a horizon).
        spatial: False when the stream permutes pixels (``metadata["spatial"]``).
    """

    image_shape: tuple[int, int, int]
    n_classes: int
    n_tasks: int
    setting: str
    task_classes: tuple[tuple[int, ...], ...]
    n_examples: int = 0
    spatial: bool = True

    @classmethod
    def from_stream(cls, stream) -> StreamInfo:
        return cls(tuple(stream.image_shape), stream.n_classes, stream.n_tasks, stream.setting,
                   tuple(stream.task_classes(t) for t in range(stream.n_tasks)), stream.n_train,
                   bool(stream.metadata.get("spatial", True)))

    def memory_spec(self, device: str) -> MemorySpec:
        return MemorySpec(self.image_shape, self.n_classes, self.n_tasks, str(device), self.spatial)


class RecentWindow:
    """The last ``size`` examples seen, kept as the batches they came in (EWC's Fisher and MAS's
    importance read the end of a finished task; kept only until the task ends). Whole batches are
    dropped from the front while the rest still covers ``size``."""

    def __init__(self, size: int):
        self.size = int(size)
        self.batches: list[tuple[torch.Tensor, ...]] = []
        self.n = 0

    def add(self, *tensors: torch.Tensor) -> None:
        """One batch: tensors sharing their first dimension (inputs, labels)."""
        self.batches.append(tuple(t.detach() for t in tensors))
        self.n += len(tensors[0])
        while self.n - len(self.batches[0][0]) >= self.size:
            self.n -= len(self.batches.pop(0)[0])

    def last(self) -> tuple[torch.Tensor, ...]:
        """The last ``size`` examples, one tensor per field; then the window empties."""
        out = tuple(torch.cat(parts)[-self.size:] for parts in zip(*self.batches, strict=True))
        self.batches, self.n = [], 0
        return out

    def __bool__(self) -> bool:
        return bool(self.batches)

    def state_dict(self) -> dict:
        return {"batches": self.batches, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        self.batches, self.n = [tuple(b) for b in state["batches"]], int(state["n"])
