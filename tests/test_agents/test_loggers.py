"""The scalar loggers besides TensorBoard: CSV, JSON lines and stdout (Stable-Baselines3's
writers), their files, and a resumed run's files equal to an uninterrupted run's."""

from __future__ import annotations

import csv
import json

import pytest

from agents.harness.cli import main
from agents.harness.logger import parse_formats
from agents.harness.runner import run
from cl_env.error import CLEnvError


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_jsonl_and_stdout_hold_every_scalar(tiny, tmp_path, capsys):
    r = run(agent="er", budget=20, seed=0, out=tmp_path, log="tensorboard,csv,jsonl,stdout", log_every=5, **tiny)
    rows = _rows(tmp_path / "progress.jsonl")
    evals = [row for row in rows if "eval/retained_accuracy" in row]
    assert len(evals) == 2 and evals[-1]["eval/retained_accuracy"] == pytest.approx(r.retained_accuracy)
    assert all("examples" in row for row in rows) and any("train/loss" in row for row in rows)
    with (tmp_path / "progress.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows) and "eval/retained_accuracy" in table[0] and "examples" in table[0]
    assert float([t for t in table if t["eval/retained_accuracy"]][-1]["eval/retained_accuracy"]) == \
        pytest.approx(r.retained_accuracy)
    out = capsys.readouterr().out
    assert "retained_accuracy" in out and "| examples" in out  # SB3 groups the tags by prefix
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())


def test_only_the_formats_asked_for(tiny, tmp_path):
    run(agent="online", seed=0, out=tmp_path, log=["jsonl"], **tiny)
    names = {p.name for p in tmp_path.iterdir()}
    assert "progress.jsonl" in names and "progress.csv" not in names
    assert not any(n.startswith("events.out.tfevents") for n in names)
    assert parse_formats(None) == ("tensorboard",) and parse_formats("csv, csv,jsonl") == ("csv", "jsonl")
    with pytest.raises(CLEnvError, match="log"):
        parse_formats("tensorbored")


def test_a_resumed_run_logs_what_an_uninterrupted_one_does(tiny, tmp_path):
    whole = tmp_path / "whole"
    run(agent="er", budget=20, seed=1, out=whole, log="csv,jsonl", log_every=5, **tiny)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        run(agent="er", budget=20, seed=1, out=part, log="csv,jsonl", log_every=5, stop_after_task=0, **tiny)
    run(agent="er", budget=20, seed=1, out=part, log="csv,jsonl", log_every=5, resume=True, **tiny)
    assert _rows(part / "progress.jsonl") == _rows(whole / "progress.jsonl")
    assert (part / "progress.csv").read_text() == (whole / "progress.csv").read_text()


