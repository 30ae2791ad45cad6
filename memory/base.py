"""The memory protocol shared by every module, and its storage accounting.

A memory sees the stream through ``observe``, gives replay batches through ``sample`` (or
``sample_task`` for per-task memories), does task-boundary work in ``end_task``, and reports
exactly how many bits it holds. Budgets are given in *effective real examples*: a budget of ``N``
is ``N * C * H * W * 8`` bits of incremental storage, whatever the module stores.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch

from cl_env import checks


class ReplayBatch(NamedTuple):
    """A replay batch: inputs (float32 in [0, 1]), task ids, labels or soft targets, and optional
    per-item extras a memory keeps beside them (e.g. the logits DER++ stores, the slot indices).

    ``layer`` is None for images; a feature memory (``latent``, ``pq``) sets it to the cut point
    of the learner's model whose activations ``x`` holds, and the learner's forward
    (``Agent.forward(x, t, layer=batch.layer)``) then runs ``x`` through the layers above it only.
    """

    x: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor
    extras: dict[str, torch.Tensor] | None = None
    layer: str | None = None


@dataclass(frozen=True)
class MemorySpec:
    """What a memory needs to know about the stream it serves.

    Attributes:
        image_shape: ``(C, H, W)``.
        n_classes: Size of the label space.
        n_tasks: Number of tasks in the stream.
        device: Where the memory keeps its tensors.
        spatial: Whether neighbouring pixels are related (False for pixel-permuted streams, whose
            images have no spatial redundancy for a low-resolution code to exploit).
    """

    image_shape: tuple[int, int, int]
    n_classes: int
    n_tasks: int
    device: str = "cpu"
    spatial: bool = True

    def __post_init__(self):
        try:  # integers of any kind (NumPy's, torch.Size's) stored as Python ints
            shape = tuple(operator.index(v) for v in self.image_shape)
            n_classes, n_tasks = operator.index(self.n_classes), operator.index(self.n_tasks)
        except TypeError:
            raise checks.fail("MemorySpec", (self.image_shape, self.n_classes, self.n_tasks),
                              "image_shape (C, H, W), n_classes and n_tasks as integers",
                              "MemorySpec((1, 28, 28), 10, 5)") from None
        if len(shape) != 3 or min(shape) < 0:  # (0, 0, 0): no pixels (memory.packed.zero_pixel)
            raise checks.fail("MemorySpec image_shape", self.image_shape, "(C, H, W) of integers >= 0", "(1, 28, 28)")
        checks.integer("MemorySpec n_classes", n_classes, 1, fix="n_classes=10")
        checks.integer("MemorySpec n_tasks", n_tasks, 1, fix="n_tasks=5")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "n_classes", n_classes)
        object.__setattr__(self, "n_tasks", n_tasks)

    @property
    def example_bits(self) -> int:
        """Bits of one real example's pixels at 8 bits each (the unit of every budget)."""
        c, h, w = self.image_shape
        return c * h * w * 8

    @property
    def label_bits(self) -> int:
        return max(1, math.ceil(math.log2(self.n_classes)))

    @property
    def task_bits(self) -> int:
        return max(1, math.ceil(math.log2(self.n_tasks))) if self.n_tasks > 1 else 0


