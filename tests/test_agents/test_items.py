"""``--items N``: an exact item count for buffer memories, recorded in the configuration, its bits
reported as for a budget; ``--set memory.capacity`` refused in one line pointing at the right flag."""

from __future__ import annotations

import json
import re

import pytest

from agents import run
from agents.harness import results
from agents.harness.cli import main
from agents.harness.sweep import expand
from agents.registry import build_memory
from memory.base import MemorySpec


def _tiny(mnist_root):
    return {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 100}


@pytest.mark.parametrize("agent,memory", [("er", None), ("derpp", None), ("er_ace", "class_balanced"),
                                          ("agem", "task_ring")])
def test_items_give_exactly_n_items_recorded_in_the_config(mnist_root, agent, memory):
    r = run("MNISTRotations-v0", agent=agent, memory=memory, items=37, stream_kwargs=_tiny(mnist_root))
    assert r.items == 37
    assert r.config["memory_items"] == 37 and r.config["budget"] is None
    spec = MemorySpec((1, 28, 28), 10, 2)
    mem = build_memory(agent, memory, None, spec, items=37)
    assert r.storage_bits == 37 * type(mem).item_bits(spec)  # the bits reported as for any size
    assert r.effective_examples == pytest.approx(r.storage_bits / spec.example_bits)


def test_items_change_the_identity_and_runs_without_them_keep_theirs():
    plain = results.run_config("MNISTRotations-v0", "er", budget=200)
    assert "memory_items" not in plain  # recorded only when given: older hashes unchanged
    a = results.run_config("MNISTRotations-v0", "er", items=200)
    b = results.run_config("MNISTRotations-v0", "er", items=500)
    assert a["budget"] is None and results.config_hash(a) != results.config_hash(b) != results.config_hash(plain)


def test_task_ring_spreads_the_items_over_the_tasks():
    mem = build_memory("gem", None, None, MemorySpec((1, 28, 28), 10, 3), items=10)
    assert mem.caps.tolist() == [4, 3, 3]


@pytest.mark.parametrize("kwargs,match", [
    ({"agent": "er", "budget": 100, "items": 50}, "give --budget .* or --items .* not both"),
    ({"agent": "er", "settings": {"memory.capacity": 50}}, r"memory.capacity=50 is not an option .* --items 50"),
    ({"agent": "gem", "memory": "srm", "settings": {"memory.capacity": 50}}, r"--set memory.items=50"),
    ({"agent": "gem", "memory": "srm", "items": 50}, "not sized by an item count .* --budget"),
    ({"agent": "online", "items": 50}, "uses no memory; drop --memory/--budget/--items"),
    ({"agent": "er", "items": 0}, "items"),
])
def test_bad_sizes_are_one_clear_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as exc:
        results.run_config("MNISTRotations-v0", **kwargs)
    assert "\n" not in str(exc.value)


def test_cli_items_and_capacity(mnist_root, tmp_path, capsys):
    stream = ["--stream", "source=mnist", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2",
              "train_per_task=100"]
    assert main(["run", "MNISTRotations-v0", "--agent", "er", "--set", "memory.capacity=50", *stream]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--items 50" in err and "Traceback" not in err
    assert main(["run", "MNISTRotations-v0", "--agent", "er", "--items", "500", *stream]) == 2
    assert "at most 200 items" in capsys.readouterr().err
    assert main(["run", "MNISTRotations-v0", "--agent", "er", "--items", "40", *stream,
                 "--out", str(tmp_path / "r"), "--log", "csv"]) == 0
    assert "(40 items)" in capsys.readouterr().out
    res = json.loads((tmp_path / "r" / "result.json").read_text())
    assert res["items"] == 40 and res["config"]["memory_items"] == 40


def test_sweep_items_axis(mnist_root):
    cfg = {"out": "x", "envs": ["MNISTRotations-v0"], "agents": ["er", "online"], "items": [20, 40],
           "stream": _tiny(mnist_root)}
    cells, _ = expand(cfg)
    assert sorted((c.agent, c.items) for c in cells) == [("er", 20), ("er", 40), ("online", None)]
    assert "-i20-" in str([c for c in cells if c.items == 20][0].directory("x"))
    from agents.harness.sweep import check_config
    from cl_env.error import CLEnvError

    with pytest.raises((CLEnvError, ValueError), match="not both"):
        check_config({**cfg, "budgets": [100]})


@pytest.mark.parametrize("kwargs", [{"budget": 200}, {"items": 300}, {}])
def test_run_config_and_the_frozen_runconfig_agree_on_items(kwargs):
    from agents.harness.config import RunConfig

    frozen = RunConfig.build("SplitMNIST-v0", "derpp", **kwargs)
    assert frozen.to_dict() == results.run_config("SplitMNIST-v0", "derpp", **kwargs)
    assert RunConfig.from_dict(frozen.to_dict()) == frozen and frozen.memory_items == kwargs.get("items")


@pytest.mark.parametrize("seeds,words", [([1.5], "seed: got 1.5"), (["3"], "seed: got '3'"), ([True], "seed: got True"),
                                         ("01", "seeds: got '01'"), (2, "seeds: got 2"), ([None], "seed: got None")])
def test_run_seeds_checks_its_seeds_instead_of_converting_them(seeds, words):
    from agents.harness.runner import run_seeds

    with pytest.raises(ValueError, match=re.escape(words)):
        run_seeds("MNISTRotations-v0", "online", seeds=seeds)


def test_run_seeds_refuses_one_directory_for_two_seeds(tmp_path):
    from agents.harness.runner import run_seeds

    with pytest.raises(ValueError, match="one directory per seed"):
        run_seeds("MNISTRotations-v0", "online", seeds=[0, 1], outs=[tmp_path / "d", str(tmp_path / "d")])


def test_the_fix_offered_for_a_budget_that_holds_nothing_is_not_the_refused_value():
    with pytest.raises(ValueError) as info:
        run("MNISTRotations-v0", agent="er", budget=1, stream_kwargs={"n_tasks": 2, "train_per_task": 50}, progress=False)
    assert "--items N" in str(info.value) and "fix: --budget 1" not in str(info.value)


def test_the_batch_size_offered_fits_the_smallest_task():
    import gymnasium as gym

    with pytest.raises(ValueError, match=r"fix: batch_size=5 "):
        gym.make("MNISTRotations-v0", n_tasks=2, train_per_task=5, batch_size=10)
