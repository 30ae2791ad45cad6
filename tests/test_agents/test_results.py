"""Results you can cite (issue 14): run identity, output directories, divergence, comparisons,
sweeps by configuration hash, TensorBoard on one x-axis. Each case failed on main before."""

from __future__ import annotations

import csv
import io
import json
import os
import threading

import numpy as np
import pytest

from agents.harness import results
from agents.harness.cli import main
from agents.harness.runner import run


def _stream(mnist_root, source="mnist", **extra) -> dict:
    return {"source": source, "root": str(mnist_root), "verify": False, "n_tasks": 2, "train_per_task": 100,
            **extra}


def _cli_stream(mnist_root, source="mnist") -> list[str]:
    return ["--stream", f"source={source}", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2",
            "train_per_task=100"]


# ----------------------------------------------------------------------------- identity
def test_result_carries_the_resolved_configuration_and_its_hash(mnist_root, tmp_path):
    r = run("MNISTRotations-v0", agent="lwf", stream_kwargs=_stream(mnist_root), out=tmp_path / "a")
    cfg = r.config
    # every stream option resolved, defaults included; every setting with its default
    assert cfg["stream_kwargs"]["seed"] == 0 and cfg["stream_kwargs"]["source"] == "mnist"
    assert cfg["stream_kwargs"]["task_labels"] is True
    assert cfg["settings"]["alpha"] == 1.0 and cfg["settings"]["lr"] == 0.1
    assert cfg["batch_size"] == 10 and cfg["device"] == "cpu" and cfg["seed"] == 0
    rt = cfg["runtime"]
    import torch

    assert rt["torch_threads"] == torch.get_num_threads()
    assert rt["versions"]["torch"] and rt["versions"]["numpy"] and rt["python"]
    assert r.config_hash == results.config_hash(cfg) and len(r.config_hash) == 16
    on_disk = json.loads((tmp_path / "a" / "config.json").read_text())
    assert on_disk["config_hash"] == r.config_hash and on_disk["config"]["settings"] == cfg["settings"]
    saved = json.loads((tmp_path / "a" / "result.json").read_text())
    assert saved["status"] == "completed" and saved["config_hash"] == r.config_hash
    # the hash is identity only: the same run computed before any data is loaded has it too
    assert results.config_hash(results.run_config("MNISTRotations-v0", "lwf",
                                                  stream_kwargs=_stream(mnist_root))) == r.config_hash
    # and defaults written out give the same identity as defaults left implicit
    explicit = results.run_config("MNISTRotations-v0", "lwf", settings={"alpha": 1.0},
                                  stream_kwargs={**_stream(mnist_root), "seed": 0}, batch_size=10)
    assert results.config_hash(explicit) == r.config_hash


def test_gem_qp_failures_and_dropped_examples_are_in_the_result(mnist_root, monkeypatch):
    import agents.gem as gem

    monkeypatch.setattr(gem, "project_gradient", lambda g, G, m, e: (g, {"eps": None}))
    with pytest.warns(UserWarning, match="QP failed"):
        r = run("MNISTRotations-v0", agent="gem", budget=20,
                stream_kwargs=_stream(mnist_root, n_tasks=3, train_per_task=95))
    assert r.counters["qp_failures"] > 0 and r.counters["qp_failures"] == r.counters["projections"]
    assert r.counters["dropped_examples"] == 3 * 5
    assert any("QP failed" in w for w in r.warnings)


