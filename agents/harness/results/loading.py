"""Loading results: :class:`Run`, :func:`load_result` (checked against the result schema),
:func:`find_results` (malformed or foreign files named and skipped) and :func:`is_finished`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agents.harness import schema
from agents.harness.config import FIELDS, RunConfig, config_hash, group_hash
from agents.harness.results.files import REQUIRED, RESULT_FILE, ResultFileError, read_json


@dataclass
class Run:
    """One loaded ``result.json``.

    Attributes:
        path: The file.
        data: Its contents (a legacy file's configuration normalised into today's sections).
    """

    path: Path
    data: dict

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def status(self) -> str:
        return self.data.get("status", "completed")

    @property
    def seed(self) -> int:
        return self.data["seed"]

    @property
    def generative(self) -> bool:
        return self.data.get("neg_test_elbo") is not None

    @property
    def group(self) -> str:
        return group_hash(self.config)

    @property
    def run_config(self) -> RunConfig:
        """The run's identity read back (:meth:`RunConfig.from_dict`; checked when loaded)."""
        return RunConfig.from_dict(self.config)


def _normalise_legacy(data: dict) -> dict:
    """A result.json written before run identity existed: its versions move to ``runtime``."""
    cfg = dict(data.get("config") or {})
    if "runtime" not in cfg:
        runtime = {k: cfg.pop(k) for k in ("python", "torch", "cl_env", "frechet_classifier_accuracy") if k in cfg}
        cfg["runtime"] = runtime
        cfg.setdefault("env", data.get("env"))
        cfg.setdefault("agent", data.get("agent"))
        cfg.setdefault("memory", data.get("memory"))
        cfg.setdefault("seed", data.get("seed"))
    data = {**data, "config": cfg}
    data.setdefault("status", "completed")
    data.setdefault("config_hash", config_hash(cfg))
    return data


def load_result(path: str | Path) -> Run:
    """Load one ``result.json`` and check it against the result schema (:mod:`agents.harness.schema`:
    types, ranges, ``config_hash`` against its ``config``, the top-level ``env``/``agent``/``memory``/
    ``seed`` against the configuration, summary metrics against the accuracy matrix).

    Raises:
        ResultFileError: It does not parse, is not a cl-env result, or fails the schema (the
            message names the file and the first reason).
    """
    path = Path(path)
    data = read_json(path)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ResultFileError(f"{path}: not a cl-env result (missing keys {missing})")
    if not isinstance(data["config"], dict):
        raise ResultFileError(f"{path}: not a cl-env result ('config' is not an object)")
    if schema.depth(data) > schema.MAX_DEPTH:
        raise ResultFileError(f"{path}: not a cl-env result (nested more than {schema.MAX_DEPTH} levels deep)")
    data = _normalise_legacy(data)
    found = schema.problem(data, config_hash)
    if found:
        raise ResultFileError(f"{path}: {found}; left out")
    if all(k in data["config"] for k in FIELDS):  # (a legacy file's configuration lacks fields)
        try:
            RunConfig.from_dict(data["config"])
        except ValueError as exc:
            raise ResultFileError(f"{path}: {exc}; left out") from None
    return Run(path, data)


def find_results(paths: list[str | Path]) -> tuple[list[Run], list[str]]:
    """Every ``result.json`` at or under ``paths``; the second list names each skipped file and why.

    A path that is a file other than ``.json`` (a shell glob that caught logs) is ignored, and so
    are results under hidden directories below a given path (a Ray sweep's ``.storage``
    snapshots copy its cells' results; the cells' own directories hold the ones to read).
    """
    runs, skipped = [], []
    for p in map(Path, paths):
        if p.is_file() and p.suffix != ".json":
            continue
        files = [p] if p.is_file() else sorted(
            f for f in p.rglob(RESULT_FILE) if not any(part.startswith(".") for part in f.relative_to(p).parts[:-1]))
        for f in files:
            try:
                runs.append(load_result(f))
            except ResultFileError as exc:
                skipped.append(str(exc))
    return runs, skipped


def is_finished(run_dir: str | Path, expected_hash: str) -> bool:
    """Whether ``run_dir`` holds a parsed result of exactly the configuration ``expected_hash``."""
    path = Path(run_dir) / RESULT_FILE
    if not path.exists():
        return False
    try:
        run = load_result(path)
    except ResultFileError:
        return False
    return run.data.get("config_hash") == expected_hash and config_hash(run.config) == expected_hash

