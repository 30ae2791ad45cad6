"""The ``codec`` memory: codec round trips, exact byte accounting, the budget kept under random item
sizes by eviction, the learners it serves, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import run
from agents.harness.cli import main
from agents.registry import build_memory
from memory.base import MemorySpec
from memory.buffers import ClassBalancedBuffer, ReservoirBuffer, TaskRingBuffer
from memory.codec import Codec
from memory.coders import available_codecs, make_coder

SPEC = MemorySpec((1, 28, 28), 10, 5)
ONE_TASK = {"env_id": "SplitMNIST-v0", "stream_kwargs": {"train_per_class": 10}}


def _digits(n: int, seed: int = 0) -> torch.Tensor:
    """Stroke-like images (a random walk of bright blobs), compressible as digits are."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 1, 28, 28), np.float32)
    for i in range(n):
        r, c = rng.integers(6, 22, 2)
        for _ in range(rng.integers(5, 40)):
            r, c = np.clip(r + rng.integers(-2, 3), 2, 25), np.clip(c + rng.integers(-2, 3), 2, 25)
            out[i, 0, r - 1:r + 2, c - 1:c + 2] = 1.0
    return torch.from_numpy(out)


@pytest.mark.parametrize("codec", available_codecs())
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_round_trip_is_close_and_better_at_higher_quality(codec, shape):
    img = (_digits(4, 1).repeat(1, shape[0], 1, 1)[:, :, :shape[1], :shape[2]] * 255).to(torch.uint8).numpy()
    if shape[1] > 28:
        img = np.pad(img, ((0, 0), (0, 0), (0, 4), (0, 4)))
    errs, sizes = [], []
    for q in (20, 90):
        coder = make_coder(codec, q, shape)
        codes = [coder.encode(im) for im in img]
        back = np.stack([coder.decode(b) for b in codes])
        assert back.shape == img.shape and back.dtype == np.uint8
        errs.append(np.abs(back.astype(float) - img).mean())
        sizes.append(sum(map(len, codes)))
    assert errs[1] <= errs[0] and errs[1] < 12 and sizes[1] >= sizes[0]


def test_jpeg_items_hold_only_their_scan_and_the_tables_are_counted_once():
    mem = Codec.for_budget(50, SPEC)
    x = _digits(10)
    mem.observe(x, 0, torch.arange(10))
    coded = mem.x.data[:10]
    assert all(b and not b.startswith(b"\xff\xd8") for b in coded)  # no SOI: an abbreviated scan
    coder = mem.x.coder
    assert mem.shared_bits == 8 * (len(coder.tables) + len(coder.header)) > 0
    assert mem.storage_bits == mem.shared_bits + 8 * sum(map(len, coded)) + 10 * (4 + 3)
    batch = mem.sample(10, generator=torch.Generator().manual_seed(0))
    assert batch.x.shape == (10, 1, 28, 28) and (batch.x - x[batch.y]).abs().mean() < 0.05


@settings(max_examples=20)
@given(budget=st.floats(4, 30), policy=st.sampled_from(["reservoir", "class_balanced", "logit_reservoir",
                                                        "task_ring"]),
       quality=st.integers(5, 95), seed=st.integers(0, 10_000))
def test_eviction_keeps_the_budget_under_random_item_sizes(budget, policy, quality, seed):
    gen = torch.Generator().manual_seed(seed)
    mem = Codec.for_budget(budget, SPEC, quality=quality, policy=policy, seed=seed)
    for step in range(12):
        # items of random sizes: blank, strokes, or noise of random amplitude
        x = _digits(8, seed + step) * torch.rand(8, 1, 1, 1, generator=gen)
        x += torch.rand(8, 1, 28, 28, generator=gen) * torch.rand(8, 1, 1, 1, generator=gen) * (step % 3 == 0)
        kw = {"logits": torch.randn(8, 10, generator=gen)} if policy == "logit_reservoir" else {}
        mem.observe(x.clamp(0, 1), step % 5, torch.randint(0, 10, (8,), generator=gen), **kw)
        assert mem.storage_bits <= budget * SPEC.example_bits
        held = mem.held_rows()
        assert all(mem.x.data[r] for r in held)  # every held row has its coded bytes
        assert mem.storage_bits == mem.shared_bits + mem.items * mem.extra_bits + 8 * sum(len(mem.x.data[r]) for r in held)
    assert mem.items >= 1


