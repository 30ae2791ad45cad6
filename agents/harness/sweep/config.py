"""A sweep file: reading it (YAML or TOML, sizes checked before anything is built), its keys
(:data:`KEYS`) and the types of their values (:func:`check_config`)."""

from __future__ import annotations

import errno
from pathlib import Path

import tomllib
import yaml

from agents.harness import limits
from agents.harness.logger import parse_formats
from cl_env import checks
from cl_env.checks import shown

KEYS = {"out", "envs", "agents", "memories", "budgets", "items", "preset", "seeds", "settings", "stream", "streams", "batch_size",
        "device", "retries", "checkpoint_every", "cpus_per_cell", "gpus_per_cell", "storage", "runtime_env",
        "ship_requirements", "stack_seeds", "log"}
RUN_OPTIONS = ("checkpoint_every", "log")  # keys handed to every cell's run (run_seeds' options)


# the size of a sweep document, checked before it is used (a "billion laughs" file of nested
# aliases expands to more nodes than memory holds)
MAX_BYTES = 1_000_000
MAX_NODES = 100_000  # scalars, lists and mappings, every alias counted as the nodes it expands to
MAX_DEPTH = 20
MAX_ALIASES = 100


def _too_big(where: str, what: str) -> ValueError:
    return ValueError(f"{where}: the sweep document is too large ({what}; at most {MAX_NODES:,} nodes, "
                      f"{MAX_DEPTH} levels, {MAX_ALIASES} aliases, {MAX_BYTES:,} bytes): write the grid "
                      "out as plain lists")


def check_yaml_size(text: str, where: str) -> None:
    """Count a YAML document's nodes (aliases expanded), depth and aliases from its parser events,
    before anything is built from them; raise ValueError past the limits."""
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for
    stack: list[list] = [[None, 0]]  # [anchor, nodes so far] per open collection
    aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise _too_big(where, f"more than {MAX_ALIASES} aliases")
            stack[-1][1] += sizes.get(event.anchor, 1)
        elif isinstance(event, yaml.ScalarEvent):
            stack[-1][1] += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([event.anchor, 0])
            if len(stack) - 1 > MAX_DEPTH:
                raise _too_big(where, f"nested more than {MAX_DEPTH} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, n = stack.pop()
            n += 1
            if anchor is not None:
                sizes[anchor] = n
            stack[-1][1] += n
        else:
            continue
        if stack[0][1] + sum(n for _, n in stack[1:]) > MAX_NODES:
            raise _too_big(where, f"more than {MAX_NODES:,} nodes once its aliases are expanded")


def _check_tree_size(obj, where: str) -> None:
    """The same limits on a parsed TOML document (no aliases there)."""
    nodes, stack = 0, [(obj, 0)]
    while stack:
        o, d = stack.pop()
        nodes += 1
        if d > MAX_DEPTH:
            raise _too_big(where, f"nested more than {MAX_DEPTH} levels")
        if nodes > MAX_NODES:
            raise _too_big(where, f"more than {MAX_NODES:,} nodes")
        if isinstance(o, (dict, list)):
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))


def load_config(path: str | Path) -> dict:
    """Read a sweep config from YAML (``.yaml``/``.yml``) or TOML (``.toml``), checking its size
    (bytes, nodes with aliases expanded, depth, aliases) before it is built, then its keys."""
    path = Path(path)
    cfg = read_config_file(path, "sweep config")
    unknown = set(cfg) - KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {shown(sorted(map(str, unknown)), 200)}; valid keys: {sorted(KEYS)}")
    named = any(v is not None for v in _as_list(cfg.get("preset", [])))  # a preset names its agent
    for key in ("envs",) if named and "agents" not in cfg else ("envs", "agents"):
        if not cfg.get(key):
            raise ValueError(f"{path}: {key!r} must list at least one value")
    check_config(cfg, str(path))
    return cfg


