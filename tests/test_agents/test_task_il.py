"""Class-IL and Task-IL accuracy from one run (Mammoth reports both for every class-incremental
stream): the same test logits, argmax over every class and over the task's own classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import run
from agents.harness import results
from agents.harness.run.evaluation import scores
from cl_env import metrics


class FixedLogits:
    """Predicts class 5 with the largest logit and the task's second class with the next."""

    classes = [(0, 1), (2, 3), (4, 5)]
    class_mask = torch.zeros(3, 6, dtype=torch.bool)
    for t, cs in enumerate(classes):
        class_mask[t, list(cs)] = True

    def predict(self, x, t):
        out = torch.zeros(len(x), 6)
        out[:, 5] = 2.0
        out[:, self.classes[t][1]] = 1.0
        return out


def test_task_il_restricts_the_same_logits_to_the_tasks_classes():
    tests = [(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([2 * j, 2 * j + 1, 2 * j + 1, 2 * j + 1]))
             for j in range(3)]
    class_il, task_il = scores(FixedLogits(), tests, task_il=True)
    assert class_il.tolist() == [0.0, 0.0, 0.75]  # argmax over all six classes is always 5
    assert task_il.tolist() == [0.75, 0.75, 0.75]  # within the task: its second class
    assert scores(FixedLogits(), tests)[1] is None


@pytest.fixture
def split_kw(mnist_root):
    return {"env_id": "SplitMNIST-v0", "agent": "online",
            "stream_kwargs": {"source": "mnist", "verify": False, "root": str(mnist_root), "train_per_class": 20}}


def test_a_class_incremental_run_reports_both_scenarios(split_kw, tmp_path):
    res = run(out=tmp_path / "r", **split_kw)
    C, T = np.array(res.accuracy_matrix), np.array(res.task_il_accuracy_matrix)
    assert C.shape == T.shape == (5, 5)
    assert (T >= C - 1e-12).all()  # a right class-IL answer stays right among the task's classes
    assert res.task_il_retained_accuracy == pytest.approx(metrics.retained_accuracy(T))
    # fine-tuning forgets old tasks in Class-IL (the head predicts the newest classes) far more
    assert C[-1, :-1].mean() < T[-1, :-1].mean()
    loaded = results.load_result(tmp_path / "r" / "result.json")
    assert loaded.data["task_il_accuracy_matrix"] == res.task_il_accuracy_matrix


def test_a_resumed_run_keeps_the_task_il_rows(split_kw, tmp_path):
    full = run(out=tmp_path / "full", **split_kw)
    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut", stop_after_task=1, **split_kw)
    resumed = run(out=tmp_path / "cut", resume=True, **split_kw)
    assert resumed.task_il_accuracy_matrix == full.task_il_accuracy_matrix
    assert not np.isnan(np.array(resumed.task_il_accuracy_matrix)).any()


def test_streams_where_every_task_has_every_class_have_no_task_il_matrix(tiny):
    res = run(agent="online", **tiny)
    assert res.task_il_accuracy_matrix is None and res.task_il_retained_accuracy is None


def test_a_task_il_matrix_out_of_range_is_refused_on_load(split_kw, tmp_path):
    run(out=tmp_path / "r", **split_kw)
    path = tmp_path / "r" / "result.json"
    data = results.read_json(path)
    data["task_il_accuracy_matrix"][0][0] = 1.5
    results.write_json_atomic(path, data)
    with pytest.raises(ValueError, match="task_il_accuracy_matrix"):
        results.load_result(path)



def test_compare_shows_task_il_beside_class_il_only_where_it_was_scored(split_kw, tiny, tmp_path):
    from agents.harness.cli import main

    run(out=tmp_path / "split" / "s0", **split_kw)
    run(out=tmp_path / "rot" / "s0", agent="online", **tiny)
    [split] = results.comparison_tables(results.find_results([tmp_path / "split"])[0])
    [rot] = results.comparison_tables(results.find_results([tmp_path / "rot"])[0])
    assert split.columns.index("Task-IL acc %") == split.columns.index("retained acc %") + 1
    assert "Task-IL acc %" not in rot.columns
    rec = split.records[0]
    assert rec["task_il_retained_accuracy_mean"] >= rec["retained_accuracy_mean"]
    assert main(["compare", str(tmp_path / "split")]) == 0