def test_budget_holds_many_more_items_than_real_examples():
    mem, real = Codec.for_budget(20, SPEC), ReservoirBuffer.for_budget(20, SPEC)
    for i in range(0, 600, 10):
        mem.observe(_digits(10, i), i // 120, torch.randint(0, 10, (10,)))
        real.observe(_digits(10, i), i // 120, torch.randint(0, 10, (10,)))
    assert mem.items >= 2 * real.items and mem.storage_bits <= 20 * SPEC.example_bits
    assert mem.storage_bits > 0.9 * 20 * SPEC.example_bits  # the budget is used, not left idle


def test_the_policies_are_the_buffers_own_and_state_round_trips(tmp_path):
    assert isinstance(Codec.for_budget(5, SPEC), ReservoirBuffer)
    assert isinstance(Codec.for_budget(5, SPEC, policy="class_balanced"), ClassBalancedBuffer)
    assert isinstance(Codec.for_budget(10, SPEC, policy="task_ring"), TaskRingBuffer)
    mem = Codec.for_budget(5, SPEC, codec="webp", seed=2)
    for i in range(5):
        mem.observe(_digits(10, i), i, torch.randint(0, 10, (10,)))
    torch.save(mem.state_dict(), tmp_path / "m.pt")
    other = Codec.for_budget(5, SPEC, codec="webp", seed=2)
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert other.items == mem.items and other.storage_bits == mem.storage_bits
    a, b = (m.sample(8, generator=torch.Generator().manual_seed(0)) for m in (mem, other))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


@pytest.mark.parametrize("agent", ["er", "er_ace", "mir", "der", "derpp", "gem", "agem", "gdumb"])
def test_each_learner_runs_one_task(agent):
    r = run(agent=agent, memory="codec", budget=20, progress=False,
            settings={"epochs": 2} if agent == "gdumb" else None, **ONE_TASK)
    assert r.items > 20 and 0 < r.storage_bits <= 20 * 6272
    assert r.accuracy_matrix[0][0] > 0.2


def test_icarl_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="cannot use memory 'codec'"):
        build_memory("icarl", "codec", 20, SPEC)
    with pytest.raises(ValueError, match="herding keeps fixed counts per class"):
        Codec.for_budget(20, SPEC, policy="herding")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"codec": "png"}, r"unknown codec 'png'; available here: \[.*'jpeg', 'webp'.*cl-env\[codecs\]"),
    ({"quality": 0}, "quality must be an integer in 1..100"),
    ({"quality": 101}, "quality must be an integer in 1..100"),
    ({"max_items": 0}, "max_items must be >= 1"),
])
def test_bad_settings_say_what_and_how(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Codec.for_budget(10, SPEC, **kwargs)


def test_missing_codec_library_names_the_extra(monkeypatch):
    import memory.coders as coders

    monkeypatch.setattr(coders, "available_codecs", lambda: ["jpeg", "webp"])
    with pytest.raises(ValueError, match=r"'jxl' needs imagecodecs .* pip install 'cl-env\[codecs\]'"):
        Codec.for_budget(10, SPEC, codec="jxl")


def test_budget_too_small_for_one_item():
    with pytest.raises(ValueError, match="holds no item"):
        Codec.for_budget(0.5, SPEC)  # less than the JPEG tables kept once
    mem = Codec.for_budget(1.0, SPEC, quality=100)
    with pytest.raises(ValueError, match="too small for one item"):
        mem.observe(torch.rand(1, 1, 28, 28), 0, torch.tensor([3]))  # noise at q=100 outgrows the room


@pytest.mark.parametrize(("option", "match"), [("codec=png", "unknown codec 'png'"),
                                               ("quality=500", "quality must be")])
def test_cli_bad_input_is_one_line_and_exit_2(option, match, capsys):
    code = main(["run", "SplitMNIST-v0", "--agent", "er", "--memory", "codec", "--budget", "10",
                 "--stream", "train_per_class=10", "--set", f"memory.{option}"])
    err = capsys.readouterr().err
    assert code == 2 and match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("agent", ["er", "gem"])
def test_resume_after_interrupt_gives_the_same_result(agent, tiny, tmp_path):
    kw = {"agent": agent, "memory": "codec", "budget": 20, "progress": False, **tiny}
    full = run(out=tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut", stop_after_task=0, **kw)
    resumed = run(out=tmp_path / "cut", resume=True, **kw)
    assert resumed.accuracy_matrix == full.accuracy_matrix and resumed.items == full.items
    assert resumed.storage_bits == full.storage_bits



def test_gem_padded_memories_are_the_held_items_only():
    mem = Codec.for_budget(20, SPEC, policy="task_ring")
    for t in range(3):
        mem.observe(_digits(12, t), t, torch.full((12,), t))
    x, y, w = mem.padded([0, 2])
    k = [mem.task_items(0), mem.task_items(2)]
    assert x.shape == (2, max(k), 1, 28, 28) and w.sum(1).tolist() == k
    for i, t in enumerate([0, 2]):
        whole = mem.sample_task(t)
        assert torch.equal(x[i, :k[i]], whole.x) and (y[i, :k[i]] == t).all()
