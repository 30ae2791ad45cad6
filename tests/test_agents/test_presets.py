"""Presets with provenance (issue 34, item 3): a named, versioned row of hyperparameters that a
run records in its configuration (and so in its hash), explicit options over it, one-line refusals."""

from __future__ import annotations

import json

import pytest

from agents import presets
from agents.harness import results
from agents.harness.cli import main
from agents.harness.runner import run
from agents.harness.sweep import expand
from cl_env.error import UnknownNameError
from memory import memory_class


def _stream(mnist_root) -> dict:
    return {"source": "mnist", "root": str(mnist_root), "verify": False}


@pytest.mark.parametrize("p", presets.PRESETS, ids=lambda p: p.key)
def test_every_preset_is_valid_for_its_agent(p):
    resolved = presets.check_preset(p)
    for key, value in p.settings:
        assert resolved[key] == value
    assert p.source and p.benchmark is presets.SEQ_MNIST
    if p.items is not None:  # the items the paper states are what the memory will hold
        spec = p.benchmark.memory_spec()
        cls = memory_class(p.memory)
        mem = cls.for_budget(presets.equivalent_budget(p, p.memory), spec)
        held = int(mem.caps.sum()) if hasattr(mem, "caps") else mem.capacity  # task_ring: per task
        assert held == p.items


def test_the_table_covers_the_der_papers_methods_at_every_buffer():
    keys = {(p.agent, p.items) for p in presets.PRESETS}
    for agent in ("er", "gem", "agem", "icarl", "der", "derpp", "er_ace", "gdumb"):
        assert {(agent, n) for n in (200, 500, 5120)} <= keys
    for agent in ("online", "si", "mas", "lwf", "ewc"):
        assert (agent, None) in keys
    names = [p.key for p in presets.PRESETS]
    assert len(names) == len(set(names))
    # each method's paper's memory: reservoir for ER and ER-ACE, herding for iCaRL, class-balanced for GDumb
    memory = {p.agent: p.memory for p in presets.PRESETS}
    assert memory["er_ace"] == "reservoir" and memory["icarl"] == "herding" and memory["gdumb"] == "class_balanced"
    assert memory["der"] == memory["derpp"] == "logit_reservoir"


def test_mammoth_numbers_translated_into_our_meanings():
    net = {"model": "mlp", "weight_init": "xavier"}  # Mammoth's MNISTMLP: 784-100-100-10, Xavier-uniform
    derpp = presets.find_preset("derpp-seqmnist-500").settings_dict()
    assert derpp == {**net, "lr": 0.03, "replay_batch": 10, "alpha": 1.0, "beta": 0.5}
    # Mammoth's ewc_on penalty has no 1/2, ours has: lam = 2 * e_lambda (90)
    assert presets.find_preset("ewc-seqmnist").settings_dict()["lam"] == 180.0
    # SI: both penalties are c * sum Omega d^2
    assert presets.find_preset("si-seqmnist").settings_dict() == {**net, "lr": 0.1, "lam": 1.0, "xi": 0.9}
    assert presets.find_preset("gem-seqmnist-500").settings_dict() == {**net, "lr": 0.03, "margin": 0.5}
    # LwF: Mammoth's alpha * CE(softmax(z_old/T), softmax(z/T)) has no T^2, ours has: alpha = 1 / 2^2
    lwf = presets.find_preset("lwf-seqmnist").settings_dict()
    assert lwf["alpha"] * lwf["temperature"] ** 2 == 1.0


def test_preset_recorded_in_the_config_and_the_hash(mnist_root):
    cfg = results.run_config("SplitMNIST-v0", "derpp", stream_kwargs=_stream(mnist_root), preset="derpp-seqmnist-500")
    assert cfg["preset"]["name"] == "derpp-seqmnist-500" and cfg["preset"]["version"] == 1
    assert cfg["preset"]["items"] == 500 and "best_args.py" in cfg["preset"]["source"]
    assert cfg["preset"]["overridden"] == []
    assert cfg["settings"]["alpha"] == 1.0 and cfg["settings"]["beta"] == 0.5 and cfg["settings"]["lr"] == 0.03
    assert cfg["memory"] == "logit_reservoir"
    assert cfg["memory_items"] == 500 and cfg["budget"] is None  # the paper's buffer: exactly 500 items
    # the same numbers given by hand are another run: the preset is part of the identity
    by_hand = results.run_config("SplitMNIST-v0", "derpp", items=500, stream_kwargs=_stream(mnist_root),
                                 settings={"lr": 0.03, "replay_batch": 10, "alpha": 1.0, "beta": 0.5,
                                           "model": "mlp", "weight_init": "xavier"})
    assert {k: v for k, v in cfg.items() if k != "preset"} == by_hand
    assert results.config_hash(cfg) != results.config_hash(by_hand)
    # NAME is its newest version; NAME@1 the same row
    again = results.run_config("SplitMNIST-v0", "derpp", stream_kwargs=_stream(mnist_root), preset="derpp-seqmnist-500@1")
    assert results.config_hash(again) == results.config_hash(cfg)


def test_explicit_set_wins_and_the_config_says_so(mnist_root):
    cfg = results.run_config("SplitMNIST-v0", "derpp", settings={"alpha": 0.4, "replay_batch": 32}, budget=100,
                             stream_kwargs=_stream(mnist_root), preset="derpp-seqmnist-500")
    assert cfg["settings"]["alpha"] == 0.4 and cfg["settings"]["replay_batch"] == 32
    assert cfg["settings"]["beta"] == 0.5  # not given: the preset's
    assert cfg["budget"] == 100.0
    assert cfg["preset"]["overridden"] == ["alpha", "replay_batch", "budget"]
    # restating the preset's own value is the same run (1 is 1.0)
    same = results.run_config("SplitMNIST-v0", "derpp", settings={"alpha": 1}, stream_kwargs=_stream(mnist_root),
                              preset="derpp-seqmnist-500")
    plain = results.run_config("SplitMNIST-v0", "derpp", stream_kwargs=_stream(mnist_root), preset="derpp-seqmnist-500")
    assert same["preset"]["overridden"] == [] and results.config_hash(same) == results.config_hash(plain)


