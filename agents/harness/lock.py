"""An exclusive lock on a run directory: one process writes into it at a time.

``DIR/.cl-env.lock`` is opened and locked with ``fcntl.flock(LOCK_EX | LOCK_NB)`` before anything
else is written into ``DIR``; it holds the owner's pid, host and start time. The kernel releases a
``flock`` when its process dies, however it dies (SIGKILL included), so a lock file left behind by
a dead process is stale by construction: the next run takes it over. A lock held by a live process
is refused with one line naming that pid and host. Where a filesystem cannot ``flock`` (some
network filesystems), the recorded pid and host decide: a lock of this host whose pid is not
running (or runs another program since: its start time differs) is stale, anything else is refused.

Released (the file removed, then closed) when the run ends, by any path out of
:func:`agents.harness.runner.run_seeds`.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from agents.harness.results import RunDirectoryError

LOCK_FILE = ".cl-env.lock"


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux ``/proc``), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner(path: Path) -> dict:
    try:
        data = json.loads(path.read_text()[:4096] or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(owner: dict, out: Path) -> str:
    who = f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}"
    since = f", started {owner['started']}" if owner.get("started") else ""
    return (f"{out} is in use by another cl-env run ({who}{since}); wait for it to finish, stop it, "
            f"or use another --out")


def stale(owner: dict) -> bool:
    """Whether a lock recorded by ``owner`` belongs to a dead process of this host."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or owner.get("host") != socket.gethostname():
        return False
    if not _alive(pid):
        return True
    start = owner.get("start_time")
    return start is not None and _start_time(pid) not in (None, start)


class RunLock:
    """The lock of one run directory (:meth:`acquire`, :meth:`release`; also a context manager)."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunDirectoryError` naming the process that holds it.

        Raises:
            RunDirectoryError: A live process holds the directory.
            OSError: The directory cannot be written (the CLI names the path and the cause).
        """
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunDirectoryError(_describe(_owner(self.path), self.out)) from None
            except OSError as exc:
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                owner = _owner(self.path)  # no flock here: the recorded pid and host decide
                if owner and owner.get("pid") != os.getpid() and not stale(owner):
                    os.close(fd)
                    raise RunDirectoryError(_describe(owner, self.out)) from None
            try:  # the file may have been removed by its previous owner's release meanwhile
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            me = {"pid": os.getpid(), "host": socket.gethostname(), "start_time": _start_time(os.getpid()),
                  "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            except OSError:
                self.fd = fd
                self.release()
                raise
            self.fd = fd
            return self
        raise RunDirectoryError(f"{self.out}: could not take the run directory's lock {self.path} "
                                f"(it kept being replaced); is another cl-env starting there?")

    def release(self) -> None:
        """Remove the lock file and let go (idempotent)."""
        if self.fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
