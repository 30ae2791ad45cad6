"""Operating-system errors in one line: the path(s), the cause and what to do, and the exit code
(:data:`ENVIRONMENT_EXIT` for the machine's failures, 2 for a path the user can fix)."""

from __future__ import annotations

import errno
import sys

ENVIRONMENT_EXIT = 74  # the machine failed a write or read (disk full, quota, file-size limit, I/O error): EX_IOERR
# operating-system errors that are the machine's, not a path the user can fix
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.ENOMEM, errno.EMFILE,
                      errno.ENFILE, errno.ENOLCK}
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space there or write elsewhere (--out)",
    errno.EDQUOT: "the disk quota is used up: free space there or write elsewhere (--out)",
    errno.EFBIG: "the file outgrew a file-size limit (ulimit -f) or the filesystem's",
    errno.EIO: "an I/O error of the device: check the disk",
    errno.EROFS: "the filesystem is read-only: choose a writable directory",
    errno.EACCES: "permission denied: choose a directory you can write",
    errno.EPERM: "not permitted: choose a directory you can write",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "a file is in the way where a directory is needed",
    errno.EISDIR: "it is a directory where a file is needed",
    errno.ENAMETOOLONG: "the name is too long for the filesystem: choose a shorter path",
    errno.ENOENT: "no such file or directory: create the directory first or fix the path",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the path(s), the cause and what to do."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None) or "a file"
    cause = exc.strerror or str(exc) or type(exc).__name__
    hint = _OS_HINTS.get(exc.errno)
    return f"{paths}: {cause}" + (f" ({hint})" if hint and hint.split(":")[0].lower() != cause.lower() else "")


def os_error_exit(exc: OSError) -> int:
    """Print :func:`describe_os_error` on stderr; the exit code: :data:`ENVIRONMENT_EXIT` for the
    machine's failures (disk full, quota, file-size limit, I/O), 2 for a path the user can fix."""
    print(f"error: {describe_os_error(exc)}", file=sys.stderr)
    return ENVIRONMENT_EXIT if exc.errno in ENVIRONMENT_ERRNOS else 2
