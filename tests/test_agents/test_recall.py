"""Compress-then-recall and ``cl-env distill`` as a user runs them."""

from __future__ import annotations

import json

import pytest
import torch

from agents.harness.cli import main
from agents.harness.runner import run

FAST = {"memory.iterations": 2, "memory.inner_steps": 2, "epochs": 2}


def test_recall_agent_distils_each_task_within_budget(tiny, tmp_path):
    r = run(agent="recall", budget=100, seed=0, settings=FAST, out=tmp_path, **tiny)
    spec_bits = 100 * 784 * 8
    assert r.storage_bits <= spec_bits and r.items > 0
    assert len(r.accuracy_matrix) == 2 and 0 <= r.retained_accuracy <= 1
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["memory"] == "addressable"


def test_recall_agent_resumes_to_the_same_result(tiny, tmp_path):
    a = run(agent="recall", budget=100, seed=1, settings=FAST, **tiny)
    with pytest.raises(KeyboardInterrupt):
        run(agent="recall", budget=100, seed=1, settings=FAST, out=tmp_path, stop_after_task=0, **tiny)
    b = run(agent="recall", budget=100, seed=1, settings=FAST, out=tmp_path, resume=True, **tiny)
    assert a.accuracy_matrix == b.accuracy_matrix


@pytest.mark.parametrize("protocol", ["per_task", "joint"])
def test_recall_protocols_train_on_the_memories_they_name(tiny, tmp_path, protocol, monkeypatch):
    """per_task (the paper): at each task end one fresh model on that task's memories only,
    chosen at test time by the task id; joint: one fresh model on everything recalled so far."""
    from agents.recall import CompressThenRecall

    trained, agents = [], []
    real = CompressThenRecall._train_fresh

    def spy(self, x, y, ts):
        agents.append(self)
        trained.append(sorted(set(ts.tolist())))
        return real(self, x, y, ts)

    monkeypatch.setattr(CompressThenRecall, "_train_fresh", spy)
    run(agent="recall", budget=100, seed=0, settings={**FAST, "protocol": protocol}, out=tmp_path, **tiny)
    agent = agents[0]
    if protocol == "per_task":
        assert trained == [[0], [1]] and sorted(agent.task_models) == [0, 1]
        x = tiny_images = agent.memory.recalled(0)[0][:8]
        assert torch.equal(agent.predict(x, 0), agent.task_models[0](x))
        assert torch.equal(agent.predict(tiny_images, 1), agent.task_models[1](x))
        assert not torch.equal(agent.task_models[0](x), agent.task_models[1](x))
    else:
        assert trained == [[0], [0, 1]] and agent.task_models == {}
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["config"]["derived"]["test_task_ids"] is (protocol == "per_task")
    assert saved["config"]["settings"]["protocol"] == protocol
    from agents.harness import results

    table = results.comparison_tables(results.find_results([tmp_path])[0])
    assert ("task ids used at test time" in results.to_markdown(table)) is (protocol == "per_task")


@pytest.mark.parametrize("agent", ["er", "gem"])
def test_recalled_memories_are_a_replay_source(tiny, agent):
    r = run(agent=agent, memory="addressable", budget=100, seed=0,
            settings={"memory.iterations": 2, "memory.inner_steps": 2}, **tiny)
    assert r.items > 0 and r.storage_bits <= 100 * 784 * 8


def test_distill_cli(tmp_path, capsys):
    code = main(["distill", "mnist5k", "--iterations", "3", "--inner-steps", "2", "--repeats", "2",
                 "--eval-epochs", "2", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "distilled" in out and "random real per class" in out
    summary = json.loads((tmp_path / "distill.json").read_text())
    assert summary["rows_per_class"] == (784 * 10 - 16 * 196) // 160
    assert summary["storage_bits"] <= 784 * 10 * 32
    assert summary["random_same_bits"]["per_class"] == summary["storage_bits"] // (784 * 8 + 4) // 10
    assert (tmp_path / "memories.pt").exists() and list(tmp_path.glob("events.out.tfevents.*"))


def test_distill_cli_bad_budget(capsys):
    assert main(["distill", "mnist5k", "--ipc", "0.01", "--iterations", "1"]) == 2
    assert "fewer bases" in capsys.readouterr().err
