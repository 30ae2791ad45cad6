"""The run directory: one run per directory, checked against the configuration before any work,
locked while a run writes into it (:mod:`agents.harness.lock`)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from agents.harness import results
from agents.harness.lock import RunLock

RUN_FILES = (results.CONFIG_FILE, results.RESULT_FILE, results.CHECKPOINT_FILE, "error.txt",
             "progress.csv", "progress.jsonl")


def run_files(out: Path) -> list[Path]:
    """The files of a run in ``out`` (configuration, result, checkpoint, TensorBoard events)."""
    if not out.is_dir():
        return []
    found = [out / n for n in RUN_FILES if (out / n).exists()]
    return found + sorted(out.glob("events.out.tfevents.*")) + sorted(out.glob(".checkpoint.pt.*.tmp"))


def recorded_config(out: Path) -> dict | None:
    """The configuration the run in ``out`` recorded (config.json, else result.json), or None."""
    for name in (results.CONFIG_FILE, results.RESULT_FILE):
        path = out / name
        if path.exists():
            try:
                data = results.read_json(path)
            except results.ResultFileError:
                continue
            if isinstance(data.get("config"), dict):
                return data["config"]
    return None


def prepare_run_directory(out: Path, config: dict, resume: bool, overwrite: bool) -> bool:
    """Check ``out`` against ``config`` before any work; returns whether to resume from its checkpoint.

    Raises:
        RunDirectoryError: ``out`` holds another run (names the keys that differ) or the same run
            without ``--resume``/``--overwrite``; ``--resume`` with no checkpoint to resume from.
    """
    if resume and overwrite:
        raise results.RunDirectoryError("--resume and --overwrite exclude each other: --resume continues "
                                        "the run in --out, --overwrite deletes it; pass one")
    files = run_files(out)
    if overwrite:
        for f in files:
            f.unlink()
        return False
    recorded = recorded_config(out)
    diff = [] if recorded is None else results.differing_keys(recorded, config)
    ckpt_file = out / results.CHECKPOINT_FILE
    if resume:
        if diff:
            raise results.RunDirectoryError(
                f"--resume: {out} holds a run of another configuration ({results.describe_differences(recorded, config, diff)}); "
                f"resume it with its own options, use another --out, or --overwrite to replace it")
        if not ckpt_file.exists():
            what = "a finished result but" if (out / results.RESULT_FILE).exists() else "nothing to resume:"
            raise results.RunDirectoryError(
                f"--resume: {out} holds {what} no {results.CHECKPOINT_FILE}; drop --resume to start "
                f"the run there (add --overwrite if the directory holds files of a run)")
        return True
    if files:
        names = ", ".join(sorted({f.name if not f.name.startswith("events.") else "TensorBoard events"
                                  for f in files}))
        if diff:
            raise results.RunDirectoryError(
                f"{out} holds another run ({names}) whose configuration differs: "
                f"{results.describe_differences(recorded, config, diff)}; use another --out, or "
                f"--overwrite to replace it")
        same = "this same configuration" if recorded is not None else "a run"
        raise results.RunDirectoryError(
            f"{out} already holds {same} ({names}); pass --resume to continue it from its checkpoint, "
            f"--overwrite to start afresh, or use another --out")
    return False


@contextlib.contextmanager
def locked(out: Path):
    """``out`` created and locked (:class:`agents.harness.lock.RunLock`) before anything is written
    into it; a directory this call created is removed again if it is left empty."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out).acquire()
    try:
        yield lock
    finally:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only succeeds while empty: a refused run leaves nothing behind
