"""The ``quantized`` memory: exact bit accounting (property tests over bits / scale / shapes), the
quantiser, the buffers' policies reused, the learners it serves, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import run
from agents.harness.cli import main
from memory.base import MemorySpec
from memory.buffers import ClassBalancedBuffer, ReservoirBuffer, TaskRingBuffer
from memory.quantized import Quantized, dequantize, quantize

SPEC = MemorySpec((1, 28, 28), 10, 5)
# five tasks of 20 examples (SplitMNIST has no shorter form): every learner past its first task
ONE_TASK = {"env_id": "SplitMNIST-v0", "stream_kwargs": {"train_per_class": 10}}


@settings(max_examples=40)
@given(bits=st.integers(1, 8), scale=st.sampled_from([1, 2, 4]), c=st.sampled_from([1, 3]),
       side=st.sampled_from([4, 8, 12, 16]), budget=st.floats(1, 40), n_tasks=st.integers(1, 6),
       policy=st.sampled_from(["reservoir", "class_balanced", "task_ring"]))
def test_storage_is_pixels_times_bits_plus_label_and_task_bits(bits, scale, c, side, budget, n_tasks, policy):
    spec = MemorySpec((c, side, side), 10, n_tasks)
    if side % scale:
        return
    item = c * (side // scale) ** 2 * bits + spec.label_bits + (0 if policy == "task_ring" else spec.task_bits)
    total = int(budget * spec.example_bits) // item
    if total < (n_tasks if policy == "task_ring" else 1):
        with pytest.raises(ValueError, match="holds no item"):
            Quantized.for_budget(budget, spec, bits=bits, scale=scale, policy=policy)
        return
    mem = Quantized.for_budget(budget, spec, bits=bits, scale=scale, policy=policy)
    gen = torch.Generator().manual_seed(0)
    for t in range(n_tasks):
        mem.observe(torch.rand(7, c, side, side, generator=gen), t, torch.randint(0, 10, (7,), generator=gen))
    assert mem.storage_bits == mem.items * item <= budget * spec.example_bits
    held_max = total if policy != "task_ring" else sum(min(7, k) for k in mem.caps)
    assert mem.items == min(7 * n_tasks, held_max)
    # the packed bytes are what is held: ceil(rows * pixels * bits / 8), no padding
    rows = int(np.prod(mem.x.lead))
    assert mem.x.store.nbytes == -(-rows * c * (side // scale) ** 2 * bits // 8)


@settings(max_examples=30)
@given(bits=st.integers(1, 8), scale=st.sampled_from([1, 2, 4]), seed=st.integers(0, 1000))
def test_quantiser_round_trip(bits, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, 2, 8, 8), generator=gen, dtype=torch.uint8)
    levels = quantize(img, bits, scale)
    assert levels.max() < 2 ** bits and levels.shape == (3, 2 * (8 // scale) ** 2)
    back = dequantize(levels, (2, 8, 8), bits, scale)
    assert back.shape == (3, 2, 8, 8) and 0 <= back.min() and back.max() <= 1
    if scale == 1:  # within half a quantiser step of the original
        assert (back - img.float() / 255).abs().max() <= 0.5 / (2 ** bits - 1) + 1e-6
        assert np.array_equal(quantize((back * 255).round().to(torch.uint8), bits, 1), levels) or bits == 8


def test_eight_bits_full_scale_is_the_real_example_buffer():
    x, y = torch.rand(30, 1, 28, 28), torch.randint(0, 10, (30,))
    real, q = ReservoirBuffer.for_budget(10, SPEC, seed=3), Quantized.for_budget(10, SPEC, bits=8, scale=1, seed=3)
    for mem in (real, q):
        mem.observe(x[:15], 0, y[:15])
        mem.observe(x[15:], 1, y[15:])
    assert q.items == real.items and q.storage_bits == real.storage_bits
    a = real.sample(20, generator=torch.Generator().manual_seed(1))
    b = q.sample(20, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a.x, b.x, atol=1e-6) and torch.equal(a.y, b.y) and torch.equal(a.t, b.t)


def test_the_policies_are_the_buffers_own():
    assert isinstance(Quantized.for_budget(5, SPEC), ReservoirBuffer)
    assert Quantized.for_budget(5, SPEC).capacity == 5 * 6272 // (196 * 4 + 4 + 3)  # defaults: 4 bits, scale 2
    assert isinstance(Quantized.for_budget(5, SPEC, policy="class_balanced"), ClassBalancedBuffer)
    ring = Quantized.for_budget(5, SPEC, bits=4, scale=1, policy="task_ring")
    assert isinstance(ring, TaskRingBuffer) and sum(ring.caps) == 5 * 6272 // (784 * 4 + 4)
    assert Quantized.for_budget(5, SPEC, bits=2, scale=2).capacity == 5 * 6272 // (196 * 2 + 4 + 3)


def test_state_dict_round_trip_holds_tensors_only(tmp_path):
    mem = Quantized.for_budget(5, SPEC, bits=3, scale=2, seed=1)
    mem.observe(torch.rand(20, 1, 28, 28), 0, torch.randint(0, 10, (20,)))
    torch.save(mem.state_dict(), tmp_path / "m.pt")
    other = Quantized.for_budget(5, SPEC, bits=3, scale=2, seed=1)
    other.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    a, b = (m.sample(8, generator=torch.Generator().manual_seed(0)) for m in (mem, other))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


@pytest.mark.parametrize("agent", ["er", "er_ace", "mir", "der", "derpp", "gem", "agem", "gdumb", "icarl"])
def test_each_learner_runs_one_task(agent):
    r = run(agent=agent, memory="quantized", budget=20, progress=False,
            settings={"epochs": 2} if agent == "gdumb" else None, **ONE_TASK)
    assert r.items > 20 and 0 < r.storage_bits <= 20 * 6272
    assert r.accuracy_matrix[0][0] > 0.2


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"bits": 0}, "bits must be an integer in 1..8"),
    ({"bits": 9}, "bits must be an integer in 1..8"),
    ({"scale": 3}, r"scale 3 does not divide the 28x28 images; use one of \[1, 2, 4, 7, 14, 28\]"),
    ({"scale": 0}, "scale must be a positive integer"),
    ({"policy": "fifo"}, "unknown policy 'fifo'"),
    ({"mode": "area"}, "mode must be one of"),
])
def test_bad_settings_say_what_and_how(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Quantized.for_budget(10, SPEC, **kwargs)


def test_budget_too_small_for_one_item():
    with pytest.raises(ValueError, match=r"holds no item of 3143 bits .* use --budget 0.51 or more"):
        Quantized.for_budget(0.5, SPEC, bits=4, scale=1)


@pytest.mark.parametrize(("option", "match"), [("scale=3", "scale 3 does not divide"), ("bits=12", "bits must be"),
                                               ("policy=fifo", "unknown policy")])
def test_cli_bad_input_is_one_line_and_exit_2(option, match, capsys):
    code = main(["run", "SplitMNIST-v0", "--agent", "er", "--memory", "quantized", "--budget", "10",
                 "--stream", "train_per_class=10", "--set", f"memory.{option}"])
    err = capsys.readouterr().err
    assert code == 2 and match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("agent", ["er", "gem"])
def test_resume_after_interrupt_gives_the_same_result(agent, tiny, tmp_path):
    kw = {"agent": agent, "memory": "quantized", "budget": 20, "progress": False,
          "settings": {"memory.bits": 3, "memory.scale": 2}, **tiny}
    full = run(out=tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut", stop_after_task=0, **kw)
    resumed = run(out=tmp_path / "cut", resume=True, **kw)
    assert resumed.accuracy_matrix == full.accuracy_matrix and resumed.items == full.items
