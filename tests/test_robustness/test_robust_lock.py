"""Class 3 of issue 31: a run directory holds one run. An exclusive lock is taken before anything
is written; a second process (or --resume of a live run) is refused with one line naming the
running pid; the lock is released however a run ends, and a stale lock of a dead process is
taken over."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from _robust import copy_run, one_line

from agents.harness import lock as lockmod
from agents.harness.cli import main
from agents.harness.lock import LOCK_FILE, RunLock
from agents.harness.runner import run

RUN = ["run", "MNISTRotations-v0", "--agent", "er", "--budget", "20", "--no-progress"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_two_processes_into_one_directory(tmp_path, mnist_root, stream):
    """Two real processes, two configurations, one --out: the second is refused with the first's
    pid while the first runs, and the directory holds the first's run alone. The first holds at
    its first checkpoint (``on_checkpoint``) until the second has been answered, so they overlap."""
    out, marker = tmp_path / "run", tmp_path / "go-on"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    script = (f"import pathlib, time\nfrom agents.harness.runner import run\n"
              f"marker = pathlib.Path({str(marker)!r})\n"
              f"def hold(out, steps):\n    while not marker.exists():\n        time.sleep(0.02)\n"
              f"run('MNISTRotations-v0', agent='er', budget=20, stream_kwargs={stream!r}, out={str(out)!r}, "
              f"progress=False, on_checkpoint=hold)\n")
    first = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        second = subprocess.run([sys.executable, "-m", "agents.harness.cli", *RUN, "--stream", "source=mnist",
                                 "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2", "train_per_task=100",
                                 "--set", "lr=0.05", "--out", str(out)], env=env, capture_output=True, text=True,
                                timeout=120)
        marker.write_text("")
        _, first_err = first.communicate(timeout=120)
    finally:
        marker.write_text("")
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, first_err
    line = one_line(second.stderr)
    assert second.returncode == 2 and f"pid {first.pid}" in line and "in use by another cl-env run" in line
    cfg = json.loads((out / "config.json").read_text())["config"]
    res = json.loads((out / "result.json").read_text())
    assert cfg["settings"]["lr"] == 0.1 and res["config"]["settings"]["lr"] == 0.1 and res["status"] == "completed"
    assert not (out / LOCK_FILE).exists()


def test_resume_of_a_live_run_is_refused(interrupted_run, tmp_path, capsys, cli_stream):
    out = copy_run(interrupted_run, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with RunLock(out):  # a live holder: this very process, through another open file
        code = main([*RUN, *cli_stream, "--out", str(out), "--resume"])
    line = one_line(capsys.readouterr().err)
    assert code == 2 and f"pid {os.getpid()}" in line and socket.gethostname() in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # nothing written


def test_overwrite_of_a_live_run_deletes_nothing(finished_run, tmp_path, capsys, cli_stream):
    out = copy_run(finished_run, tmp_path / "run")
    with RunLock(out):
        code = main([*RUN, *cli_stream, "--out", str(out), "--overwrite"])
    assert code == 2 and "in use" in one_line(capsys.readouterr().err)
    assert (out / "result.json").exists() and (out / "config.json").exists()


STALE = [
    ("dead pid of this host", lambda: {"pid": _dead_pid(), "host": socket.gethostname()}),
    ("garbage", lambda: "not json at all"),
    ("empty", lambda: ""),
]


@pytest.mark.parametrize("case,owner", STALE, ids=[c[0] for c in STALE])
def test_a_stale_lock_is_taken_over(tmp_path, stream, case, owner):
    out = tmp_path / "run"
    out.mkdir()
    content = owner()
    (out / LOCK_FILE).write_text(content if isinstance(content, str) else json.dumps(content))
    r = run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=stream, out=out, progress=False)
    assert r.status == "completed" and not (out / LOCK_FILE).exists()


def test_the_lock_is_released_however_the_run_ends(tmp_path, stream):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # stopped (as if killed by Ctrl-C) after the first task
        run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=stream, out=out, stop_after_task=0,
            progress=False)
    assert not (out / LOCK_FILE).exists()
    with pytest.raises(ValueError):  # refused: same configuration without --resume
        run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=stream, out=out, progress=False)
    assert not (out / LOCK_FILE).exists()
    r = run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=stream, out=out, resume=True, progress=False)
    assert r.status == "completed" and not (out / LOCK_FILE).exists()


def test_a_refused_run_leaves_no_directory_behind(tmp_path, stream):
    out = tmp_path / "new"
    with pytest.raises(ValueError, match="nothing to resume"):
        run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=stream, out=out, resume=True, progress=False)
    assert not out.exists()


def _no_flock(fd, op):
    raise OSError(errno.ENOLCK, "No locks available")


def test_without_flock_the_recorded_pid_and_host_decide(tmp_path, monkeypatch):
    """On a filesystem that cannot flock: a live pid of this host holds the directory, a dead one
    (or a reused pid with another start time) does not."""
    monkeypatch.setattr(fcntl, "flock", _no_flock)
    out = tmp_path / "run"
    out.mkdir()
    host = socket.gethostname()
    parent = os.getppid()
    (out / LOCK_FILE).write_text(json.dumps({"pid": parent, "host": host,
                                             "start_time": lockmod._start_time(parent)}))
    with pytest.raises(ValueError, match=f"pid {parent} on host"):
        RunLock(out).acquire()
    (out / LOCK_FILE).write_text(json.dumps({"pid": parent, "host": host, "start_time": "1"}))  # pid reused
    RunLock(out).acquire().release()
    (out / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": host}))
    lock = RunLock(out).acquire()
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (out / LOCK_FILE).exists()