def test_cli_log_option(mnist_root, tmp_path, capsys):
    stream = ["source=mnist", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2", "train_per_task=50"]
    assert main(["run", "MNISTRotations-v0", "--log", "csv", "--stream", *stream, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "progress.csv").exists()
    assert main(["run", "MNISTRotations-v0", "--log", "tensorbored", "--stream", *stream]) == 2
    assert "log" in capsys.readouterr().err


def test_wandb_without_the_extra_is_one_clear_line(mnist_root, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    stream = ["source=mnist", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2", "train_per_task=50"]
    assert main(["run", "MNISTRotations-v0", "--log", "csv,wandb", "--stream", *stream]) == 2
    err = capsys.readouterr().err
    assert "wandb" in err and "pip install -e '.[wandb]'" in err and "Traceback" not in err


def _wandb_records(run_dir):
    """The records of an offline W&B run: its ``run-<id>.wandb`` file is LevelDB's log format
    (a 7-byte ``:W&B`` header, then 32 KiB blocks of CRC / length / type chunks) holding
    ``wandb_internal_pb2.Record`` messages; wandb >= 0.20 ships no Python reader for it."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data = path.read_bytes()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1
    pos, parts, records = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            records.append(pb.Record.FromString(parts))
            parts = b""
    out = {"history": [], "config": {}, "summary": {}, "run_id": None}
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "summary":
            out["summary"].update({i.key: json.loads(i.value_json) for i in rec.summary.update if i.key})
        elif kind == "run":
            out["run_id"] = rec.run.run_id
    return out


@pytest.fixture
def wandb_offline(monkeypatch):
    pytest.importorskip("wandb", reason="the [wandb] extra is not installed (pip install -e '.[wandb]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "cl-env-tests")


def test_wandb_offline_holds_every_scalar_the_config_and_the_status(wandb_offline, tiny, tmp_path):
    r = run(agent="er", budget=20, seed=0, out=tmp_path, log="wandb,jsonl", log_every=5, **tiny)
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    rec = _wandb_records(run_dir)
    assert rec["run_id"] == (tmp_path / "wandb-run-id").read_text()
    by_step = {}
    for row in rec["history"]:
        by_step.setdefault(row["_step"], {}).update({k: v for k, v in row.items() if not k.startswith("_")})
    jsonl = {}
    for row in _rows(tmp_path / "progress.jsonl"):
        jsonl.setdefault(row["examples"], {}).update({k: v for k, v in row.items() if k != "examples"})
    assert set(by_step) == set(jsonl)  # one W&B step per x-axis value, the examples seen
    for step, values in jsonl.items():
        assert by_step[step] == pytest.approx(values), step
    assert by_step[max(by_step)]["final/retained_accuracy"] == pytest.approx(r.retained_accuracy)
    assert rec["config"]["agent"] == "er" and rec["config"]["memory"] == "reservoir"
    assert rec["summary"]["status"] == "completed"


def test_a_resumed_run_continues_its_wandb_run(wandb_offline, tiny, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(agent="er", budget=20, seed=1, out=tmp_path, log="wandb", stop_after_task=0, **tiny)
    first = (tmp_path / "wandb-run-id").read_text()
    run(agent="er", budget=20, seed=1, out=tmp_path, log="wandb", resume=True, **tiny)
    assert (tmp_path / "wandb-run-id").read_text() == first
    ids = {_wandb_records(d)["run_id"] for d in (tmp_path / "wandb").glob("offline-run-*")}
    assert ids == {first}


def test_csv_columns_do_not_depend_on_the_hash_seed(tiny, tmp_path):
    """Two processes with different PYTHONHASHSEED write the same CSV (SB3's own writer orders
    new columns by a set difference)."""
    import os
    import subprocess
    import sys

    code = ("import sys, json; from agents.harness.runner import run; kw = json.loads(sys.argv[2]); "
            "run(agent='er', budget=20, seed=0, out=sys.argv[1], log='csv', log_every=5, **kw)")
    texts = []
    for seed in ("1", "2"):
        out = tmp_path / f"h{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", code, str(out), json.dumps(tiny, default=str)], check=True, env=env,
                       capture_output=True)
        texts.append((out / "progress.csv").read_text().splitlines()[0])
    assert texts[0] == texts[1] and texts[0].startswith("examples,")


def test_a_resumed_sessions_event_file_sorts_after_the_killed_ones(tmp_path):
    """TensorBoard reads event files in name order; names start with the second they were made."""
    import time

    from agents.harness.logger import Logger

    first = Logger(tmp_path, formats=("tensorboard",))
    first.scalars({"x": 1.0}, 10)
    first.close()
    stamp = int(time.time()) + 1  # an existing file from the next second: the resume must wait it out
    (tmp_path / f"events.out.tfevents.{stamp}.host.1.99").write_bytes(b"")
    resumed = Logger(tmp_path, purge_step=11, formats=("tensorboard",))
    resumed.scalars({"x": 2.0}, 20)
    resumed.close()
    names = sorted(p.name for p in tmp_path.glob("events.out.tfevents.*"))
    assert int(names[-1].split(".")[3]) > stamp
