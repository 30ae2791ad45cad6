"""A user's agent and memory in their own package, with no edit to the library: as a
``package.module:Class`` path and through entry points, from ``cl-env run``, ``list`` and ``sweep``."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from agents.harness.cli import main

PLUGIN = textwrap.dedent('''
    """A user's package: a replay agent with its own memory (keeps the first examples it sees)."""
    import torch
    from torch.nn import functional as F

    from agents import Agent
    from memory import Memory, ReplayBatch


    class FirstSeen(Memory):
        """Keeps the first `capacity` examples (a deliberately simple write policy)."""

        name = "first_seen"

        def __init__(self, spec, capacity=16, seed=0):
            super().__init__(spec)
            self.capacity, self.seed = capacity, seed
            self.x, self.y = [], []

        @classmethod
        def for_budget(cls, budget, spec, **kwargs):
            return cls(spec, int(budget), **kwargs)

        @classmethod
        def default(cls, spec, **kwargs):
            return cls(spec, **kwargs)

        def observe(self, x, t, y, ctx=None):
            for i in range(len(y)):
                if len(self.y) < self.capacity:
                    self.x.append(x[i]), self.y.append(y[i])

        def sample(self, n, ctx=None, generator=None):
            if not self.y:
                return None
            idx = torch.randint(0, len(self.y), (n,), generator=generator)
            x, y = torch.stack(self.x), torch.stack(self.y)
            return ReplayBatch(x[idx], torch.zeros(n, dtype=torch.long), y[idx], {"index": idx})

        @property
        def items(self):
            return len(self.y)

        @property
        def storage_bits(self):
            return len(self.y) * (self.spec.example_bits + self.spec.label_bits)

        def state_dict(self):
            return {"x": list(self.x), "y": list(self.y)}

        def load_state_dict(self, state, ctx=None):
            self.x, self.y = list(state["x"]), list(state["y"])


    class MyReplay(Agent):
        """my replay: the batch plus a replayed batch from my memory"""

        name = "my_replay"
        SETTINGS = {"replay": 5}
        SETTING_RULES = {"replay": "count"}
        MEMORIES = ("first_seen", "reservoir")
        DEFAULT_MEMORY = "first_seen"
        DEFAULT_BUDGET = 16

        def learn(self, x, t, y, logits):
            loss = F.cross_entropy(logits, y)
            mem = self.memory.sample(self.settings["replay"], ctx=self, generator=self.generator)
            if mem is not None:
                loss = loss + F.cross_entropy(self.model(mem.x), mem.y)
            self.sgd_step(loss)
            self.memory.observe(x.detach(), t, y, ctx=self)
            return {"loss": loss.detach()}
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Install the package: its module and a dist-info with entry points, on sys.path and PYTHONPATH."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "my_cl_plugin.py").write_text(PLUGIN)
    info = root / "my_cl_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-cl-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cl_env.agents]\nmy_replay = my_cl_plugin:MyReplay\n\n"
                                           "[cl_env.memories]\nfirst_seen = my_cl_plugin:FirstSeen\n")
    (info / "top_level.txt").write_text("my_cl_plugin\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", str(root) + ":" + __import__("os").environ.get("PYTHONPATH", ""))
    yield root
    sys.modules.pop("my_cl_plugin", None)


def _stream(mnist_root):
    return ["source=mnist", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2", "train_per_task=60"]


def test_a_plugin_agent_runs_by_path_and_by_entry_point(plugin, mnist_root, tmp_path, capsys):
    for name, out in (("my_cl_plugin:MyReplay", "by-path"), ("my_replay", "by-entry-point")):
        code = main(["run", "MNISTRotations-v0", "--agent", name, "--set", "replay=3",
                     "--stream", *_stream(mnist_root), "--out", str(tmp_path / out)])
        assert code == 0, capsys.readouterr().err
        res = json.loads((tmp_path / out / "result.json").read_text())
        assert res["agent"] == name and res["memory"] == "first_seen" and res["items"] == 16
        assert res["config"]["settings"]["replay"] == 3 and res["retained_accuracy"] > 0.2
    # a built-in memory the plugin accepts, and a plugin memory by path
    assert main(["run", "MNISTRotations-v0", "--agent", "my_replay", "--memory", "reservoir", "--budget", "8",
                 "--stream", *_stream(mnist_root)]) == 0
    assert main(["run", "MNISTRotations-v0", "--agent", "er", "--memory", "my_cl_plugin:FirstSeen",
                 "--stream", *_stream(mnist_root)]) == 2  # er does not list it: one clear line
    assert "cannot use memory 'my_cl_plugin:FirstSeen'" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "my_replay" in listing and "my replay: the batch plus" in listing and "first_seen" in listing
    assert main(["run", "MNISTRotations-v0", "--agent", "my_cl_plugin:Nope"]) == 2
    assert "does not import" in capsys.readouterr().err


def test_a_plugin_agent_runs_in_a_sweep(plugin, mnist_root, tmp_path, capsys):
    cfg = tmp_path / "sweep.yaml"
    stream = dict(s.split("=", 1) for s in _stream(mnist_root))
    cfg.write_text(json.dumps({"out": str(tmp_path / "runs"), "envs": ["MNISTRotations-v0"],
                               "agents": ["my_replay"], "seeds": [0],
                               "stream": {"source": "mnist", "verify": False, "root": str(mnist_root),
                                          "n_tasks": 2, "train_per_task": 60}}))
    assert stream["n_tasks"] == "2"
    assert main(["sweep", str(cfg), "--workers", "1"]) == 0, capsys.readouterr()
    results = list((tmp_path / "runs").rglob("result.json"))
    assert len(results) == 1 and json.loads(results[0].read_text())["agent"] == "my_replay"