def read_config_file(path: str | Path, what: str = "config") -> dict:
    """The mapping in a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file; one clear error for a
    missing file, a syntax error or a file that is not a mapping (keys are the caller's to check)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, f"{what} does not exist", str(path))
    with open(path, "rb") as f:  # a directory raises IsADirectoryError: one line in the CLI
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise _too_big(str(path), f"more than {MAX_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            check_yaml_size(text, str(path))
            cfg = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ValueError(f"{path}: not valid YAML{where} ({problem}); fix the syntax "
                             f"(lists as [a, b], mappings as {{key: value}})") from None
    elif path.suffix == ".toml":
        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
        _check_tree_size(cfg, str(path))
    else:
        raise ValueError(f"{what} must be .yaml, .yml or .toml, got {path.name!r}")
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the {what} must be a mapping of keys to values")
    return cfg


def _as_list(value):
    return value if isinstance(value, list) else [value]


def check_config(cfg: dict, where: str = "sweep config") -> None:
    """Types of every key, before any cell runs (one clear error naming the key and the value)."""
    def each(key, ok, expected, example):
        for v in _as_list(cfg.get(key, [])):
            if not ok(v):
                raise checks.fail(f"{where}: {key}", v, expected, f"{key}: {example}")

    each("envs", lambda v: isinstance(v, str), "env ids (strings)", "[MNISTRotations-v0]")
    each("agents", lambda v: isinstance(v, str), "agent names (strings)", "[er, gem]")
    each("memories", lambda v: v is None or isinstance(v, str), "memory names or null", "[null, srm]")
    budget = limits.TABLE[""]["budget"]
    each("budgets", lambda v: v is None or budget.holds(v), f"null or numbers: {budget.text()}", "[100, 200]")
    each("items", lambda v: v is None or (checks.is_int(v) and v >= 1), "positive integers or null", "[200, 500]")
    if any(v is not None for v in _as_list(cfg.get("items", []))) and any(
            v is not None for v in _as_list(cfg.get("budgets", []))):
        raise checks.fail(f"{where}: items", cfg["items"], "items or budgets, not both (each sizes the memory)",
                          "budgets: [null] with items: [200, 500]")
    each("preset", lambda v: v is None or isinstance(v, str), "preset names or null", "[derpp-seqmnist-500]")
    each("seeds", lambda v: checks.is_int(v) and 0 <= v < 2**32, "non-negative integers", "[0, 1, 2]")
    for key in ("envs", "agents", "memories", "budgets", "items", "preset", "seeds", "settings", "streams"):
        if cfg.get(key) == []:
            raise checks.fail(f"{where}: {key}", [], "one value or more (an empty axis runs no cell)",
                              f"leave {key} out for its default")
    each("settings", lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v),
         "mappings of --set keys (text) to values (not key=value text)", "[{}, {lr: 0.03}]")
    each("streams", lambda v: isinstance(v, dict), "mappings of --stream options", "[{source: mnist5k}]")
    if "stream" in cfg and not isinstance(cfg["stream"] or {}, dict):
        raise checks.fail(f"{where}: stream", cfg["stream"], "a mapping of --stream options", "stream: {}")
    if cfg.get("batch_size") is not None:
        checks.integer(f"{where}: batch_size", cfg["batch_size"], 1, fix="batch_size: 10")
    if "device" in cfg:
        checks.device(f"{where}: device", cfg["device"])
    if "retries" in cfg:
        checks.integer(f"{where}: retries", cfg["retries"], 0, fix="retries: 2")
    for key, low, example in (("checkpoint_every", 1, 1000), ("cpus_per_cell", 1, 2), ("gpus_per_cell", 0, 1)):
        if cfg.get(key) is not None:
            if key == "gpus_per_cell" and checks.is_number(cfg[key]) and 0 <= cfg[key] < float("inf"):
                continue  # Ray accepts fractional GPUs (0.5: two cells share one)
            checks.integer(f"{where}: {key}", cfg[key], low, fix=f"{key}: {example}")
    if cfg.get("storage") is not None and not isinstance(cfg["storage"], str):
        raise checks.fail(f"{where}: storage", cfg["storage"], "a path or URI (fsspec)", "storage: s3://bucket/sweeps")
    if cfg.get("runtime_env") is not None and not isinstance(cfg["runtime_env"], dict):
        raise checks.fail(f"{where}: runtime_env", cfg["runtime_env"], "a mapping (Ray's runtime_env)",
                          "runtime_env: {env_vars: {TMPDIR: /scratch}}")
    if "stack_seeds" in cfg and not isinstance(cfg["stack_seeds"], bool):
        raise checks.fail(f"{where}: stack_seeds", cfg["stack_seeds"], "true or false", "stack_seeds: true")
    if "ship_requirements" in cfg and not isinstance(cfg["ship_requirements"], bool):
        raise checks.fail(f"{where}: ship_requirements", cfg["ship_requirements"], "true or false",
                          "ship_requirements: true")
    if cfg.get("log") is not None:
        parse_formats(cfg["log"], f"{where}: log")  # the run's own check, naming this file's key
    if "out" in cfg and not isinstance(cfg["out"], str):
        raise checks.fail(f"{where}: out", cfg["out"], "a directory path", "out: runs/sweep")


def run_options_of(cfg: dict) -> dict:
    """The options every cell's run gets from the sweep's keys (:data:`RUN_OPTIONS`: how often to
    checkpoint, where scalars go), the unset ones left out (the run's defaults)."""
    return {k: cfg[k] for k in RUN_OPTIONS if cfg.get(k) is not None}
