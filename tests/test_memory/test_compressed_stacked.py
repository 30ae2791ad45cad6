"""Seeds stacked (agents.stacked) with the compressed memories give each seed its separate run's
numbers, bit for bit at one thread."""

from __future__ import annotations

import pytest
import torch

from agents.harness.runner import run, run_seeds


@pytest.mark.parametrize(("agent", "memory"), [("er", "quantized"), ("er", "codec"), ("agem", "codec")])
def test_stacked_seeds_equal_their_separate_runs(mnist_root, agent, memory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kw = {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 60}
        common = {"agent": agent, "memory": memory, "budget": 10, "stream_kwargs": kw, "progress": False,
                  "settings": {"ref_batch": 16} if agent == "agem" else None}
        together = run_seeds("MNISTRotations-v0", seeds=[0, 1], **common)
        for r in together:
            assert r.config["derived"]["stacked_seeds"] == 2
            alone = run("MNISTRotations-v0", seed=r.seed, **common)
            assert r.accuracy_matrix == alone.accuracy_matrix
            assert r.storage_bits == alone.storage_bits and r.items == alone.items
    finally:
        torch.set_num_threads(before)
