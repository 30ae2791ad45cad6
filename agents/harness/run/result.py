"""What a run produces: :class:`Result`, written as ``result.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from agents.harness import results


@dataclass
class Result:
    """What a run produces; ``result.json`` holds exactly these keys.

    Accuracies are fractions in [0, 1]. ``accuracy_matrix[i][j]`` is the test accuracy on task
    ``j`` after training through task ``i``. Generative agents (``lvae``, ``vae``, ``ewc_vae``)
    have no accuracies (``[]`` / None); they fill, one value per task end, ``neg_test_elbo``
    (nats per image on the union of the test sets seen so far), ``frechet_distance`` (same union,
    as many samples) and ``zd_consistency`` (teacher vs student ``z_d``; None before a teacher
    exists), and ``elbo_matrix[i][j]`` (-ELBO on task ``j`` after task ``i``).
    """

    env: str
    agent: str
    memory: str | None
    seed: int
    accuracy_matrix: list[list[float]]
    retained_accuracy: float | None
    backward_transfer: float | None
    forward_transfer: float | None
    forgetting: float | None
    online_accuracy: float | None
    storage_bits: int
    overhead_bits: int
    effective_examples: float
    items: int
    wall_time_s: float
    examples_per_s: float
    data: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    neg_test_elbo: list[float] | None = None
    frechet_distance: list[float] | None = None
    elbo_matrix: list[list[float]] | None = None
    zd_consistency: list[float | None] | None = None
    # with validation_fraction > 0: the same matrix on each task's held-out validation examples
    # (for choosing hyperparameters without reading the test sets), and its final retained mean
    validation_accuracy_matrix: list[list[float]] | None = None
    validation_retained_accuracy: float | None = None
    # class-incremental streams with a single head: the same test logits scored among the task's own
    # classes only (Task-IL, as Mammoth reports beside Class-IL), and its final retained mean
    task_il_accuracy_matrix: list[list[float]] | None = None
    task_il_retained_accuracy: float | None = None
    baseline_accuracy: list[float] | None = None  # b_j of FWT: the initial model on each task
    status: str = "completed"
    config_hash: str = ""
    divergence: dict | None = None
    warnings: list[str] = field(default_factory=list)
    counters: dict = field(default_factory=dict)

    def to_json(self, path: str | Path) -> None:
        """Write atomically, as strict JSON (non-finite values as null)."""
        results.write_json_atomic(path, asdict(self))

    @classmethod
    def from_json(cls, path: str | Path) -> Result:
        data = results.read_json(path)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})
