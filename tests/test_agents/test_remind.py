"""REMIND on a tiny two-task stream: the frozen lower part, the bits, augmentation, bad input."""

from __future__ import annotations

import pytest
import torch

from agents import run
from agents.remind import mixup_loss, random_resized_crops
from tests.test_memory.test_latent import drive, snapshot

TINY_PQ = {"nbits": 6, "m": 10}  # 64 centroids: the tiny stream's 200 base examples can fit them


def test_remind_learns_within_budget(tiny, tmp_path):
    r = run(agent="remind", budget=100, out=tmp_path, settings={f"memory.{k}": v for k, v in TINY_PQ.items()},
            **tiny)
    assert r.retained_accuracy > 0.3
    assert r.items == 400  # base examples as codes, then the second task's
    assert r.storage_bits == 400 * (10 * 6 + 4 + 1)
    assert r.overhead_bits == 64 * 100 * 16  # the codebooks, counted
    assert r.storage_bits + r.overhead_bits <= 100 * 784 * 8


def test_lower_layers_frozen_after_base_and_predictions_use_reconstructions(tiny):
    seen = {}
    for agent, t in drive("remind", "pq", 100, tiny, options=TINY_PQ, settings={"replay_batch": 5}):
        seen[t] = (snapshot(agent.split("hidden1")[0]), snapshot(agent.split("hidden1")[1]))
        last = agent
    (lo0, up0), (lo1, up1) = seen[0], seen[1]
    assert all(torch.equal(a, b) for a, b in zip(lo0, lo1, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(up0, up1, strict=True))
    x = torch.rand(4, 1, 28, 28)
    upper = last.split("hidden1")[1]
    expected = upper(last.memory.reconstruct(last.features(x, "hidden1"))[0])
    assert torch.allclose(last.predict(x), expected)


def test_random_resized_crops_keep_shape_and_change_maps():
    z = torch.arange(2 * 3 * 7 * 7, dtype=torch.float32).reshape(2, 3, 7, 7)
    out = random_resized_crops(z, (2 / 7, 1.0), torch.Generator().manual_seed(0))
    assert out.shape == z.shape and not torch.equal(out, z)
    same = random_resized_crops(z, (1.0, 1.0), torch.Generator().manual_seed(0), ratio=(1.0, 1.0))
    assert torch.allclose(same, z)


def test_mixup_loss_is_the_convex_combination():
    logits = torch.randn(5, 4)
    ya, yb = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([1, 1, 0, 2, 3])
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(mixup_loss(logits, ya, yb, 0.3),
                          0.3 * ce(logits, ya, reduction="none") + 0.7 * ce(logits, yb, reduction="none"))


def test_remind_on_a_resnet_cut_with_crops(image_root, tmp_path):
    tiny_cifar = {"env_id": "SplitCIFAR10-v0", "stream_kwargs": {"root": str(image_root), "verify": False}}
    r = run(agent="remind", budget=30, out=tmp_path,
            settings={"memory.layer": "stage4", "memory.m": 8, "memory.nbits": 5, "replay_batch": 4},
            **tiny_cifar)
    assert r.items > 0 and r.storage_bits + r.overhead_bits <= 30 * 3 * 32 * 32 * 8


@pytest.mark.parametrize(("args", "needle"), [
    (["--set", "memory.layer=conv9"], "hidden1, hidden2"),
    (["--set", "memory.m=7"], "m=7 does not divide the feature size 100"),
    (["--budget", "20"], "budget too small for the pq codebook"),
    (["--set", "base_tasks=3"], "base_tasks=3 of agent 'remind' exceeds the stream's 2 tasks"),
])
def test_cli_bad_input_exit_2(args, needle, mnist_root, tmp_path, capsys):
    from agents.harness.cli import main

    base = ["run", "MNISTRotations-v0", "--agent", "remind", "--stream", "source=mnist", "--stream",
            f"root={mnist_root}", "--stream", "verify=False", "--stream", "n_tasks=2", "--stream",
            "train_per_task=200", "--out", str(tmp_path / "r")]
    rc = main(base + (args if "--budget" in args else ["--budget", "100", *args]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize(("settings", "fitted_after_first"), [({"base_tasks": 2}, False), ({"base_classes": 5}, True),
                                                             ({"base_classes": 10}, True)])
def test_base_phase_ends_by_tasks_or_classes(settings, fitted_after_first, tiny):
    states = [(a.base_done, a.memory.fitted, a.lower) for a, _ in
              drive("remind", "pq", 100, tiny, options=TINY_PQ, settings={"replay_batch": 5, **settings})]
    assert states[0][:2] == (fitted_after_first, fitted_after_first)
    assert (states[0][2] is not None) == fitted_after_first  # frozen exactly when the base phase ends
    if settings.get("base_tasks") == 2:
        assert states[1][:2] == (True, True) and states[1][2] == ("hidden1", 0.0)


@pytest.mark.parametrize(("agent", "memory", "settings"), [
    ("remind", "pq", {"memory.nbits": 6, "replay_batch": 5}),
    ("er", "latent", {"memory.lower_lr": 0.1}),
])
def test_resume_after_the_first_task_gives_the_same_result(agent, memory, settings, tiny, tmp_path):
    kw = {"agent": agent, "memory": memory, "budget": 20, "settings": settings, **tiny}
    full = run(out=tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut", stop_after_task=0, **kw)
    resumed = run(out=tmp_path / "cut", resume=True, **kw)
    assert resumed.accuracy_matrix == full.accuracy_matrix
    assert (resumed.items, resumed.storage_bits, resumed.overhead_bits) == (full.items, full.storage_bits,
                                                                            full.overhead_bits)
