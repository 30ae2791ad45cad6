"""Every bad input is one clear line (issue 15): table-driven over the CLI's options, every
``gym.make`` kwarg, every agent setting of the registry, every stream option and every sweep key.

When an option is added, add its bad values here; the registry-driven tables extend themselves.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import cl_env
from agents.harness.cli import main
from agents.registry import AGENTS, agent_class
from cl_env.checks import InvalidValueError
from cl_env.error import CLEnvError

FIXTURE = ["n_tasks=2", "train_per_task=100"]

# (argv, text the one error line must contain)
CLI_CASES = [
    (["run", "MNISTRotations-v00"], "unknown env id 'MNISTRotations-v00'"),
    (["run", "MNISTRotations-v0", "--agent", "ewc", "--seed", "-5"], "seed: got -5"),
    (["run", "MNISTRotations-v0", "--batch-size", "0"], "batch_size: got 0"),
    (["run", "MNISTRotations-v0", "--batch-size", "-3"], "batch_size: got -3"),
    (["run", "MNISTRotations-v0", "--stream", *FIXTURE, "--batch-size", "1000000000"],
     "batch_size: got 1000000000"),
    (["run", "MNISTRotations-v0", "--device", "tpu"], "device: got 'tpu'"),
    (["run", "MNISTRotations-v0", "--agent", "er", "--stream", *FIXTURE, "--budget", "1e12"],
     "budget: got 1000000000000.0"),
    (["run", "MNISTRotations-v0", "--agent", "er", "--stream", *FIXTURE, "--budget", "1e6"],
     "at most 200 effective examples"),
    (["run", "MNISTRotations-v0", "--agent", "er", "--budget", "-5"], "budget: got -5.0"),
    (["run", "MNISTRotations-v0", "--agent", "er", "--budget", "nan"], "budget: got nan"),
    (["run", "MNISTRotations-v0", "--set", "lr=abc"], "setting lr of agent 'online': got 'abc'"),
    (["run", "MNISTRotations-v0", "--set", "lr=nan"], "setting lr of agent 'online': got 'nan'"),
    (["run", "MNISTRotations-v0", "--set", "lr=1e999"], "got inf"),
    (["run", "MNISTRotations-v0", "--set", "lr=0"], "expected a finite number > 0"),
    (["run", "MNISTRotations-v0", "--agent", "ewc", "--set", "lam=-1e6"], "setting lam of agent 'ewc'"),
    (["run", "MNISTRotations-v0", "--agent", "er", "--set", "replay_batch=2.5"], "an integer >= 1"),
    (["run", "MNISTRotations-v0", "--agent", "gem", "--set", "per_task_grads=fast"], "one of ['auto'"),
    (["run", "MNISTRotations-v0", "--set", "lr"], "--set expects key=value"),
    (["run", "MNISTRotations-v0", "--set", "nosuch=1"], "unknown setting of agent 'online'"),
    (["run", "MNISTRotations-v0", "--stream", "n_tasks=0"], "option n_tasks: got 0"),
    (["run", "MNISTRotations-v0", "--stream", "n_tasks='3'"], "option n_tasks: got '3'"),
    (["run", "MNISTRotations-v0", "--stream", "source=mnistt"], "unknown data source"),
    (["run", "MNISTRotations-v0", "--stream", "nosuch=1"], "does not take ['nosuch']"),
    (["run", "SplitMNIST-v0", "--stream", "class_order=1,a"], "option class_order: got '1,a'"),
    (["run", "SplitMNIST-v0", "--stream", "seed=None"], "option seed: got None"),
    (["run", "SplitMNIST-v0", "--stream", "classes_per_task=null"], "option classes_per_task: got None"),
    (["run", "MNISTRotations-v0", "--stream", "n_tasks=None"], "option n_tasks: got None"),
    (["run", "SplitMNIST-v0", "--stream", "class_order=[1,'a']"], "option class_order: got [1, 'a']"),
    (["run", "SplitMNIST-v0", "--stream", "class_order=[1,1]"], "class_order must be a permutation of 0..9"),
    (["run", "MNISTRotations-v0", "--checkpoint-every", "0"], "checkpoint_every: got 0"),
    (["run", "MNISTRotations-v0", "--agent", "gemm"], "Did you mean 'gem'"),
    (["run", "MNISTRotations-v0", "--agent", "er", "--memory", "selfrecall"], "unknown memory"),
    (["run", "MNISTRotations-v0", "--agent", "online", "--budget", "100"], "uses no memory"),
    (["run", "MNISTRotations-v0", "--resume"], "resume=True / overwrite=True need an out directory"),
    (["distill", "mnist5k", "--images-per-class", "0"], "--images-per-class: got 0.0"),
    (["distill", "mnist5k", "--ipc", "0"], "--images-per-class: got 0.0"),  # the old spelling, hidden
    (["distill", "mnist5k", "--downsample", "0"], "--downsample: got 0"),
    (["distill", "mnist5k", "--iterations", "-1"], "--iterations: got -1"),
    (["distill", "nosuch"], "unknown data source 'nosuch'"),
    (["pretrain-srm", "SplitMNIST-v0", "--out", "x.pt", "--categories", "1"], "--categories: got 1"),
    (["pretrain-srm", "SplitMNIST-v0", "--out", "x.pt", "--l", "1"], "--categories: got 1"),  # old spelling
    (["pretrain-srm", "SplitMNIST-v0", "--out", "x.pt", "--variables", "0"], "--variables: got 0"),
    (["pretrain-srm", "SplitMNIST-v0", "--out", "x.pt", "--epochs", "0"], "--epochs: got 0"),
    # a seed past 2**32 - 1: the seed check, not torch.manual_seed's overflow traceback
    (["run", "MNISTRotations-v0", "--seed", "99999999999999999999"], "seed: got 99999999999999999999"),
    (["distill", "mnist5k", "--seed", "99999999999999999999"], "--seed: got 99999999999999999999"),
    (["pretrain-srm", "SplitMNIST-v0", "--out", "x.pt", "--seed", "99999999999999999999"],
     "--seed: got 99999999999999999999"),
    (["pretrain-srm", "SplitMNIST-v0", "--out", "x.pt", "--categories", "100000"], "parameters"),
    (["pretrain-srm", "SplitMNIST-v0", "--out", "x.pt", "--variables", "99999999999"], "parameters"),
    # --seeds refuses what one run refuses (its configuration is built and checked the same way)
    (["run", "MNISTRotations-v0", "--seeds", "0-1", "--out", "s", "--budget", "50"], "uses no memory"),
    (["run", "MNISTRotations-v0", "--seeds", "0-1", "--out", "s", "--items", "50"], "uses no memory"),
    (["run", "MNISTRotations-v0", "--seeds", "0-1", "--out", "s", "--memory", "reservoir"],
     "cannot use memory 'reservoir'"),
    (["run", "MNISTRotations-v0", "--seeds", "0-1", "--out", "s", "--preset", "derpp-seqmnist-200"], "preset"),
    (["run", "MNISTRotations-v0", "--seeds", "0-1", "--out", "s", "--checkpoint-every", "0"],
     "checkpoint_every: got 0"),
    (["run", "MNISTRotations-v0", "--seeds", "0-1", "--out", "s", "--log", "foo"], "foo"),
    # memory options are typed by their defaults, and those the memory's size sets are refused
    (["run", "MNISTRotations-v0", "--agent", "er", "--memory", "srm", "--set", "memory.n_sets='2'"],
     "memory.n_sets of memory 'srm': got '2' (str), expected an integer"),
    (["run", "MNISTRotations-v0", "--agent", "er", "--memory", "srm", "--set", "memory.tau=abc"],
     "memory.tau of memory 'srm': got 'abc' (str), expected a finite number"),
    (["run", "MNISTRotations-v0", "--agent", "er", "--memory", "srm", "--set", "memory.l=8"],
     "fix: --set memory.categories=8"),
    (["run", "MNISTRotations-v0", "--agent", "er", "--memory", "codec", "--set", "memory.quality=high"],
     "memory.quality of memory 'codec': got 'high' (str), expected an integer"),
    (["run", "MNISTRotations-v0", "--set", "memory.bits=4"], "uses no memory"),
    # a compressed memory's write policy fits the learner (er + herding held
    # nothing, gdumb + task_ring failed mid-run, gem + reservoir too)
    (["run", "MNISTRotations-v0", "--agent", "er", "--memory", "quantized", "--set", "memory.policy=herding"],
     "one of ['reservoir', 'class_balanced', 'task_ring']"),
    (["run", "MNISTRotations-v0", "--agent", "gdumb", "--memory", "codec", "--set", "memory.policy=task_ring"],
     "fix: --set memory.policy=class_balanced"),
    (["run", "MNISTRotations-v0", "--agent", "gem", "--memory", "quantized", "--set", "memory.policy=reservoir"],
     "fix: --set memory.policy=task_ring"),
    (["compare", "/nonexistent/runs"], "no readable result.json"),
    (["report", "/nonexistent/runs"], "no readable result.json"),
    (["sweep", "/nonexistent/grid.yaml"], "does not exist"),
]


@pytest.mark.parametrize("argv,text", CLI_CASES, ids=[" ".join(a)[:60] for a, _ in CLI_CASES])
def test_cli_bad_values_exit_2_with_one_line_and_no_traceback(argv, text, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("error: ") and text in lines[0], lines[0]


SWEEP_CASES = [
    ("envs: [MNISTRotations-v0\nagents: [er]\n", "not valid YAML at line 2"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nsettings: [lr=0.1]\n", "settings: got 'lr=0.1'"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nseeds: [1.7]\n", "seeds: got 1.7"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nseeds: [-1]\n", "seeds: got -1"),
    ("envs: [MNISTRotationz-v0]\nagents: [er]\n", "unknown env id 'MNISTRotationz-v0'"),
    ("envs: [MNISTRotations-v0]\nagents: [err]\n", "unknown agent 'err'"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nbudgets: [0]\n", "budgets: got 0"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nbatch_size: 2.5\n", "batch_size: got 2.5"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\ndevice: tpu\n", "device: got 'tpu'"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nretries: -1\n", "retries: got -1"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nstream: {n_tasks: 0}\n", "option n_tasks: got 0"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nsettings: [{lr: abc}]\n", "setting lr of agent 'er'"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nstreams: [source=mnist]\n", "streams: got 'source=mnist'"),
    ("envs: [MNISTRotations-v0]\nagent: [er]\n", "unknown keys ['agent']"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nsettings: [{1: 2}]\n", "settings: got {1: 2}"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nlog: [5]\n", "log: got [5]"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nlog: 5\n", "log: got 5"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nseeds: []\n", "seeds: got []"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nbudgets: []\n", "budgets: got []"),
    ("envs: [MNISTRotations-v0]\nagents: [er]\nstreams: []\n", "streams: got []"),
]


@pytest.mark.parametrize("text,expected", SWEEP_CASES, ids=[e for _, e in SWEEP_CASES])
def test_sweep_keys_are_checked_before_any_cell_even_in_a_dry_run(text, expected, tmp_path, capsys):
    (tmp_path / "grid.yaml").write_text(text)
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and expected in err, err


@pytest.mark.parametrize("value", [0, -3, 2.5, "10", 10**9, True, None])
def test_gym_make_batch_size(value):
    with pytest.raises(InvalidValueError, match="batch_size: got"):
        gym.make("SplitMNIST-v0", batch_size=value)


@pytest.mark.parametrize("kwargs,match", [
    ({"task_labels": "yes"}, "task_labels: got 'yes'"),
    ({"task_boundaries": 1}, "task_boundaries: got 1"),
    ({"device": "tpu"}, "device: got 'tpu'"),
    ({"chunk_bytes": 0}, "chunk_bytes: got 0"),
    ({"seed": -1}, "option seed: got -1"),
    ({"train_per_class": 0}, "option train_per_class: got 0"),
    ({"source": 5}, "unknown data source"),
])
def test_gym_make_kwargs(kwargs, match):
    with pytest.raises(CLEnvError, match=match):
        gym.make("SplitMNIST-v0", **kwargs)


def test_actions_outside_the_action_space_raise_as_gymnasiums_envs_do():
    for device in (None, "cpu"):
        env = gym.make("SplitMNIST-v0", batch_size=10, device=device)
        env.reset(seed=0)
        for action in (np.full(10, 99), np.full(10, -1), np.full(10, 2.5)):
            with pytest.raises(AssertionError, match="invalid"):
                env.step(action if device is None else __import__("torch").as_tensor(action))
    env = gym.make("SplitMNIST-v0", batch_size=1)
    env.reset(seed=0)
    with pytest.raises(AssertionError, match="invalid"):
        env.step(99)
    env.step(int(env.action_space.sample()))  # a valid one still works


def _numeric_settings():
    for name in AGENTS:
        cls = agent_class(name)
        for key, default in cls.all_settings().items():
            rule = cls.setting_rules().get(key)
            numeric = rule in ("positive", "non-negative", "count") or (
                rule is None and isinstance(default, (int, float)) and not isinstance(default, bool))
            if numeric:
                yield name, key


@pytest.mark.parametrize("agent,key", list(_numeric_settings()))
@pytest.mark.parametrize("bad", ["abc", "nan", math.inf, -1e6, True])
def test_every_numeric_setting_of_every_agent_refuses_bad_values(agent, key, bad):
    with pytest.raises(InvalidValueError, match=f"setting {key} of agent {agent!r}: got"):
        agent_class(agent).resolve_settings({key: bad})


def _int_stream_options():
    from cl_env.registration import resolve_stream_kwargs

    for env_id in cl_env.STREAMS:
        for key, default in resolve_stream_kwargs(env_id).items():
            if isinstance(default, int) and not isinstance(default, bool):
                yield env_id, key


@pytest.mark.parametrize("env_id,key", list(_int_stream_options()))
@pytest.mark.parametrize("bad", ["3", 2.5, -1])
def test_every_integer_stream_option_refuses_bad_values(env_id, key, bad):
    from cl_env.registration import resolve_stream_kwargs

    with pytest.raises(InvalidValueError, match=f"{env_id} option {key}: got"):
        resolve_stream_kwargs(env_id, {key: bad})


@pytest.mark.parametrize("action", [None, "3", [2**63] * 10])
def test_torch_mode_env_refuses_odd_actions_as_the_numpy_mode_does(action):
    from cl_env.env import InvalidActionError

    env = gym.make("MNISTRotations-v0", n_tasks=2, train_per_task=50, device="cpu")
    env.reset(seed=0)
    with pytest.raises(InvalidActionError):
        env.step(action)


def test_torch_mode_env_takes_wide_unsigned_labels_as_the_numpy_mode_does():
    env = gym.make("MNISTRotations-v0", n_tasks=2, train_per_task=50, device="cpu")
    env.reset(seed=0)
    for dtype in (np.uint16, np.uint32, np.uint64):
        env.step(np.full(10, 2, dtype=dtype))


@pytest.mark.parametrize("kwargs,words", [
    ({"memory": 3}, "memory: got 3"),
    ({"stop_after_task": "1"}, "stop_after_task: got '1'"),
    ({"on_checkpoint": 3}, "on_checkpoint: got 3"),
    ({"callbacks": None}, "callbacks: got None"),
    ({"stream_kwargs": {"class_order": np.arange(10)}}, "option class_order"),
])
def test_run_arguments_are_checked_before_any_work(kwargs, words):
    from agents import run

    args = {"agent": "er", "budget": 20, "stream_kwargs": {"n_tasks": 2, "train_per_task": 50}, "progress": False}
    env = "SplitMNIST-v0" if "class_order" in str(kwargs) else "MNISTRotations-v0"
    if env == "SplitMNIST-v0":
        args["stream_kwargs"] = {}
    args.update({k: v for k, v in kwargs.items() if k != "stream_kwargs"})
    args["stream_kwargs"] = {**args["stream_kwargs"], **kwargs.get("stream_kwargs", {})}
    with pytest.raises((ValueError, TypeError), match=words):
        run(env, **args)


def test_a_transition_too_short_for_one_batch_is_refused():
    """``transition`` below two batches mixed nothing (rounded to 0 batches) yet changed the run's identity."""
    with pytest.raises(ValueError, match="at least 2 x batch_size = 20"):
        gym.make("MNISTRotations-v0", n_tasks=2, train_per_task=50, transition=5)
    gym.make("MNISTRotations-v0", n_tasks=2, train_per_task=50, transition=20)


def test_a_learner_that_only_samples_takes_any_plain_policy_of_a_compressed_memory():
    """docs/memories.md: er, er_ace, mir and agem run quantized/codec under reservoir,
    class_balanced or task_ring; the policies with hooks (logits, herding) stay their learners'."""
    from agents import run

    r = run("MNISTRotations-v0", agent="er", memory="quantized", budget=20, settings={"memory.policy": "class_balanced"},
            stream_kwargs={"n_tasks": 2, "train_per_task": 50}, progress=False)
    assert r.status == "completed" and r.items > 0
