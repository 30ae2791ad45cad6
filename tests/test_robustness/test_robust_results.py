"""Class 1 of issue 31: a result is never trusted without being checked. Every result.json is
validated on load against one schema (types, ranges, config_hash against its config, top-level
identity against the config, summary metrics against the accuracy matrix); a file that fails is
named on stderr with the reason and left out, and the rest of the table is printed — by compare,
report and sweep alike."""

from __future__ import annotations

import json

import pytest
from _robust import copy_run

from agents.harness import results
from agents.harness.cli import main


def _edit_lr(d):
    d["config"]["settings"]["lr"] = 0.5  # the configuration edited, its hash kept


def _set(key, value):
    def edit(d):
        d[key] = value
    return edit


def _deep_config(d):
    inner: dict = {}
    d["config"]["settings"]["nested"] = inner
    for _ in range(60):
        inner["x"] = {}
        inner = inner["x"]


def _raw(text: str):
    return text


# (case, edit of the parsed result.json or raw text, words the one stderr line must hold)
CASES = [
    ("config edited, hash kept", _edit_lr, "not the hash of its config"),
    ("agent relabelled", _set("agent", "gem"), "agent is 'gem' but its config says 'er'"),
    ("seed relabelled", _set("seed", 7), "seed is 7 but its config says 0"),
    ("memory relabelled", _set("memory", "task_ring"), "memory is 'task_ring'"),
    ("retained accuracy in percent", _set("retained_accuracy", 57.0), "retained_accuracy is 57.0, expected a fraction"),
    ("retained accuracy off its matrix", _set("retained_accuracy", 0.999), "disagrees with its accuracy_matrix"),
    ("forgetting off its matrix", _set("forgetting", 0.5), "forgetting 0.5 disagrees"),
    ("backward transfer out of range", _set("backward_transfer", -3.0), "backward_transfer is -3.0"),
    ("seed as a string", _set("seed", "0"), "seed is '0', expected an integer"),
    ("null seed", _set("seed", None), "seed is None, expected an integer"),
    ("matrix of strings", _set("accuracy_matrix", [["a", "b"], ["c", "d"]]), "accuracy_matrix[0][0] is 'a'"),
    ("matrix not a list", _set("accuracy_matrix", "0.5"), "accuracy_matrix is not a list of rows"),
    ("string where a mapping belongs", _set("data", "mnist"), "data is 'mnist', expected a mapping"),
    ("config a string", _set("config", "er"), "'config' is not an object"),
    ("negative storage", _set("storage_bits", -5), "storage_bits is -5"),
    ("storage as a float string", _set("storage_bits", "1e9"), "storage_bits is '1e9'"),
    ("wall time as text", _set("wall_time_s", "fast"), "wall_time_s is 'fast'"),
    ("warnings of numbers", _set("warnings", [1, 2]), "warnings is not a list of strings"),
    ("unknown status", _set("status", "done"), "unknown status 'done'"),
    ("bad hash text", _set("config_hash", "x" * 5000), "config_hash is 'xxxx"),
    ("deep config", _deep_config, "nested more than 32 levels"),
    ("deep JSON", "[" * 200_000 + "]" * 200_000, "JSON nested too deeply"),
    ("deep JSON object", '{"a":' * 200_000 + "1" + "}" * 200_000, "JSON nested too deeply"),
]


def _write_bad(src, dst, edit):
    run_dir = copy_run(src, dst)
    path = run_dir / "result.json"
    if isinstance(edit, str):
        path.write_text(edit)
    else:
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("case,edit,words", CASES, ids=[c[0] for c in CASES])
def test_a_bad_result_is_named_and_left_out_and_the_rest_is_printed(finished_run, tmp_path, capsys, case, edit,
                                                                    words):
    bad = _write_bad(finished_run, tmp_path / "bad", edit)
    code = main(["compare", str(finished_run), str(tmp_path / "bad"), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and words in lines[0], lines
    assert len(lines[0]) < 600  # never the whole of a huge value
    out = json.loads(captured.out)
    runs = [r for t in out["tables"] for rec in t["records"] for r in rec["runs"]]
    assert runs == [str(finished_run / "result.json")]  # the good one, alone: nothing merged with the bad one
    assert len(out["skipped"]) == 1


def test_the_untouched_result_passes_the_schema(finished_run):
    run = results.load_result(finished_run / "result.json")
    assert run.data["config_hash"] == results.config_hash(run.config)


def test_a_sweep_does_not_count_an_edited_result_as_finished(finished_run, tmp_path):
    """The same loader decides a sweep cell's status: an edited result is not finished."""
    good = results.load_result(finished_run / "result.json").data["config_hash"]
    assert results.is_finished(finished_run, good)
    _write_bad(finished_run, tmp_path / "bad", _set("retained_accuracy", 57.0))
    assert not results.is_finished(tmp_path / "bad", good)


def test_report_leaves_out_a_bad_result_and_names_it(finished_run, tmp_path, capsys):
    root = tmp_path / "runs"
    copy_run(finished_run, root / "good")
    _write_bad(finished_run, root / "bad", _set("seed", None))
    code = main(["report", str(root)])
    assert code == 0
    page = (root / "report.html").read_text()
    assert "seed is None" in page and "good" in page