def test_a_run_with_a_preset_records_it(mnist_root, tmp_path):
    r = run("SplitMNIST-v0", agent="der", stream_kwargs=_stream(mnist_root), preset="der-seqmnist-200",
            settings={"lr": 0.05}, out=tmp_path / "r")
    saved = json.loads((tmp_path / "r" / "result.json").read_text())
    assert saved["config"]["preset"]["name"] == "der-seqmnist-200" and saved["config"]["preset"]["overridden"] == ["lr"]
    assert saved["config_hash"] == results.config_hash(saved["config"])
    assert r.items == 200 and saved["config"]["settings"]["alpha"] == 0.2 and saved["config"]["settings"]["lr"] == 0.05


def test_preset_for_another_agent_env_or_source_is_refused(mnist_root, capsys):
    with pytest.raises(ValueError, match="is for agent 'derpp', not 'der'"):
        presets.apply_preset("derpp-seqmnist-500", "SplitMNIST-v0", "der", stream_kwargs=_stream(mnist_root))
    with pytest.raises(ValueError, match="not MNISTRotations-v0"):
        presets.apply_preset("er-seqmnist-200", "MNISTRotations-v0", "er")
    with pytest.raises(ValueError, match="add --stream source=mnist"):
        presets.apply_preset("er-seqmnist-200", "SplitMNIST-v0", "er")  # the default source is MNIST-5k
    assert main(["run", "SplitMNIST-v0", "--agent", "der", "--preset", "derpp-seqmnist-500"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "use --agent derpp" in err and "Traceback" not in err


def test_unknown_preset_or_version_says_did_you_mean(capsys):
    with pytest.raises(UnknownNameError, match="Did you mean 'derpp-seqmnist-500'"):
        presets.find_preset("derp-seqmnist-500")
    with pytest.raises(UnknownNameError, match="version of preset"):
        presets.find_preset("derpp-seqmnist-500@7")
    assert main(["run", "SplitMNIST-v0", "--agent", "derpp", "--preset", "derpp-seqmnist500"]) == 2
    assert "Did you mean 'derpp-seqmnist-500'" in capsys.readouterr().err


def test_list_presets(capsys):
    assert main(["list", "presets"]) == 0
    out = capsys.readouterr().out
    for p in presets.PRESETS:
        assert p.name in out
    assert "derpp-seqmnist-500     v1  derpp" in out and "d20f640293df1a6e697c4ca0baa251efeb059ff2" in out
    assert "500 items (logit_reservoir)" in out


def test_sweep_preset_axis_runs_each_with_its_agent(mnist_root):
    cells, skipped = expand({"envs": ["SplitMNIST-v0"], "stream": _stream(mnist_root),
                             "preset": ["er-seqmnist-200", "der-seqmnist-200"], "seeds": [0]})
    assert sorted(c.agent for c in cells) == ["der", "er"]
    assert all(c.config()["preset"]["name"].startswith(c.agent + "-") for c in cells)
    assert any("preset der-seqmnist-200@1: the preset is for der" in s for s in skipped)


def test_a_sweep_file_of_presets_needs_no_agents_list(mnist_root, tmp_path):
    from agents.harness.sweep.config import load_config

    path = tmp_path / "grid.yaml"
    path.write_text("envs: [SplitMNIST-v0]\npreset: [er-seqmnist-200, derpp-seqmnist-500]\nseeds: [0]\n")
    cells, _ = expand({**load_config(path), "stream": _stream(mnist_root)})
    assert sorted(c.agent for c in cells) == ["derpp", "er"]
    path.write_text("envs: [SplitMNIST-v0]\npreset: [null]\nseeds: [0]\n")
    with pytest.raises(ValueError, match="'agents' must list at least one value"):
        load_config(path)


def test_cli_seeds_with_a_preset(mnist_root, tmp_path):
    out = tmp_path / "seeds"
    stream = ["--stream", "source=mnist", "verify=False", f"root={str(mnist_root)!r}"]
    assert main(["run", "SplitMNIST-v0", "--agent", "er", "--preset", "er-seqmnist-200", "--seeds", "0-1",
                 "--out", str(out), *stream]) == 0
    runs, _ = results.find_results([out])
    assert sorted(r.seed for r in runs) == [0, 1]
    assert {r.data["config"]["preset"]["name"] for r in runs} == {"er-seqmnist-200"}
    assert {r.data["config"]["settings"]["lr"] for r in runs} == {0.01}


def test_runconfig_carries_the_preset_as_run_config_does(mnist_root):
    from agents.harness.config import RunConfig

    kw = {"settings": {"alpha": 0.4}, "stream_kwargs": _stream(mnist_root), "preset": "derpp-seqmnist-500"}
    rc = RunConfig.build("SplitMNIST-v0", "derpp", **kw)
    assert rc.to_dict() == results.run_config("SplitMNIST-v0", "derpp", **kw)
    assert rc.preset["overridden"] == ("alpha",) and RunConfig.from_dict(rc.to_dict()) == rc
    plain = RunConfig.build("SplitMNIST-v0", "derpp", stream_kwargs=_stream(mnist_root))
    assert "preset" not in plain.to_dict() and plain.hash != rc.hash  # absent: older hashes hold
