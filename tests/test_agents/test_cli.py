"""The cl-env command line as a user runs it."""

from __future__ import annotations

import json

from agents.cli import main, parse_assignments


def test_parse_assignments():
    assert parse_assignments(["lr=0.05", "model=mlp400", "x=[1, 2]"], "--set") == {
        "lr": 0.05, "model": "mlp400", "x": [1, 2]}


def test_run_then_compare(mnist_root, tmp_path, capsys):
    for seed in (0, 1):
        code = main(["run", "MNISTRotations-v0", "--agent", "er", "--budget", "20", "--seed", str(seed),
                     "--stream", "source=mnist", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2",
                     "train_per_task=100", "--set", "replay_batch=5", "--out", str(tmp_path / f"s{seed}")])
        assert code == 0
    res = json.loads((tmp_path / "s0" / "result.json").read_text())
    assert res["config"]["settings"]["replay_batch"] == 5 and res["memory"] == "reservoir"
    capsys.readouterr()
    assert main(["compare", str(tmp_path), "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "| MNISTRotations-v0 | mnist | er | reservoir | 0,1 |" in out and "±" in out
    assert (tmp_path / "t.csv").read_text().startswith("table,env,source,method,memory")


def test_run_reports_bad_input_without_a_traceback(capsys):
    assert main(["run", "MNISTRotations-v0", "--agent", "gemm"]) == 2
    assert "Did you mean 'gem'" in capsys.readouterr().err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "MNISTRotations-v0" in out and "gem" in out and "task_ring" in out


def test_compare_with_nothing(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