def budget_bits(budget: float, spec: MemorySpec) -> int:
    """The storage budget in bits: ``budget`` effective real examples of ``C * H * W * 8`` bits."""
    checks.number("budget", budget, 0.0, fix="200 (effective real examples)")  # NaN and inf too
    return int(budget * spec.example_bits)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Quantise float images in [0, 1] to the 8 bits per pixel a real example is stored with."""
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


class Memory(ABC):
    """Base class of memory modules.

    Subclasses set :attr:`name`, implement ``observe``, ``sample``, ``storage_bits`` and
    ``items``, and the state they hold in ``state_dict``. ``ctx`` is the learner (an agent), for
    modules that need its model; buffers ignore it.
    """

    name: ClassVar[str] = ""
    static_items: ClassVar[bool] = True  # False where replayed items change without new writes (SRM)
    # True (declared on the class itself, not inherited) where the memory never reads the model
    # it is given as ``ctx``: agents.stacked may then train several seeds' agents together
    stackable: ClassVar[bool] = False
    # constructor arguments that the memory's size sets (for_budget/for_items), never options:
    # each with the fix to show (``--set memory.KEY=...`` for one of these is refused)
    sized_arguments: ClassVar[dict[str, str]] = {}

    def __init__(self, spec: MemorySpec):
        self.spec = spec

    @abstractmethod
    def observe(self, x: torch.Tensor, t: int, y: torch.Tensor, ctx: Any = None) -> None:
        """See a new batch (the write policy)."""

    @abstractmethod
    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        """A replay batch of ``n`` items drawn from everything held, or None when empty."""

    def sample_task(self, t: int, n: int | None = None, ctx: Any = None,
                    generator: torch.Generator | None = None) -> ReplayBatch | None:
        """Items of task ``t`` (all of them when ``n`` is None), or None; per-task memories override."""
        raise NotImplementedError(f"memory {self.name!r} does not keep items per task")

    def end_task(self, t: int, ctx: Any = None) -> None:  # noqa: B027 - optional hook
        """Task-boundary work (nothing for plain buffers)."""

    def bind(self, ctx: Any) -> None:  # noqa: B027 - optional hook
        """Called once by the learner ``ctx`` when it is built, before any batch: memories whose
        size or validity depends on the learner's model (feature memories: the cut point exists,
        the feature size fixes the capacity) check and size themselves here. Nothing by default."""

    def tasks(self) -> list[int]:
        """Tasks with items held."""
        return []

    def visuals(self) -> dict[str, torch.Tensor]:
        """Image batches in [0, 1] to show at task ends (what the memory replays); none here."""
        return {}

    def report(self, x: torch.Tensor) -> dict[str, float]:
        """Scalars about the memory measured on held-out images ``x`` (e.g. distortion); none here."""
        return {}

    @property
    @abstractmethod
    def storage_bits(self) -> int:
        """Incremental storage held now, in bits, exact."""

    @property
    def overhead_bits(self) -> int:
        """Sunk cost held beside the incremental storage (an autoencoder, an old model)."""
        return 0

    @property
    @abstractmethod
    def items(self) -> int:
        """Replayable items held now."""

    @classmethod
    @abstractmethod
    def for_budget(cls, budget: float, spec: MemorySpec, **kwargs) -> Memory:
        """A module whose storage never exceeds ``budget`` effective real examples."""

    @classmethod
    def for_items(cls, items: int, spec: MemorySpec, **kwargs) -> Memory:
        """A module holding at most exactly ``items`` replayable items (``--items N``: the papers'
        "buffer 500"); its bits are reported as for any size. Memories whose items are not a
        fixed count of stored examples size themselves by a budget instead.

        Raises:
            ValueError: This memory has no item count to set (the message says to use a budget).
        """
        raise ValueError(f"memory {cls.name!r} is not sized by an item count (--items is for buffers of real "
                         "examples); size it with --budget B (effective real examples of storage)")

    @classmethod
    def default(cls, spec: MemorySpec, **kwargs) -> Memory:
        """The module at its protocol's own size, when no budget is given."""
        raise NotImplementedError(f"memory {cls.name!r} needs a budget")

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything needed to resume."""

    @abstractmethod
    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        """Restore :meth:`state_dict`'s output.

        States hold tensors and plain containers only (checkpoints load with
        ``torch.load(weights_only=True)``): a module a memory keeps is stored as its
        ``state_dict`` and rebuilt here, from its recorded shape or from ``ctx.model`` (the
        learner's architecture) for copies of the learner's model.
        """
