"""Class 6 of issue 31: identity leaks. --checkpoint-every (not part of a run's identity) cannot
change any number: online accuracy is counted exactly. A crafted checkpoint with the right hash but
missing keys or inconsistent counters is refused in one line; a refused pickle never ends in
torch's advice to load it with weights_only=False."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from _robust import copy_run, one_line

from agents.harness.cli import main
from agents.harness.run import checkpoint
from agents.harness.runner import run

RUN = ["run", "MNISTRotations-v0", "--agent", "er", "--budget", "20", "--no-progress"]


def test_checkpoint_every_changes_no_number(stream, tmp_path):
    """Every metric of a run equals the uninterrupted run's, bit for bit, whatever --checkpoint-every."""
    kw = {"agent": "er", "budget": 20, "stream_kwargs": stream, "progress": False}
    plain = run("MNISTRotations-v0", out=tmp_path / "a", **kw)
    for every in (1, 3, 7):
        other = run("MNISTRotations-v0", out=tmp_path / f"e{every}", checkpoint_every=every, **kw)
        assert other.config_hash == plain.config_hash
        for key in ("online_accuracy", "retained_accuracy", "accuracy_matrix", "forgetting", "backward_transfer"):
            assert getattr(other, key) == getattr(plain, key), (every, key)
    # exact: a fraction of the examples seen (20 steps of 10)
    assert plain.online_accuracy * 200 == pytest.approx(round(plain.online_accuracy * 200), abs=1e-9)


def _pop(key):
    def edit(s):
        del s[key]
    return edit


def _put(key, value):
    def edit(s):
        s[key] = value(s) if callable(value) else value
    return edit


# (case, edit of the decoded checkpoint state, words of the one line)
CASES = [
    ("no agent state", _pop("agent"), "missing keys ['agent']"),
    ("no step counter", _pop("steps"), "missing keys ['steps']"),
    ("no correct count", _pop("correct"), "missing keys ['correct']"),
    ("steps beyond the stream", _put("steps", 10**6), "steps is 1000000, expected an integer in [0, 20]"),
    ("negative steps", _put("steps", -1), "steps is -1"),
    ("steps as a float", _put("steps", 10.0), "steps is 10.0"),
    ("online accuracy above 100 %", _put("correct", lambda s: s["steps"] * 10 + 1), "correct is 101"),
    ("negative elapsed", _put("elapsed", -5.0), "elapsed is not a non-negative number"),
    ("NaN elapsed", _put("elapsed", float("nan")), "elapsed is not"),
    ("matrix of another shape", _put("R", np.zeros((3, 3))), "R is (3, 3), expected a float array of shape (2, 2)"),
    ("matrix not an array", _put("R", [[0.5]]), "R is list"),
    ("baseline missing tasks", _put("baseline", np.zeros(1)), "baseline is (1,)"),
    ("an accuracy above 100 %", _put("R", lambda s: np.where(np.isnan(s["R"]), s["R"], 5.0)),
     "R holds accuracies outside [0, 1]"),
    ("a negative baseline", _put("baseline", lambda s: -np.ones_like(s["baseline"])), "baseline holds accuracies"),
    ("a measured row with a hole", _put("R", lambda s: np.array([[0.5, np.nan], [np.nan, np.nan]])),
     "R row 0 is partly measured"),
    ("agent state of another agent", _put("agent", {"unrelated": 1}), "does not fit this agent"),
    ("agent state not a mapping", _put("agent", [1, 2]), "gen_log and agent must be mappings"),
    ("resumes negative", _put("resumes", -3), "resumes is -3"),
]


@pytest.mark.parametrize("case,edit,words", CASES, ids=[c[0] for c in CASES])
def test_a_crafted_checkpoint_with_the_right_hash_is_refused_in_one_line(interrupted_run, tmp_path, capsys,
                                                                        cli_stream, case, edit, words):
    out = copy_run(interrupted_run, tmp_path / "run")
    state = checkpoint.load(out / "checkpoint.pt")
    edit(state)
    checkpoint.save(state, out / "checkpoint.pt")  # the right config_hash, kept
    code = main([*RUN, *cli_stream, "--out", str(out), "--resume"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and words in line and "--overwrite" in line, line
    assert not (out / "result.json").exists()


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_pickle_payload_is_refused_without_torchs_advice(interrupted_run, tmp_path, capsys, cli_stream, protocol):
    out = copy_run(interrupted_run, tmp_path / "run")
    (out / "checkpoint.pt").write_bytes(pickle.dumps({"agent": _Payload(tmp_path / "ran")}, protocol=protocol))
    code = main([*RUN, *cli_stream, "--out", str(out), "--resume"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and not (tmp_path / "ran").exists()
    assert "weights_only" not in line and "trusted source" not in line
    assert line.rstrip().endswith("and run again")


def test_a_torch_saved_payload_is_refused_naming_the_global(interrupted_run, tmp_path, capsys, cli_stream):
    out = copy_run(interrupted_run, tmp_path / "run")
    torch.save({"agent": _Payload(tmp_path / "ran")}, out / "checkpoint.pt")
    code = main([*RUN, *cli_stream, "--out", str(out), "--resume"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "refused to call" in line and "weights_only" not in line
    assert not (tmp_path / "ran").exists()
