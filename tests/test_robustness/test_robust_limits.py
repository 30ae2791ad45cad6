"""Class 4 of issue 31: every numeric option has a documented range, checked in one place
(agents/harness/limits.py, called where the run configuration is resolved); values that cannot be
honoured are refused with the range before any data is loaded; an int too large for a float never
breaks the checker; arithmetic overflow during training is recorded as divergence (exit 3)."""

from __future__ import annotations

import pytest
from _robust import one_line

from agents.harness import limits, results
from agents.harness.cli import DIVERGED_EXIT, main
from agents.harness.runner import run
from agents.replay import ExperienceReplay
from cl_env.checks import InvalidValueError

RUN = ["run", "MNISTRotations-v0", "--agent", "er", "--no-progress"]

# (case, extra CLI words, words of the one line)
CLI_CASES = [
    ("huge lr", ["--set", "lr=1e31"], "settings.lr: got 1e+31"),
    ("replay batch of a billion", ["--set", "replay_batch=1000000000"], "settings.replay_batch"),
    ("huge batch size", ["--batch-size", "1000000"], "batch_size: got 1000000"),
    ("huge budget", ["--budget", "1e12"], "budget: got 1000000000000.0 (float), expected a finite number in (0, 1e+08]"),
    ("a stream of 100,000 tasks", ["--stream", "n_tasks=100000"], "stream_kwargs.n_tasks"),
    ("huge train_per_task", ["--stream", "train_per_task=1000000000000"], "train_per_task"),
    ("stream seed beyond 32 bits", ["--stream", "seed=1099511627776"], "stream_kwargs.seed"),
    ("a buffer of a trillion slots", ["--items", "1000000000000"], "expected at most 20,000 items"),
    ("a buffer size spelt as a memory option", ["--set", "memory.capacity=1000000000000"], "write --items"),
    ("a billion seeds", ["--seeds", "0-4000000000", "--out", "OUT"], "at most 1000 seeds"),
    ("a seed beyond 32 bits", ["--seeds", "0-2,99999999999", "--out", "OUT"], "--seeds"),
    ("a budget holding no item", ["--budget", "0.5"], "holds at least one item"),
    ("SplitMNIST beyond its data", ["--stream", "train_per_class=100000"], "at most 400"),
]


@pytest.mark.parametrize("case,words,expected", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_out_of_range_values_are_refused_in_one_line(tmp_path, capsys, case, words, expected):
    words = [str(tmp_path / "out") if w == "OUT" else w for w in words]
    argv = [*RUN, *words] if "train_per_class=100000" not in words else ["run", "SplitMNIST-v0", "--agent", "er",
                                                                        "--no-progress", *words]
    code = main(argv)
    line = one_line(capsys.readouterr().err)
    assert code == 2 and expected in line, line
    assert len(line) < 500


HUGE = 10**400  # what YAML or the Python API can pass: no float holds it


@pytest.mark.parametrize("kwargs", [
    {"settings": {"lr": HUGE}}, {"budget": HUGE}, {"seed": HUGE}, {"batch_size": HUGE},
    {"settings": {"memory.capacity": HUGE}}, {"stream_kwargs": {"n_tasks": HUGE}}, {"settings": {"lam": HUGE}},
], ids=lambda k: str(list(k.items())[0][0]))
def test_ints_too_large_for_a_float_are_refused_not_an_overflow(kwargs):
    agent = "ewc" if "lam" in str(kwargs) else "er"
    with pytest.raises(InvalidValueError) as info:
        results.run_config("MNISTRotations-v0", agent, **kwargs)
    assert len(str(info.value)) < 400


def test_a_sweep_budget_too_large_for_a_float_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "grid.toml"
    cfg.write_text(f'envs = ["MNISTRotations-v0"]\nagents = ["er"]\nbudgets = [{HUGE}]\n')
    code = main(["sweep", str(cfg), "--dry-run"])
    assert code == 2 and "budgets" in one_line(capsys.readouterr().err)


def test_every_range_is_documented():
    text = open("docs/concepts.md").read()
    for section, keys in limits.TABLE.items():
        for key in keys:
            assert f"`{key}`" in text, f"{section}.{key} is not in docs/concepts.md's ranges"


def test_a_large_finite_lr_diverges_with_exit_3(capsys, cli_stream):
    code = main([*RUN, "--budget", "20", *cli_stream, "--set", "lr=1e30"])
    assert code == DIVERGED_EXIT and "DIVERGED" in capsys.readouterr().err


def test_arithmetic_overflow_in_a_step_is_recorded_as_divergence(stream, monkeypatch, tmp_path):
    """torch's "value cannot be converted to type float without overflow" (a finite factor too large
    for float32, from any setting) stops the run as diverged, not as a traceback."""
    def overflow(self, obs, y):
        raise RuntimeError("value cannot be converted to type float without overflow")

    monkeypatch.setattr(ExperienceReplay, "observe", overflow)
    r = run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=stream, out=tmp_path / "run", progress=False)
    assert r.status == "diverged" and "arithmetic overflow" in r.divergence["reason"]
    assert r.divergence["step"] == 1 and results.load_result(tmp_path / "run" / "result.json").status == "diverged"
