"""Every agent end to end on a tiny two-task stream, checkpoints, determinism, result schema."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from agents import AGENTS, StreamInfo, agent_class, run
from agents.registry import build_memory
from cl_env import make_stream
from cl_env.error import UnknownNameError

RESULT_KEYS = {
    "env", "agent", "memory", "seed", "accuracy_matrix", "retained_accuracy", "backward_transfer",
    "forward_transfer", "forgetting", "online_accuracy", "storage_bits", "overhead_bits",
    "effective_examples", "items", "wall_time_s", "examples_per_s", "data", "config",
    # generative results (null for classifiers)
    "neg_test_elbo", "frechet_distance", "elbo_matrix", "zd_consistency",
    # citability: identity, status, what happened on the way
    "status", "config_hash", "divergence", "warnings", "counters", "baseline_accuracy",
    # with a validation split (validation_fraction > 0); null otherwise
    "validation_accuracy_matrix", "validation_retained_accuracy",
    # class-incremental streams with a single head: Task-IL from the same logits; null otherwise
    "task_il_accuracy_matrix", "task_il_retained_accuracy",
}


# small settings so that the SB3 algorithms update within a 200-example task
TINY_SETTINGS = {"sb3": {"algo_kwargs": {"n_steps": 32, "batch_size": 32, "learning_rate": 3e-3}},
                 "recall": {"memory.iterations": 10, "memory.inner_steps": 5, "epochs": 30},
                 # 64 centroids: fitted on a 100-200-example base task, the codebook fits a budget of 20
                 "remind": {"memory.nbits": 6}}
# classifiers (the generative agents have their own tests: tests/test_agents/test_generative_agents.py)
CLASSIFIERS = [a for a in AGENTS if not agent_class(a).generative]


def _split(settings: dict | None) -> tuple[dict, dict]:
    settings = settings or {}
    return ({k: v for k, v in settings.items() if not k.startswith("memory.")},
            {k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith("memory.")})


@pytest.mark.parametrize("agent", CLASSIFIERS)
def test_agent_learns_above_chance_and_writes_results(agent, tiny, tmp_path):
    # distilled float memories need more room than 20 examples' bits to hold 10 classes per task
    # iCaRL keeps one exemplar set per (task, class): 20 sets need at least 20 items at the end
    budget = ({"recall": 100, "icarl": 40}.get(agent, 20)) if AGENTS[agent].memories else None
    r = run(agent=agent, budget=budget, out=tmp_path, settings=TINY_SETTINGS.get(agent), **tiny)
    R = np.array(r.accuracy_matrix)
    assert R.shape == (2, 2) and not np.isnan(R).any()
    assert r.retained_accuracy > 0.3, f"{agent} stayed near chance: {R}"
    assert R[0, 0] > 0.3 and R[1, 1] > 0.3
    assert set(json.loads((tmp_path / "result.json").read_text())) == RESULT_KEYS
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
    if agent in ("arm", "adi"):  # no examples stored: the old model is overhead
        assert r.storage_bits == 0 and r.items == 0 and r.overhead_bits > 0
    elif budget:
        assert 0 < r.storage_bits <= budget * 784 * 8 and r.items > 0
        assert r.effective_examples == pytest.approx(r.storage_bits / 6272)
    assert r.data["data"]["source"] == "mnist"


@pytest.mark.parametrize("agent", CLASSIFIERS)
def test_state_dict_round_trip(agent, mnist_root):
    stream = make_stream("MNISTRotations-v0", source="mnist", verify=False, root=mnist_root, n_tasks=2,
                         train_per_task=100)
    info = StreamInfo.from_stream(stream)
    cls = agent_class(agent)

    settings, options = _split(TINY_SETTINGS.get(agent))

    def fresh():
        mem = build_memory(agent, None, 20 if AGENTS[agent].memories else None,
                           info.memory_spec("cpu"), options=options)
        return cls(info, mem, settings, seed=3)

    a = fresh()
    bs = (cls.batch_sizes or (10,))[0]
    for t in range(2):
        for b in stream.train_batches(bs, seed=t):
            if b.t != t:
                continue
            a.act({"x": b.x.numpy(), "t": np.int64(t)})
            a.observe({"x": b.x.numpy(), "t": np.int64(t)}, b.y.numpy())
        a.end_task(t)
    b_agent = fresh()
    b_agent.load_state_dict(a.state_dict())
    x, _ = stream.test_set(1)
    assert torch.equal(a.predict(x, 1), b_agent.predict(x, 1))
    # and both continue identically
    batch = next(b for b in stream.train_batches(bs, seed=9) if b.t == 1)
    for ag in (a, b_agent):
        obs = {"x": batch.x.numpy(), "t": np.int64(1)}
        ag.act(obs)
        ag.observe(obs, batch.y.numpy())
    assert torch.equal(a.predict(x, 1), b_agent.predict(x, 1))


def test_same_seed_same_matrix_and_seed_matters(tiny):
    a = run(agent="er", budget=20, seed=1, **tiny)
    b = run(agent="er", budget=20, seed=1, **tiny)
    c = run(agent="er", budget=20, seed=2, **tiny)
    assert a.accuracy_matrix == b.accuracy_matrix
    assert a.accuracy_matrix != c.accuracy_matrix


@pytest.mark.parametrize(("agent", "settings"), [
    ("gem", None), ("lwf", None), ("ewc", None), ("arm", None), ("adi", {"init": "noise"}),
    ("sb3", {"algo": "ppo", "algo_kwargs": {"n_steps": 48, "batch_size": 16}}),
    ("sb3", {"algo": "dqn", "algo_kwargs": {"learning_starts": 30}}),
])
def test_resume_after_interrupt_gives_the_same_result(agent, settings, tiny, tmp_path):
    kw = {"agent": agent, "budget": 20 if AGENTS[agent].memories else None, "settings": settings, **tiny}
    full = run(out=tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut", stop_after_task=0, **kw)
    assert (tmp_path / "cut" / "checkpoint.pt").exists()
    assert not (tmp_path / "cut" / "result.json").exists()
    resumed = run(out=tmp_path / "cut", resume=True, **kw)
    assert resumed.accuracy_matrix == full.accuracy_matrix
    assert resumed.online_accuracy == pytest.approx(full.online_accuracy)


def test_killed_cli_run_resumes_to_the_same_result(mnist_root, tmp_path, kill_after_checkpoint):
    args = ["run", "MNISTRotations-v0", "--agent", "er", "--budget", "20", "--stream",
            "source=mnist", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=6", "train_per_task=300"]
    cmd = [sys.executable, "-m", "agents.harness.cli"]
    subprocess.run([*cmd, *args, "--out", str(tmp_path / "full")], check=True, capture_output=True)
    cut = tmp_path / "cut"
    # SIGKILL at a known point, right after the second checkpoint (step 14), not a race
    env = {**os.environ, **kill_after_checkpoint("2", inherit=False)}
    proc = subprocess.run([*cmd, *args, "--out", str(cut), "--checkpoint-every", "7"], env=env,
                          capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert (cut / "checkpoint.pt").exists()
    assert not (cut / "result.json").exists(), "the kill must land before the run finished"
    subprocess.run([*cmd, *args, "--out", str(cut), "--checkpoint-every", "7", "--resume"],
                   check=True, capture_output=True)
    full = json.loads((tmp_path / "full" / "result.json").read_text())
    resumed = json.loads((cut / "result.json").read_text())
    assert resumed["accuracy_matrix"] == full["accuracy_matrix"]


def test_resume_refuses_a_different_configuration(tiny, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(agent="online", out=tmp_path, stop_after_task=0, **tiny)
    with pytest.raises(ValueError, match="another configuration \\(settings.lr: 0.1 -> 0.05\\)"):
        run(agent="online", out=tmp_path, resume=True, settings={"lr": 0.05}, **tiny)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"agent": "gemm"}, UnknownNameError, "Did you mean 'gem'"),
        ({"agent": "er", "memory": "reservior"}, UnknownNameError, "reservoir"),
        ({"agent": "online", "memory": "reservoir"}, ValueError, "accepts: none"),
        ({"agent": "gem", "memory": "reservoir"}, ValueError, "accepts: \\['task_ring', 'srm', 'addressable', 'quantized', 'codec'\\]"),
        ({"agent": "er", "settings": {"lrr": 1}}, UnknownNameError, "Did you mean 'lr'"),
    ],
)
def test_bad_names_fail_before_any_work(kwargs, exc, match):
    # a missing data root would fail later: these must fail first
    with pytest.raises(exc, match=match):
        run("MNISTRotations-v0", stream_kwargs={"source": "mnist", "root": "/nonexistent"}, **kwargs)


def test_gem_needs_task_labels(tiny):
    # refused before any step (the runner's check), not at the first learn call
    with pytest.raises(ValueError, match="agent 'gem' needs task labels; do not pass task_labels=False"):
        run(agent="gem", env_id=tiny["env_id"],
            stream_kwargs={**tiny["stream_kwargs"], "task_labels": False})


def test_masked_head_only_predicts_the_tasks_classes(mnist_root):
    stream = make_stream("SplitMNIST-v0", source="mnist", verify=False, root=mnist_root)
    info = StreamInfo.from_stream(stream)
    agent = agent_class("online")(info, None, {"head": "masked"})
    x, _ = stream.test_set(2)
    pred = agent.predict(x, 2).argmax(1)
    assert set(pred.tolist()) <= {4, 5}


def test_sb3_counts_its_replay_buffer_as_storage(tiny):
    r = run(agent="sb3", settings={"algo": "dqn", "algo_kwargs": {"learning_starts": 30}}, **tiny)
    assert r.items == 400  # one pass: every transition is still in the replay buffer
    assert r.storage_bits >= r.items * 784 * 32 * 2  # float32 observation and next observation


@pytest.mark.parametrize(("env_id", "agent"), [
    pytest.param("IncCIFAR100-v0", "online", marks=pytest.mark.expensive),  # ~25 s: 20 tasks of a ResNet
    ("SplitCIFAR10-v0", "gem"), ("IncOmniglot-v0", "er")])
def test_agents_on_image_streams(env_id, agent, stream_kwargs):
    r = run(env_id, agent=agent, budget=20 if AGENTS[agent].memories else None,
            stream_kwargs=stream_kwargs[env_id])
    R = np.array(r.accuracy_matrix)
    assert not np.isnan(R).any() and R.shape[0] == len(R[0])
    expected_model = "mlp" if env_id == "IncOmniglot-v0" else "reduced_resnet18"
    assert r.config["derived"]["settings"]["model"] == expected_model
    if env_id != "SplitCIFAR10-v0":
        assert r.config["derived"]["settings"]["head"] == "masked"  # task-incremental streams mask the heads


def test_arm_runs_on_split_cifar10_fixture(stream_kwargs):
    r = run("SplitCIFAR10-v0", agent="arm", settings={"M": 8, "steps": 2},
            stream_kwargs=stream_kwargs["SplitCIFAR10-v0"])
    assert r.config["derived"]["settings"]["profile"] == "cifar10" and r.config["derived"]["settings"]["lr"] == 0.01
    assert r.config["derived"]["settings"]["model"] == "reduced_resnet18"
    assert len(r.accuracy_matrix) == 5 and r.overhead_bits > 0


@pytest.fixture
def tiny_info(tiny):
    """The :class:`StreamInfo` of the ``tiny`` stream, for building agents directly."""
    return StreamInfo.from_stream(make_stream(tiny["env_id"], **tiny["stream_kwargs"]))


def test_sb3_lr_sets_the_algorithms_learning_rate(tiny_info):
    info = tiny_info
    agent = agent_class("sb3")(info, None, {"algo": "a2c", "lr": 2e-3})
    assert agent.algo.learning_rate == 2e-3
    assert agent.algo.policy.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3)
    default = agent_class("sb3")(info, None, {"algo": "ppo"})
    assert default.algo.learning_rate == 1e-3  # PPO's default here
    with pytest.raises(ValueError, match="not both"):
        agent_class("sb3")(info, None, {"lr": 1e-3, "algo_kwargs": {"learning_rate": 1e-4}})


def test_adi_lists_only_the_settings_its_objective_reads(tiny_info):
    valid = agent_class("adi").all_settings()
    assert {"classes_weight", "adaptive_weight", "bn_weight", "lambda4", "lambda5"} <= set(valid)
    assert not {"lambda1", "lambda2", "lambda3", "divergence_weight"} & set(valid)
    assert {"lambda1", "lambda3", "divergence_weight"} <= set(agent_class("arm").all_settings())
    info = tiny_info
    with pytest.raises(UnknownNameError, match="lambda1"):
        agent_class("adi")(info, build_memory("adi", "self_recall", None, info.memory_spec("cpu")), {"lambda1": 2.0})
