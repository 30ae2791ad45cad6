"""Generative learners through the one runner: lvae, vae (+ bounds), ewc_vae, and GEN replay."""

from __future__ import annotations

import json

import pytest

from agents.harness.runner import run


@pytest.fixture(scope="module")
def gen_kwargs(stream_kwargs):
    return {"env_id": "SeqFashionMNIST-v0", "stream_kwargs": stream_kwargs["SeqFashionMNIST-v0"]}


def test_lvae_reports_generative_metrics_per_task(gen_kwargs, tmp_path):
    r = run(agent="lvae", seed=0, out=tmp_path, **gen_kwargs)
    T = 10
    assert len(r.neg_test_elbo) == len(r.frechet_distance) == len(r.zd_consistency) == T
    assert all(v > 0 for v in r.neg_test_elbo) and all(v >= 0 for v in r.frechet_distance)
    assert r.zd_consistency[0] is None and all(0 <= c <= 1 for c in r.zd_consistency[1:])
    assert len(r.elbo_matrix) == T and r.accuracy_matrix == [] and r.retained_accuracy is None
    assert r.storage_bits == 0 and r.overhead_bits > 0
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["neg_test_elbo"] == r.neg_test_elbo
    assert list(tmp_path.glob("events.out.tfevents.*"))


def test_lvae_is_deterministic_and_resumes(gen_kwargs, tmp_path):
    a = run(agent="lvae", seed=3, **gen_kwargs)
    with pytest.raises(KeyboardInterrupt):
        run(agent="lvae", seed=3, out=tmp_path, stop_after_task=4, **gen_kwargs)
    b = run(agent="lvae", seed=3, out=tmp_path, resume=True, **gen_kwargs)
    assert a.neg_test_elbo == b.neg_test_elbo and a.frechet_distance == b.frechet_distance


@pytest.mark.parametrize("agent, settings", [("vae", {}), ("ewc_vae", {}), ("vae", {"bound": "upto"}),
                                             ("vae", {"bound": "full"})])
def test_baselines_run(gen_kwargs, agent, settings):
    r = run(agent=agent, seed=0, settings=settings, **gen_kwargs)
    assert len(r.neg_test_elbo) == 10
    if settings.get("bound") == "upto":
        assert r.items == 300 and r.storage_bits == 300 * 784 * 8  # every fixture training image, kept


def test_bound_is_for_the_vanilla_vae(gen_kwargs):
    with pytest.raises(ValueError, match="--agent vae"):
        run(agent="lvae", settings={"bound": "upto"}, **gen_kwargs)


def test_gen_replay_baseline(gen_kwargs):
    r = run(agent="er", memory="teacher", seed=0, **gen_kwargs)
    assert len(r.accuracy_matrix) == 10 and r.storage_bits == 0 and r.overhead_bits > 0
