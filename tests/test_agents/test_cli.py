"""The cl-env command line as a user runs it."""

from __future__ import annotations

import json

from agents.harness.cli import main, parse_assignments


def test_parse_assignments():
    assert parse_assignments(["lr=0.05", "model=mlp400", "x=[1, 2]"], "--set") == {
        "lr": 0.05, "model": "mlp400", "x": [1, 2]}
    # YAML's and JSON's spellings of booleans and None mean what they mean in a sweep file
    assert parse_assignments(["a=true", "b=false", "c=null", "d=None", "e=nullx"], "--set") == {
        "a": True, "b": False, "c": None, "d": None, "e": "nullx"}


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


def _tiny_stream(mnist_root):
    return ["source=mnist", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2", "train_per_task=50"]


def test_set_is_repeatable_and_never_swallows_the_env_id(mnist_root, tmp_path, capsys):
    """`--set lr=0.05 ENV` and repeated --set/--stream work; a stray word is one clear error."""
    out = tmp_path / "r"
    code = main(["run", "--set", "lr=0.05", "--set", "replay_batch=5", "MNISTRotations-v0", "--agent", "er",
                 "--budget", "10", "--stream", *_tiny_stream(mnist_root)[:3], "--stream",
                 *_tiny_stream(mnist_root)[3:], "--out", str(out)])
    assert code == 0
    res = json.loads((out / "result.json").read_text())
    assert res["env"] == "MNISTRotations-v0"
    assert res["config"]["settings"]["lr"] == 0.05 and res["config"]["settings"]["replay_batch"] == 5
    assert res["config"]["stream_kwargs"]["n_tasks"] == 2
    # progress when stderr is not a terminal: one line per task, with elapsed time and ETA
    err = capsys.readouterr().err
    assert "[task 1/2] er on MNISTRotations-v0" in err and "ETA" in err and "[task 2/2]" in err
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["run", "--set", "lr=0.05"])
    assert exc.value.code == 2 and "required: env_id" in capsys.readouterr().err
    assert main(["run", "MNISTRotations-v0", "--set", "lr=0.05", "oops"]) == 2
    assert capsys.readouterr().err.strip() == "error: --set expects key=value, got 'oops' (e.g. --set lr=0.05)"


def test_version_and_help_texts(capsys):
    import pytest

    from agents.registry import AGENTS, MEMORIES

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("cl-env ")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(a in text for a in AGENTS) and all(m in text for m in MEMORIES)
    parser_help = {a.dest: a.help for a in _run_parser()._actions}
    for dest in ("agent", "memory", "seed", "device", "checkpoint_every", "progress", "set", "stream", "budget"):
        assert parser_help[dest], dest  # every option says what it takes
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "see agents/harness/sweep.py" not in text and "budgets:" in text and "retries" in text


def _run_parser():
    from agents.harness.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices["run"]


def test_a_configuration_known_to_be_slow_says_so_with_the_expected_time():
    from agents.harness.runner import slow_note

    note = slow_note("er", "srm", "cpu", 20_000)
    assert note.startswith("note: er with memory srm is slow on a CPU: expect about 2-15 minutes")
    assert slow_note("er", "srm", "cuda", 20_000) is None
    assert slow_note("er", "reservoir", "cpu", 20_000) is None
    assert slow_note("er", "srm", "cpu", 500) is None  # under a minute: no note


def test_run_seeds_runs_each_seed_as_its_separate_run_would(mnist_root, tmp_path, capsys):
    import json

    from agents.harness.cli import parse_seeds
    from agents.harness.results import find_results
    from agents.harness.runner import run

    assert parse_seeds("0-2,7") == [0, 1, 2, 7] and parse_seeds("3") == [3]
    for bad in ("2-1", "a", "0,0", "-1"):
        assert main(["run", "MNISTRotations-v0", "--seeds", bad, "--out", str(tmp_path / "x")]) == 2
    assert "--seeds" in capsys.readouterr().err
    stream = ["--stream", "source=mnist", "verify=False", f"root={mnist_root}", "n_tasks=2", "train_per_task=100"]
    assert main(["run", "MNISTRotations-v0", "--agent", "er", "--budget", "20", "--seeds", "0-1",
                 "--out", str(tmp_path / "s"), *stream]) == 0
    assert "retained accuracy over 2 seed(s)" in capsys.readouterr().out
    runs, _ = find_results([tmp_path / "s"])
    assert sorted(r.seed for r in runs) == [0, 1]
    kw = {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 100}
    for r in runs:  # each seed's numbers are its separate run's
        alone = run("MNISTRotations-v0", agent="er", budget=20.0, seed=r.seed, stream_kwargs=kw, progress=False)
        assert r.data["accuracy_matrix"] == alone.accuracy_matrix
        assert json.loads(r.path.read_text())["config_hash"] == alone.config_hash
    assert main(["run", "MNISTRotations-v0", "--seeds", "0-1", "--seed", "3", "--out", str(tmp_path / "y")]) == 2
    assert main(["run", "MNISTRotations-v0", "--seeds", "0-1"]) == 2  # no --out


def test_run_seeds_logs_as_asked_and_sums_up_its_own_configuration_only(mnist_root, tmp_path, capsys):
    """``--log`` reaches every seed's run (it was dropped: TensorBoard only), and the closing line
    averages this configuration's seeds, not other runs under the same ``--out``."""
    stream = ["--stream", "source=mnist", "verify=False", f"root={mnist_root}", "n_tasks=2", "train_per_task=100"]
    out = tmp_path / "s"
    assert main(["run", "MNISTRotations-v0", "--seeds", "0", "--out", str(out), "--log", "csv", *stream]) == 0
    csvs = sorted(out.rglob("progress.csv"))
    assert len(csvs) == 1 and csvs[0].read_text().count("\n") > 1
    assert not list(out.rglob("events.out.tfevents.*"))  # csv only, as asked
    capsys.readouterr()
    assert main(["run", "MNISTRotations-v0", "--seeds", "0", "--out", str(out), "--set", "lr=0.01", *stream]) == 0
    assert "retained accuracy over 1 seed(s)" in capsys.readouterr().out  # not 2: the lr=0.1 run is another


def test_run_says_which_logs_it_wrote(mnist_root, tmp_path, capsys):
    stream = ["--stream", "source=mnist", "verify=False", f"root={mnist_root}", "n_tasks=2", "train_per_task=100"]
    assert main(["run", "MNISTRotations-v0", "--out", str(tmp_path / "a"), "--log", "csv", *stream]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "progress.csv" in last and "TensorBoard" not in last  # no events file was written
    assert main(["run", "MNISTRotations-v0", "--out", str(tmp_path / "b"), *stream]) == 0
    assert "TensorBoard events (tensorboard --logdir" in capsys.readouterr().out
