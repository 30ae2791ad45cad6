"""Class 2 of issue 31: operating-system errors end in one line naming the path and the cause —
exit 2 for a path the user can fix, 74 (EX_IOERR) for the machine's failures (disk full, file-size
limit) — never a traceback, and nothing half-written: the checkpoint writer removes its temporary
and a failed save leaves the previous checkpoint intact."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch
from _robust import one_line

from agents.harness.cli import ENVIRONMENT_EXIT, main
from agents.harness.run import checkpoint

RUN = ["run", "MNISTRotations-v0", "--agent", "er", "--budget", "20", "--no-progress"]


def _file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("not a directory")
    return f


# (case, the path passed as --out, words of the line)
OUTS = [
    ("--out is a file", lambda p: _file(p), "File exists"),
    ("--out under a file", lambda p: _file(p) / "run", "Not a directory"),
    ("--out name too long", lambda p: p / ("x" * 300), "File name too long"),
]


@pytest.mark.parametrize("case,out,words", OUTS, ids=[c[0] for c in OUTS])
def test_unusable_out_is_one_line_exit_2(tmp_path, capsys, cli_stream, case, out, words):
    path = out(tmp_path)
    code = main([*RUN, *cli_stream, "--out", str(path)])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and words in line and str(path)[:40] in line


def test_out_on_a_read_only_filesystem(tmpfs, capsys, cli_stream):
    ro = tmpfs("64k", read_only=True)
    code = main([*RUN, *cli_stream, "--out", str(ro / "run")])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "Read-only file system" in line and str(ro) in line


def test_sweep_config_that_is_a_directory(tmp_path, capsys):
    d = tmp_path / "grid.yaml"
    d.mkdir()
    code = main(["sweep", str(d)])
    assert code == 2 and "Is a directory" in one_line(capsys.readouterr().err)


def test_missing_sweep_config(tmp_path, capsys):
    code = main(["sweep", str(tmp_path / "nope.yaml")])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and "nope.yaml" in line and "sweep config does not exist" in line


def test_sweep_out_that_is_a_file(tmp_path, capsys, stream):
    import yaml

    cfg = tmp_path / "grid.yaml"
    cfg.write_text(yaml.safe_dump({"out": str(_file(tmp_path)), "envs": ["MNISTRotations-v0"], "agents": ["er"],
                                   "budgets": [20], "stream": stream}))
    code = main(["sweep", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and "a_file" in one_line(err) and "File exists" in err


@pytest.mark.parametrize("flag", ["--csv", "--plot"])
def test_compare_into_a_missing_directory(finished_run, tmp_path, capsys, flag):
    target = tmp_path / "missing" / ("t.csv" if flag == "--csv" else "t.png")
    code = main(["compare", str(finished_run), flag, str(target)])
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert code == 2 and "No such file or directory" in line and "missing" in line
    assert "retained acc" in captured.out  # the table itself was printed
    assert not list((tmp_path).glob("**/.t.*"))  # no temporary left


def _state(n: int) -> dict:
    return {"weights": torch.arange(n, dtype=torch.float32), "R": np.zeros((2, 2))}


def _no_temporaries(d) -> bool:
    return not [p for p in os.listdir(d) if p.endswith(".tmp")]


def test_a_failed_checkpoint_on_a_full_disk_keeps_the_previous_one(tmpfs):
    fs = tmpfs("256k")
    path = fs / "checkpoint.pt"
    checkpoint.save(_state(1000), path)
    with pytest.raises(OSError) as info:
        checkpoint.save(_state(200_000), path)  # 800 kB: does not fit
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    assert torch.equal(checkpoint.load(path)["weights"], torch.arange(1000, dtype=torch.float32))
    assert _no_temporaries(fs)


def test_a_failed_checkpoint_at_a_file_size_limit_keeps_the_previous_one(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(_state(1000), path)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # Python ignores SIGXFSZ: writes fail EFBIG
    try:
        with pytest.raises(OSError) as info:
            checkpoint.save(_state(200_000), path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert info.value.errno == errno.EFBIG
    assert torch.equal(checkpoint.load(path)["weights"], torch.arange(1000, dtype=torch.float32))
    assert _no_temporaries(tmp_path)


def _cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "agents.harness.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, **kw)


@pytest.mark.parametrize("size,what", [("4k", "before the start"), ("200k", "during the run")])
def test_a_full_disk_is_one_line_and_the_environment_exit_code(tmpfs, cli_stream, size, what):
    """A real process (so a writer thread's failure would show too): config.json (4 kB disk) or the
    first checkpoint (200 kB) does not fit."""
    fs = tmpfs(size)
    done = _cli([*RUN, *cli_stream, "--out", str(fs / "run")])
    line = one_line(done.stderr)
    assert done.returncode == ENVIRONMENT_EXIT, done.stderr
    assert "No space left on device" in line and str(fs) in line
    left = os.listdir(fs / "run") if (fs / "run").exists() else []
    assert not [f for f in left if f.endswith(".tmp") or f == ".cl-env.lock" or f == "result.json"], left


def test_a_file_size_limit_is_one_line_and_the_environment_exit_code(tmp_path, cli_stream):
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = _cli([*RUN, *cli_stream, "--out", str(tmp_path / "run")], preexec_fn=limit)
    line = one_line(done.stderr)
    assert done.returncode == ENVIRONMENT_EXIT, done.stderr
    assert "File too large" in line and "ulimit" in line
    assert not [f for f in os.listdir(tmp_path / "run") if f.endswith(".tmp") or f == ".cl-env.lock"]


def test_a_full_disk_while_writing_result_json_keeps_the_checkpoint(tmp_path, capsys, cli_stream, monkeypatch):
    """The disk fills up exactly when result.json is written (the last write of a run): one line,
    exit 74, no temporary, and the checkpoint is kept so --resume finishes the run."""
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and ".result.json." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    out = tmp_path / "run"
    monkeypatch.setattr(os, "fsync", fsync)
    code = main([*RUN, *cli_stream, "--out", str(out)])
    line = one_line(capsys.readouterr().err)
    assert code == ENVIRONMENT_EXIT and "No space left on device" in line and "result.json" in line
    assert not (out / "result.json").exists() and (out / "checkpoint.pt").exists() and _no_temporaries(out)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main([*RUN, *cli_stream, "--out", str(out), "--resume"]) == 0
    assert (out / "result.json").exists()
