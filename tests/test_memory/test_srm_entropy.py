"""Entropy-coded SRM codes (memory.entropy_coding): the range coder's exact round trip under any
prior, the budget never exceeded, more items than bit-packed SRM on skewed codes, exact decoding
through the memory, checkpoints, and the bad inputs (the extra missing, a non-bool setting)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import memory.srm.entropy as entropy
from agents.harness.cli.args import parse_assignments
from agents.harness.run.checkpoint import decode, encode
from memory import MemorySpec
from memory.srm import SRM
from memory.srm.entropy import (
    CodedStore,
    decode_codes,
    decode_item,
    encode_codes,
    encode_item,
    fit_prior,
    prior_probs,
)

MNIST = MemorySpec((1, 28, 28), 10, 20)
SKEW = np.array([0.7, 0.2, 0.07, 0.03])  # 1.25 bits of entropy per variable of 4 categories


@st.composite
def codes_and_prior(draw):
    c, l = draw(st.integers(1, 40)), draw(st.integers(2, 12))  # noqa: E741
    rows = draw(st.sampled_from([1, c]))
    weights = np.array(draw(st.lists(st.integers(1, 65535), min_size=rows * l, max_size=rows * l)),
                       dtype=np.uint16).reshape(rows, l)
    codes = np.array(draw(st.lists(st.integers(0, l - 1), min_size=c, max_size=c)), dtype=np.int64)
    return codes, weights


@settings(max_examples=150, deadline=None)
@given(codes_and_prior())
def test_the_range_coder_round_trips_exactly_under_any_stored_prior(case):
    codes, weights = case
    probs = prior_probs(weights, len(codes))
    blob = encode_codes(codes, probs)
    assert np.array_equal(decode_codes(blob, probs), codes)
    # the model is rebuilt from the stored integer weights alone: a copy decodes the same
    assert np.array_equal(decode_codes(bytes(blob), prior_probs(weights.copy(), len(codes))), codes)
    width = max(1, int(np.ceil(np.log2(weights.shape[1]))))
    item, raw = encode_item(codes, probs, width)  # the smaller of coded and packed, exact either way
    assert np.array_equal(decode_item(item, raw, probs, width), codes)
    assert (len(item) == -(-len(codes) * width // 8)) if raw else (8 * len(item) < len(codes) * width)


def test_near_uniform_codes_fall_back_to_packed_and_never_cost_more_than_a_flag_bit():
    store = CodedStore(100, 4, 9, 10**6, "variable", np.random.default_rng(0))
    codes = np.random.default_rng(3).integers(0, 4, (200, 100))  # uniform: nothing to gain
    store.add(codes, np.zeros(200, dtype=np.int64), 0)
    assert sum(store.raw) > 150 and max(store.sizes) <= 200  # never above the packed 200 bits
    assert np.array_equal(store.read(np.arange(200))[:, :100], codes)


def test_fit_prior_is_smoothed_16_bit_and_follows_the_counts():
    w = fit_prior(np.array([[1000, 0, 10, 0], [5, 5, 5, 5]]))
    assert w.dtype == np.uint16 and (w >= 1).all() and w[0].argmax() == 0 and len(set(w[1].tolist())) == 1


def _fill(store: CodedStore, rng, dist, n_batches, batch=10, task_every=None):
    for i in range(n_batches):
        store.add(np.stack([rng.choice(store.l, store.c, p=p) for p in dist(batch)]),
                  rng.integers(0, 10, batch), i // 5)
        assert store.storage_bits <= store.budget_bits
        if task_every and i % task_every == task_every - 1:
            store.refit()
            assert store.storage_bits <= store.budget_bits


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("prior", ["variable", "shared"])
def test_storage_never_exceeds_the_budget_under_random_code_distributions(seed, prior):
    rng = np.random.default_rng(seed)
    c, l = int(rng.integers(4, 40)), int(rng.integers(2, 9))  # noqa: E741
    store = CodedStore(c, l, 9, int(rng.integers(2000, 9000)), prior, np.random.default_rng(seed))
    alpha = float(rng.choice([0.1, 1.0, 10.0]))  # from very skewed to near uniform, drifting per batch
    _fill(store, rng, lambda b: rng.dirichlet(np.full(l, alpha), b), 30, task_every=7)
    assert store.items > 0 and store.n_seen == 300
    # each item: its code's bits, 9 label/task bits and the coded-or-packed flag; then the prior
    assert store.storage_bits == sum(store.sizes) + 10 * store.items + 16 * store.weights.size


def _skewed_srm(entropy_coding: bool, capacity: int = 300, c: int = 100):
    m = SRM(MNIST, c=c, l=4, capacity=capacity, entropy_coding=entropy_coding, seed=0)
    rng = np.random.default_rng(0)
    written = []

    def fake_encode(x, generator=None, u=None):
        codes = torch.from_numpy(rng.choice(4, (len(x), c), p=SKEW))
        written.append(codes)
        return codes

    m.vae.encode = fake_encode
    return m, written


def test_more_items_than_bit_packed_srm_at_the_same_budget_on_skewed_codes():
    packed, _ = _skewed_srm(False)
    coded, _ = _skewed_srm(True)
    x, y = torch.zeros(10, 1, 28, 28), torch.arange(10)
    for i in range(100):
        packed.add(x, i // 25, y)
        coded.add(x, i // 25, y)
        if i % 25 == 24:
            coded.end_task(i // 25)
    budget = 300 * packed.item_bits
    assert packed.items == 300 and packed.storage_bits == budget
    assert coded.storage_bits <= budget and coded.items > 1.2 * packed.items
    bpc = coded.store.bits_per_code()
    assert 1.25 < bpc < 1.5 < 2  # the entropy, plus the range coder's flush per item, under log2(4)
    assert coded.store.recodes >= 2 and coded.report(torch.rand(2, 1, 28, 28))["srm/bits_per_code"] == bpc


def test_decoding_gives_exactly_the_codes_stored():
    m, written = _skewed_srm(True, capacity=50, c=30)
    m.vae.decode = lambda codes: codes.float()  # the decoder's input is the decoded code itself
    for i in range(12):
        m.add(torch.zeros(10, 1, 28, 28), i // 4, torch.full((10,), i % 10))
    all_codes = {tuple(r) for r in torch.cat(written).tolist()}
    held = m._decode_rows(np.arange(m.items))
    assert m.items > 0 and all(tuple(r) in all_codes for r in held.x.long().tolist())
    # in write order, before any eviction or refit: the store gives back exactly what it coded
    store = CodedStore(30, 4, 9, 10**6, "variable", np.random.default_rng(0))
    codes = np.random.default_rng(1).choice(4, (70, 30), p=SKEW)
    store.add(codes, np.arange(70) % 10, 2)  # 70 >= 64: the first refit recodes every item
    assert store.recodes == 1 and np.array_equal(store.read(np.arange(70)), np.c_[codes, np.arange(70) % 10,
                                                                                   np.full(70, 2)])


def test_checkpoint_round_trip_keeps_the_coded_bytes_and_the_prior():
    m, _ = _skewed_srm(True, capacity=60, c=40)
    for i in range(15):
        m.add(torch.zeros(10, 1, 28, 28), i // 5, torch.full((10,), i % 10))
    state = decode(encode(m.state_dict()))  # what a checkpoint file holds (weights-only safe)
    fresh = SRM(MNIST, c=40, l=4, capacity=60, entropy_coding=True, seed=5)
    fresh.load_state_dict(state)
    assert fresh.store.blobs == m.store.blobs and np.array_equal(fresh.store.weights, m.store.weights)
    assert fresh.storage_bits == m.storage_bits and fresh.items == m.items and fresh.tasks() == m.tasks()
    rows = np.arange(m.items)
    assert np.array_equal(fresh.store.read(rows), m.store.read(rows))
    packed = SRM(MNIST, c=40, l=4, capacity=60, seed=0)
    with pytest.raises(ValueError, match="entropy_coding=False"):
        packed.load_state_dict(state)


def test_constriction_missing_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(entropy, "constriction", None)
    with pytest.raises(ValueError, match=r"pip install 'cl-env\[entropy\]'") as err:
        SRM(MNIST, c=10, l=4, capacity=10, entropy_coding=True)
    assert "\n" not in str(err.value)
    SRM(MNIST, c=10, l=4, capacity=10)  # the faithful bit-packed default needs no extra


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_entropy_coding_must_be_a_bool(bad):
    with pytest.raises(ValueError, match=r"memory.entropy_coding: got .*expected True or False"):
        SRM(MNIST, c=10, l=4, capacity=10, entropy_coding=bad)
    with pytest.raises(ValueError, match="memory.entropy_prior"):
        SRM(MNIST, c=10, l=4, capacity=10, entropy_coding=True, entropy_prior="per-item")
    with pytest.raises(ValueError, match="supports policy 'reservoir'"):
        SRM(MNIST, c=10, l=4, capacity=10, entropy_coding=True, policy="task_ring")


def test_the_cli_spells_booleans_true_and_false():
    assert parse_assignments(["memory.entropy_coding=true", "a=false", "b=True", "c=yes"], "--set") == {
        "memory.entropy_coding": True, "a": False, "b": True, "c": "yes"}


@pytest.mark.parametrize("value,text", [("yes", "memory.entropy_coding of memory 'srm': got 'yes'"),
                                        ("true", "pip install 'cl-env[entropy]'")])
def test_cli_bad_entropy_input_exits_2_with_one_line(value, text, tiny, capsys, monkeypatch):
    from agents.harness.cli import main

    monkeypatch.setattr(entropy, "constriction", None)
    stream = [f"{k}={v!r}" for k, v in tiny["stream_kwargs"].items()]
    code = main(["run", tiny["env_id"], "--agent", "er", "--memory", "srm", "--budget", "20", "--stream", *stream,
                 "--set", "memory.items=1000", f"memory.entropy_coding={value}"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and "Traceback" not in err and len(lines) == 1 and text in lines[0], err


def test_a_killed_entropy_coded_run_resumes_to_the_uninterrupted_result(tiny, tmp_path):
    from agents import run

    kw = {"agent": "er", "memory": "srm", "budget": 1, "env_id": tiny["env_id"],
          "stream_kwargs": {**tiny["stream_kwargs"], "train_per_task": 100},  # 200 examples > 150 packed rows
          "settings": {"memory.items": 150, "memory.n_sets": 1, "memory.entropy_coding": True}}
    whole = run(out=tmp_path / "whole", **kw)
    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut", stop_after_task=0, **kw)
    resumed = run(out=tmp_path / "cut", resume=True, **kw)
    assert resumed.accuracy_matrix == whole.accuracy_matrix and resumed.storage_bits == whole.storage_bits
    assert resumed.items == whole.items and 0 < whole.storage_bits <= 784 * 8  # budget 1 example: c = 18


def test_every_held_item_decodes_to_its_own_code_through_drift_refits_and_evictions():
    """Each item carries a unique id as its label: after 4,000 codes whose distribution drifts
    (skewed, then uniform), refits at task ends and by doubling, and evictions, every held item
    decodes to exactly the code written with its id, and the tasks stay spread."""
    rng = np.random.default_rng(0)
    store = CodedStore(100, 4, 8, 40_000, "variable", np.random.default_rng(1))
    truth = {}
    for step in range(400):
        p = [0.6, 0.2, 0.1, 0.1] if step < 200 else [0.25] * 4
        codes, ids = rng.choice(4, size=(10, 100), p=p), np.arange(10 * step, 10 * step + 10)
        truth.update(zip(ids.tolist(), codes, strict=True))
        store.add(codes, ids, step // 100)
        if step % 100 == 99:
            store.refit()
    out = store.read(np.arange(store.items))
    assert store.items > 100 and store.recodes >= 3 and store.storage_bits <= store.budget_bits
    assert all(np.array_equal(row[:100], truth[int(row[100])]) for row in out)
    assert set(out[:, 101].tolist()) == {0, 1, 2, 3}