def test_result_json_is_written_atomically_and_strict(tmp_path):
    results.write_json_atomic(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [1.0, None]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind


# ----------------------------------------------------------------------------- output directories
def test_an_existing_run_directory_is_refused_with_the_differing_keys(mnist_root, tmp_path, capsys):
    out = str(tmp_path / "gem")
    base = ["run", "MNISTRotations-v0", "--agent", "er", "--budget", "20", *_cli_stream(mnist_root), "--out", out]
    assert main(base) == 0
    first = json.loads((tmp_path / "gem" / "result.json").read_text())
    capsys.readouterr()
    # another configuration into the same directory: refused, naming what differs
    assert main([*base[:-2], "--set", "lr=0.05", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "settings.lr: 0.1 -> 0.05" in err and "--overwrite" in err and "Traceback" not in err
    # the same configuration without --resume: refused too (events would mix)
    assert main(base) == 2
    assert "--resume" in capsys.readouterr().err
    assert json.loads((tmp_path / "gem" / "result.json").read_text()) == first
    # --overwrite clears the directory first: one events file, a fresh result
    assert main([*base[:-2], "--set", "lr=0.05", "--out", out, "--overwrite"]) == 0
    assert len(list((tmp_path / "gem").glob("events.out.tfevents.*"))) == 1
    assert json.loads((tmp_path / "gem" / "result.json").read_text())["config"]["settings"]["lr"] == 0.05


def test_resume_needs_a_checkpoint(mnist_root, tmp_path, capsys):
    out = str(tmp_path / "empty")
    assert main(["run", "MNISTRotations-v0", "--agent", "online", *_cli_stream(mnist_root), "--out", out,
                 "--resume"]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err


def test_a_killed_second_run_cannot_leave_the_first_runs_result_beside_its_checkpoint(mnist_root, tmp_path):
    out = tmp_path / "r"
    run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=_stream(mnist_root), out=out)
    with pytest.raises(results.RunDirectoryError, match="budget: 20.0 -> 30.0"):
        run("MNISTRotations-v0", agent="er", budget=30, stream_kwargs=_stream(mnist_root), out=out,
            stop_after_task=0)
    with pytest.raises(KeyboardInterrupt):
        run("MNISTRotations-v0", agent="er", budget=30, stream_kwargs=_stream(mnist_root), out=out,
            overwrite=True, stop_after_task=0)
    assert not (out / "result.json").exists()  # nothing for compare to mistake for the new run
    runs, _ = results.find_results([tmp_path])
    assert runs == []


# ----------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("agent,setting", [("gem", "lr=1000"), ("ewc", "lam=1e12")])
def test_a_diverged_run_says_so_and_exits_non_zero(agent, setting, tmp_path, capsys):
    out = tmp_path / agent
    code = main(["run", "SplitMNIST-v0", "--agent", agent, "--set", setting, "--out", str(out)])
    assert code == 3
    assert "DIVERGED" in capsys.readouterr().err
    res = json.loads((out / "result.json").read_text())
    assert res["status"] == "diverged" and res["retained_accuracy"] is None
    d = res["divergence"]
    assert d["step"] >= 1 and 0 <= d["task"] < 5 and d["examples_seen"] == 10 * d["step"]
    # the accuracy rows measured before it, and no more
    assert len(res["accuracy_matrix"]) == d["task"]
    assert all(np.isfinite(row).all() for row in res["accuracy_matrix"])


def test_compare_flags_diverged_runs_and_never_averages_them(mnist_root, tmp_path, capsys):
    for seed in (0, 1):
        run("MNISTRotations-v0", agent="online", seed=seed, stream_kwargs=_stream(mnist_root), out=tmp_path / f"ok{seed}")
    with pytest.warns(RuntimeWarning, match="diverged"):
        bad = run("MNISTRotations-v0", agent="online", seed=2, settings={"lr": 1e6},
                  stream_kwargs=_stream(mnist_root), out=tmp_path / "bad")
    assert bad.status == "diverged"
    good = [json.loads((tmp_path / f"ok{s}" / "result.json").read_text())["retained_accuracy"] for s in (0, 1)]
    capsys.readouterr()
    assert main(["compare", str(tmp_path), "--format", "json"]) == 0
    recs = json.loads(capsys.readouterr().out)["tables"][0]["records"]
    completed = [r for r in recs if r["status"] == "completed" and r["lr"] == 0.1]
    assert len(completed) == 1 and completed[0]["retained_accuracy_n"] == 2
    assert completed[0]["retained_accuracy_mean"] == pytest.approx(np.mean(good))
    flagged = [r for r in recs if r["status"] == "diverged"]
    assert len(flagged) == 1 and flagged[0]["retained_accuracy_n"] == 0 and "seed 2 diverged" in flagged[0]["notes"]
    assert main(["compare", str(tmp_path)]) == 0
    assert "**DIVERGED**" in capsys.readouterr().out


# ----------------------------------------------------------------------------- comparisons
def test_compare_groups_by_source_and_settings_and_shows_what_differs(mnist_root, tmp_path, capsys):
    for name, source, alpha in [("m", "mnist", 1.0), ("f", "fashion_mnist", 1.0), ("m100", "mnist", 100.0)]:
        run("MNISTRotations-v0", agent="lwf", settings={"alpha": alpha}, stream_kwargs=_stream(mnist_root, source),
            out=tmp_path / name)
    capsys.readouterr()
    assert main(["compare", str(tmp_path)]) == 0
    md = capsys.readouterr().out
    header = md.splitlines()[0]
    assert "| source |" in header and "| alpha |" in header
    rows = [line for line in md.splitlines() if line.startswith("| MNISTRotations-v0")]
    assert len(rows) == 3  # three configurations, never merged
    assert any("| fashion_mnist |" in r for r in rows) and any("| 100.0 |" in r for r in rows)
    assert main(["compare", str(tmp_path), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 3
    for row in table:  # numeric columns pandas can read
        float(row["retained_accuracy_mean"])
        assert row["retained_accuracy_n"] == "1" and row["retained_accuracy_std"] == ""
    assert {row["source"] for row in table} == {"mnist", "fashion_mnist"}


def test_malformed_and_foreign_result_files_are_named_and_skipped(mnist_root, tmp_path, capsys):
    run("MNISTRotations-v0", agent="online", stream_kwargs=_stream(mnist_root), out=tmp_path / "good")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "result.json").write_text("")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "result.json").write_text('{"env": "x", ')
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "result.json").write_text('{"accuracy": 0.9}')
    capsys.readouterr()
    assert main(["compare", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("| MNISTRotations-v0") == 1
    for name, why in [("empty", "empty file"), ("broken", "not valid JSON"), ("foreign", "not a cl-env result")]:
        assert f"{name}/result.json: {why}" in captured.err
    assert "Traceback" not in captured.err
    assert main(["report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "not valid JSON" in page and "configuration" in page


# ----------------------------------------------------------------------------- sweeps
def _sweep_cfg(mnist_root, out, **extra) -> dict:
    return {"out": str(out), "envs": ["MNISTRotations-v0"], "agents": ["online"], "seeds": [0],
            "stream": _stream(mnist_root), **extra}


def test_sweep_reruns_exactly_the_cells_a_changed_key_affects(mnist_root, tmp_path):
    from agents.harness.sweep import sweep

    logs: list[str] = []
    cfg = _sweep_cfg(mnist_root, tmp_path / "s", agents=["online", "er"], budgets=[20])
    first = sweep(cfg, workers=2, log=logs.append)
    assert sorted(r["cell"]["agent"] for r in first) == ["er", "online"]
    assert any("ETA" in line for line in logs) and any("sweep summary" in line for line in logs)
    assert sweep(cfg, workers=2, log=logs.append) == []
    # a stream option changes every cell; the old results stay, in their own directories
    changed = sweep({**cfg, "stream": _stream(mnist_root, "fashion_mnist")}, workers=2, log=logs.append)
    assert len(changed) == 2
    # a setting that only ER reads reruns only ER
    only_er = sweep({**cfg, "agents": ["er"], "settings": [{"replay_batch": 5}]}, workers=1, log=logs.append)
    assert [r["cell"]["agent"] for r in only_er] == ["er"]
    runs, skipped = results.find_results([tmp_path / "s"])
    assert len(runs) == 5 and not skipped
    assert len({r.data["config_hash"] for r in runs}) == 5
    sources = {r.config["stream_kwargs"]["source"] for r in runs}
    assert sources == {"mnist", "fashion_mnist"}


def test_a_zero_byte_result_is_not_finished_and_duplicates_run_once(mnist_root, tmp_path):
    from agents.harness.sweep import expand, sweep

    cfg = _sweep_cfg(mnist_root, tmp_path / "s", agents=["er"], memories=[None, "reservoir"], budgets=[20])
    cells, _ = expand(cfg)
    assert len(cells) == 1  # the agent's default memory spelled two ways is one configuration
    [rec] = sweep(cfg, workers=1, log=lambda *_: None)
    path = tmp_path / "s" / rec["dir"].split(str(tmp_path / "s") + "/")[1] / "result.json"
    path.write_text("")  # what a non-atomic writer left behind when killed
    assert not results.is_finished(path.parent, cells[0].config_hash())
    rerun = sweep(cfg, workers=1, log=lambda *_: None)
    assert len(rerun) == 1 and rerun[0]["status"] == "completed"
    assert results.load_result(path).status == "completed"


def test_threads_honour_omp_num_threads_and_the_cpu_affinity(monkeypatch):
    from agents.harness import sweep as sw

    monkeypatch.setattr(sw.local, "available_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert sw.plan_threads(None, 8, log=lambda *_: None) == (4, 1)
    assert sw.plan_threads(2, 8, log=lambda *_: None) == (2, 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert sw.plan_threads(None, 8, log=lambda *_: None) == (2, 2)
    warned: list[str] = []
    assert sw.plan_threads(4, 8, log=warned.append) == (4, 2)
    assert warned and "oversubscribe" in warned[0]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.undo()
    if hasattr(os, "sched_getaffinity"):
        assert sw.available_cores() == len(os.sched_getaffinity(0))


def test_a_killed_worker_is_retried_while_its_sibling_goes_on(mnist_root, tmp_path, monkeypatch,
                                                              kill_after_checkpoint):
    from agents.harness.sweep import sweep

    marker = tmp_path / "killed-once"
    kill_after_checkpoint(f"1;/er-;{marker}")
    logs: list[str] = []
    cfg = _sweep_cfg(mnist_root, tmp_path / "s", agents=["online", "er"], budgets=[20])
    records = sweep(cfg, workers=2, log=logs.append)
    assert marker.exists()  # the ER worker was SIGKILLed after its first task
    assert any("retrying" in line and "SIGKILL" in line for line in logs)
    by_agent = {r["cell"]["agent"]: r for r in records}
    assert by_agent["er"]["status"] == "completed" and by_agent["er"]["attempts"] == 2
    assert by_agent["online"]["status"] == "completed" and by_agent["online"]["attempts"] == 1
    resumed = results.load_result(tmp_path / "s" / by_agent["er"]["dir"].split("/s/", 1)[1] / "result.json")
    assert resumed.data["counters"]["resumes"] == 1
    plain = run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=_stream(mnist_root))
    assert resumed.data["accuracy_matrix"] == plain.accuracy_matrix


def test_a_cell_that_keeps_dying_is_recorded_failed_and_the_sweep_exits_non_zero(mnist_root, tmp_path,
                                                                                  kill_after_checkpoint):
    import yaml

    # retries: 0 and no marker: the ER worker is killed after its first checkpoint, and fails
    kill_after_checkpoint("1;/er-")
    cfg = _sweep_cfg(mnist_root, tmp_path / "s", agents=["online", "er"], budgets=[20], retries=0)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["sweep", str(tmp_path / "c.yaml"), "--workers", "2"]) == 1


# ----------------------------------------------------------------------------- TensorBoard
def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_one_x_axis_resume_purge_and_hparams(mnist_root, tmp_path):
    kw = {"stream_kwargs": _stream(mnist_root, n_tasks=3), "agent": "er", "budget": 20, "log_every": 3}
    run("MNISTRotations-v0", out=tmp_path / "whole", **kw)
    with pytest.raises(KeyboardInterrupt):
        run("MNISTRotations-v0", out=tmp_path / "killed", stop_after_task=0, **kw)
    # what the killed run logged after its checkpoint (here: nothing flushed late) is purged on resume
    run("MNISTRotations-v0", out=tmp_path / "killed", resume=True, **kw)
    whole, resumed = _scalars(tmp_path / "whole"), _scalars(tmp_path / "killed")
    assert set(whole) == set(resumed)
    for tag in ("train/loss", "eval/retained_accuracy", "eval/accuracy/task_0"):
        assert [s for s, _ in resumed[tag]] == [s for s, _ in whole[tag]], tag  # none lost, none doubled
        assert np.allclose([v for _, v in resumed[tag]], [v for _, v in whole[tag]])
    # one x-axis: examples seen; evaluations at each task end (100 examples per task)
    assert [s for s, _ in whole["eval/retained_accuracy"]] == [100, 200, 300]
    assert [s for s, _ in whole["train/loss"]][:2] == [30, 60]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "whole"))
    acc.Reload()
    assert "_hparams_/experiment" in acc.summary_metadata and "_hparams_/session_start_info" in acc.summary_metadata
    plugin = acc.summary_metadata["_hparams_/session_start_info"].plugin_data
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    ssi = HParamsPluginData.FromString(plugin.content).session_start_info
    assert ssi.hparams["agent"].string_value == "er" and ssi.hparams["budget"].number_value == 20
    assert "final/retained_accuracy" in whole and "config/text_summary" in acc.Tags()["tensors"]


def test_heatmap_ticks_are_whole_tasks():
    from agents.harness.logger import accuracy_heatmap

    fig = accuracy_heatmap(np.random.default_rng(0).random((20, 20)))
    ax = fig.axes[0]
    for ticks in (ax.get_xticks(), ax.get_yticks()):
        inside = [t for t in ticks if 0 <= t <= 19]
        assert inside and all(float(t).is_integer() for t in inside)


def test_result_files_are_never_seen_half_written(tmp_path):
    path = tmp_path / "result.json"
    results.write_json_atomic(path, {"v": 0})
    stop = threading.Event()
    bad: list[str] = []

    def reader():
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except (json.JSONDecodeError, FileNotFoundError) as exc:
                bad.append(repr(exc))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(200):
        results.write_json_atomic(path, {"v": i, "pad": "x" * 50_000})
    stop.set()
    t.join()
    assert bad == []


def test_one_configuration_has_one_identity_however_it_is_typed(mnist_root):
    a = results.run_config("SplitMNIST-v0", "lwf", settings={"alpha": 1})
    b = results.run_config("SplitMNIST-v0", "lwf")
    assert a["settings"]["alpha"] == 1.0 and results.config_hash(a) == results.config_hash(b)
    assert results.config_hash(results.run_config("SplitMNIST-v0", "er")) == results.config_hash(
        results.run_config("SplitMNIST-v0", "er", memory="reservoir", budget=200))


def test_a_run_repeated_in_two_directories_counts_once(mnist_root, tmp_path):
    for name in ("a", "b"):
        run("MNISTRotations-v0", agent="online", stream_kwargs=_stream(mnist_root), out=tmp_path / name)
    runs, _ = results.find_results([tmp_path])
    [table] = results.comparison_tables(runs)
    [rec] = table.records
    assert rec["retained_accuracy_n"] == 1 and "duplicate" in rec["notes"]


def test_sweep_streams_axis_varies_the_data_source(mnist_root):
    from agents.harness.sweep import expand

    cells, _ = expand({"envs": ["MNISTRotations-v0"], "agents": ["online"], "seeds": [0, 1],
                       "stream": {"root": str(mnist_root), "n_tasks": 2, "verify": False},
                       "streams": [{"source": "mnist"}, {"source": "fashion_mnist"}]})
    assert len(cells) == 4
    assert {c.config()["stream_kwargs"]["source"] for c in cells} == {"mnist", "fashion_mnist"}
    assert all(c.config()["stream_kwargs"]["n_tasks"] == 2 for c in cells)


@pytest.mark.parametrize("agent,budget", [("online", None), ("er", 20), ("lwf", None)])
def test_every_metric_in_result_json_is_its_accuracy_matrix_through_the_metric_functions(
        agent, budget, mnist_root, tmp_path):
    from cl_env import metrics

    run("MNISTRotations-v0", agent=agent, budget=budget, stream_kwargs=_stream(mnist_root, n_tasks=3),
        out=tmp_path)
    res = json.loads((tmp_path / "result.json").read_text())
    R = res["accuracy_matrix"]
    assert res["retained_accuracy"] == pytest.approx(metrics.retained_accuracy(R), abs=1e-12)
    assert res["backward_transfer"] == pytest.approx(metrics.backward_transfer(R), abs=1e-12)
    assert res["forgetting"] == pytest.approx(metrics.forgetting(R), abs=1e-12)
    assert res["forward_transfer"] == pytest.approx(
        metrics.forward_transfer(R, res["baseline_accuracy"]), abs=1e-12)
    # and the comparison table's BTI is the same function of the same matrix
    [table] = results.comparison_tables([results.load_result(tmp_path / "result.json")])
    assert table.records[0]["bti_mean"] == pytest.approx(metrics.bti(R), abs=1e-12)


def test_evaluation_routes_each_task_to_its_own_masked_head():
    import torch

    from agents.harness.runner import evaluate

    class FirstClassOfTask:
        """Predicts the first class of the task it is told: right only if routed to that task."""

        classes = [(0, 1), (2, 3), (4, 5)]

        def predict(self, x, t):
            out = torch.zeros(len(x), 6)
            out[:, self.classes[t][0]] = 1.0
            return out

    tests = [(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([2 * j, 2 * j, 2 * j, 2 * j + 1]))
             for j in range(3)]
    acc = evaluate(FirstClassOfTask(), tests)
    assert acc.tolist() == [0.75, 0.75, 0.75]  # always task 0's head would give [0.75, 0, 0]


def test_a_loaded_result_reads_its_configuration_back_as_a_run_config(tiny, tmp_path):
    from agents.harness.config import RunConfig

    res = run(out=tmp_path / "r", agent="online", **tiny)
    loaded = results.load_result(tmp_path / "r" / "result.json")
    rc = loaded.run_config
    assert isinstance(rc, RunConfig) and rc.hash == res.config_hash == loaded.data["config_hash"]
    assert rc.agent == "online" and rc.env == "MNISTRotations-v0"
    # a configuration whose field has the wrong type cannot be read back: refused with the file named
    path = tmp_path / "r" / "result.json"
    data = results.read_json(path)
    data["config"]["batch_size"] = "ten"
    data["config_hash"] = results.config_hash(data["config"])
    results.write_json_atomic(path, data)
    with pytest.raises(ValueError, match="result.json.*batch_size"):
        results.load_result(path)


def test_a_result_file_past_the_size_limit_is_left_out_without_reading_it_whole(tmp_path, monkeypatch):
    """A result.json larger than any run writes (or a link to an endless device) is refused with
    its reason after reading at most the limit, never read into memory whole."""
    import os

    from agents.harness.results import files, find_results

    monkeypatch.setattr(files, "MAX_RESULT_BYTES", 1000)
    big = tmp_path / "big"
    big.mkdir()
    (big / "result.json").write_text("{" + " " * 2000 + "}")
    endless = tmp_path / "endless"
    endless.mkdir()
    os.symlink("/dev/zero", endless / "result.json")
    runs, skipped = find_results([tmp_path])
    assert runs == [] and len(skipped) == 2 and all("larger than 1,000 bytes" in s for s in skipped)


def test_an_unwritable_output_is_named_as_given_not_as_its_temporary(tmp_path):
    """An atomic write into a directory that does not exist names the path the user gave, not the
    hidden temporary it would have written first."""
    import pytest

    from agents.harness.results.files import write_text_atomic

    target = tmp_path / "no" / "such" / "t.csv"
    with pytest.raises(OSError) as info:
        write_text_atomic(target, "a,b\n")
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)
