"""Class 5 of issue 31: YAML bombs and oversized values. A sweep document's size (bytes, nodes with
aliases expanded, depth, aliases) is checked before it is used, within a time limit; messages
never render a whole user value; an unknown memory in a sweep is an error with did-you-mean."""

from __future__ import annotations

import contextlib
import signal
import time

import pytest
from _robust import one_line

from agents.harness.cli import main
from cl_env import checks


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging the suite) if the body runs longer than ``seconds``."""
    def stop(signum, frame):
        raise TimeoutError(f"took longer than {seconds} s")

    before = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def _laughs(levels: int = 9, fanout: int = 10) -> str:
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + f"\nenvs: [MNISTRotations-v0]\nagents: [er]\nsettings: [{{x: *a{levels}}}]\n"


def _shared_laughs(levels: int = 8) -> str:
    """The bomb inside a value the checker must render: a billion-element list under one key."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines)


# (case, document, words of the one line)
DOCS = [
    ("billion laughs", _laughs(), "too large"),
    ("laughs inside a checked key", "envs: [MNISTRotations-v0]\nagents: [er]\n" + _shared_laughs()
     .replace("a0: &a0", "x0: &a0", 1) + "\nseeds: *a8\n", "too large"),
    ("many aliases", "a: &a 1\nenvs: [MNISTRotations-v0]\nagents: [er]\nseeds: [" + ", ".join(["*a"] * 500) + "]\n",
     "more than 100 aliases"),
    ("deep nesting", "envs: [MNISTRotations-v0]\nagents: [er]\nsettings: " + "[" * 200 + "]" * 200 + "\n",
     "nested more than 20 levels"),
    ("huge document", "envs: [MNISTRotations-v0]\nagents: [er]\nseeds: [" + ", ".join(["0"] * 400_000) + "]\n",
     "more than 1,000,000 bytes"),
    ("a huge string value", "envs: [MNISTRotations-v0]\nagents: [er]\nseeds: [" + "x" * 500_000 + "]\n", "seeds"),
    ("a huge unknown key", "envs: [MNISTRotations-v0]\nagents: [er]\n" + "k" * 1000 + ": 1\n", "unknown keys"),
    ("a huge env id", "envs: [" + "E" * 500_000 + "]\nagents: [er]\n", "unknown"),
    ("misspelt memory", "envs: [MNISTRotations-v0]\nagents: [er]\nmemories: [reservior]\n",
     "Did you mean 'reservoir'"),
    ("a memory name of a billion characters", "envs: [MNISTRotations-v0]\nagents: [er]\nmemories: [" + "m" * 900_000
     + "]\n", "unknown memory"),
]


@pytest.mark.parametrize("case,doc,words", DOCS, ids=[d[0] for d in DOCS])
def test_a_hostile_sweep_document_is_one_line_within_seconds(tmp_path, capsys, case, doc, words):
    path = tmp_path / "grid.yaml"
    path.write_text(doc)
    started = time.perf_counter()
    with time_limit(20):
        code = main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    seconds = time.perf_counter() - started
    line = one_line(capsys.readouterr().err)
    assert code == 2 and words in line, line
    assert len(line) < 1000 and seconds < 10
    assert not (tmp_path / "out").exists()  # nothing written from it


def test_a_deep_toml_document_is_refused(tmp_path, capsys):
    path = tmp_path / "grid.toml"
    path.write_text('envs = ["MNISTRotations-v0"]\nagents = ["er"]\nsettings = ' + "[" * 100 + "]" * 100 + "\n")
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert "nested more than 20 levels" in one_line(capsys.readouterr().err)


def test_a_misspelt_memory_is_an_error_not_a_skipped_cell(tmp_path, capsys, stream):
    from agents.harness.sweep import sweep

    cfg = {"out": str(tmp_path / "s"), "envs": ["MNISTRotations-v0"], "agents": ["er"], "memories": ["reservior"],
           "budgets": [20], "stream": stream}
    with pytest.raises(KeyError, match="Did you mean 'reservoir'"):
        sweep(cfg, log=lambda *_: None)
    assert not (tmp_path / "s").exists()


def test_rendering_a_shared_billion_element_value_is_bounded():
    """The checker renders a part of a value, never all of it (a YAML bomb builds exactly this)."""
    x: list = ["lol"] * 10
    for _ in range(9):
        x = [x] * 10
    with time_limit(5):
        text = checks.shown(x)
        err = checks.fail("seeds", x, "integers")
    assert len(text) <= 60 and len(str(err)) < 200
