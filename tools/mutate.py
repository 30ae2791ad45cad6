"""Mutation testing of the maths and learner modules: do the tests notice a planted bug?

A small table-driven mutator (no dependency): each mutant changes one token of one module —
a comparison (``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``), an arithmetic operator
(``+`` <-> ``-``, ``*`` <-> ``/``, ``//`` -> ``/``, ``**`` -> ``*``), a number (``n`` -> ``n + 1``,
``0.5`` -> ``1.5``), a unary minus dropped, ``min`` <-> ``max``, ``and`` <-> ``or``, ``True`` <->
``False`` — and the module's test files run against it, in a private copy of the tree. A mutant
the tests fail on is *killed*; one they pass on *survives* and is listed for judging (equivalent
— no observable difference — or a gap in the tests). Error messages, ``raise`` statements,
``assert`` invariants and warnings are not mutated.

Usage (from the repository root; a fresh clone needs only ``pip install -e ".[dev]"``)::

    python tools/mutate.py                       # every target, 2 workers
    python tools/mutate.py --only cl_env/metrics.py memory/bitstore.py --jobs 2
    python tools/mutate.py --list                # the mutants, without running them

It writes ``mutation-report.json`` (every mutant, killed or not) and prints the kill rate per
module and the survivors.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DOCS = "tests/test_docs.py::test_reference_pages_are_current_and_cover_every_name"  # pins documented defaults

# module -> the tests that must notice its bugs
TARGETS: dict[str, list[str]] = {
    "cl_env/metrics.py": ["tests/test_cl_env/test_metrics.py",
                          "tests/test_agents/test_results.py::test_every_metric_in_result_json_is_its_accuracy_matrix_through_the_metric_functions"],
    "memory/bitstore.py": ["tests/test_memory/test_bitstore.py"],
    **{f"memory/buffers/{m}.py": ["tests/test_memory/test_buffers.py", DOCS]
       for m in ("slots", "reservoir", "task_ring", "class_balanced", "herding")},
    **{f"memory/srm/{m}.py": ["tests/test_memory/test_srm.py", DOCS] for m in ("recollection", "budget", "msss", "vae_io")},
    "agents/gem.py": ["tests/test_agents/test_maths.py", "tests/test_agents/test_mechanisms.py", DOCS,
                      "tests/test_agents/test_learners.py::test_gem_needs_task_labels",
                      "-k", "gem or agem or projection or reference"],
    "agents/ewc.py": ["tests/test_agents/test_maths.py", "tests/test_agents/test_mechanisms.py", DOCS, "-k",
                      "ewc or fisher or reference"],
    "agents/lwf.py": ["tests/test_agents/test_maths.py", "tests/test_agents/test_mechanisms.py", DOCS, "-k",
                      "lwf or distill or reference"],
    "agents/replay.py": ["tests/test_agents/test_mechanisms.py::test_mechanism_beats_plain_sgd[er]", DOCS,
                         "tests/test_agents/test_maths.py::test_er_replays_soft_targets_as_a_soft_cross_entropy"],
    "memory/self_recall.py": ["tests/test_memory/test_self_recall.py", "tests/test_agents/test_mechanisms.py",
                              DOCS, "-k", "recall or arm or adi or reference"],
}

COMPARE_SWAP = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">", ast.Eq: "!=", ast.NotEq: "=="}
BINOP_SWAP = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
              ast.FloorDiv: ("//", "/"), ast.Pow: ("**", "*"), ast.Mod: ("%", "//")}
COMPARE_TEXT = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


@dataclass
class Mutant:
    module: str
    line: int
    start: int  # byte offsets into the file
    end: int
    old: str
    new: str
    status: str = "pending"  # killed / survived / timeout
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.module}:{self.line}: {self.old!r} -> {self.new!r}"


def _offsets(src: bytes) -> list[int]:
    starts, pos = [0], 0
    for line in src.split(b"\n"):
        pos += len(line) + 1
        starts.append(pos)
    return starts


def _excluded(tree: ast.AST) -> set[int]:
    """ids of nodes under raise / assert / warnings.warn / docstrings / f-strings."""
    skip: set[int] = set()

    def mark(node):
        for sub in ast.walk(node):
            skip.add(id(sub))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Raise, ast.Assert, ast.JoinedStr)):
            mark(node)
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("warn", "print", "log", "UnknownNameError", "ValueError", "TypeError"):
                mark(node)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
                mark(first)
    return skip


def mutants_of(module: str) -> list[Mutant]:
    path = ROOT / module
    src = path.read_bytes()
    lines = _offsets(src)
    tree = ast.parse(src)
    skip = _excluded(tree)
    out: list[Mutant] = []

    def at(lineno: int, col: int) -> int:
        return lines[lineno - 1] + col

    def between(a: ast.AST, b: ast.AST, token: str) -> int | None:
        lo, hi = at(a.end_lineno, a.end_col_offset), at(b.lineno, b.col_offset)
        seg = src[lo:hi].decode()
        i = seg.find(token)
        return None if i < 0 else lo + len(seg[:i].encode())

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                if type(op) in COMPARE_SWAP:
                    tok = COMPARE_TEXT[type(op)]
                    pos = between(left, right, tok)
                    if pos is not None:
                        out.append(Mutant(module, node.lineno, pos, pos + len(tok), tok, COMPARE_SWAP[type(op)]))
                left = right
        elif isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAP:
            tok, new = BINOP_SWAP[type(node.op)]
            pos = between(node.left, node.right, tok)
            if pos is not None and src[pos:pos + len(tok)].decode() == tok:
                if tok == "*" and src[pos:pos + 2] == b"**":
                    continue
                out.append(Mutant(module, node.lineno, pos, pos + len(tok), tok, new))
        elif isinstance(node, ast.AugAssign) and type(node.op) in BINOP_SWAP:
            tok, new = BINOP_SWAP[type(node.op)]
            pos = between(node.target, node.value, tok + "=")
            if pos is not None:
                out.append(Mutant(module, node.lineno, pos, pos + len(tok) + 1, tok + "=", new + "="))
        elif isinstance(node, ast.Constant) and not isinstance(node.value, str):
            start, end = at(node.lineno, node.col_offset), at(node.end_lineno, node.end_col_offset)
            text = src[start:end].decode()
            if isinstance(node.value, bool):
                out.append(Mutant(module, node.lineno, start, end, text, str(not node.value)))
            elif isinstance(node.value, int):
                out.append(Mutant(module, node.lineno, start, end, text, str(node.value + 1)))
            elif isinstance(node.value, float):
                out.append(Mutant(module, node.lineno, start, end, text, repr(node.value + 1.0)))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            start = at(node.lineno, node.col_offset)
            if src[start:start + 1] == b"-":
                out.append(Mutant(module, node.lineno, start, start + 1, "-", ""))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            f = node.func
            start, end = at(f.lineno, f.col_offset), at(f.end_lineno, f.end_col_offset)
            out.append(Mutant(module, node.lineno, start, end, f.id, "max" if f.id == "min" else "min"))
        elif isinstance(node, ast.BoolOp):
            tok, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            for a, b in zip(node.values, node.values[1:], strict=False):
                pos = between(a, b, f" {tok} ")
                if pos is not None:
                    out.append(Mutant(module, node.lineno, pos + 1, pos + 1 + len(tok), tok, new))
    out.sort(key=lambda m: (m.start, m.new))
    return out


def _copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _pytest(tree: Path, tests: list[str], timeout: float) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "CL_ENV_TEST_NO_NETWORK": "1"}
    started = time.perf_counter()
    try:
        rc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                             "-m", "not expensive", *tests], cwd=tree, env=env, capture_output=True,
                            timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        rc = -1
    return rc, time.perf_counter() - started


def _previous(reports: list[str], modules: list[str]) -> tuple[dict, dict]:
    """From earlier reports: per module, the statuses of its mutants by label; a module whose
    source changed since (a mutant's ``old`` text no longer at its offsets) is not reused."""
    status: dict[str, dict[str, str]] = {}
    for path in reports:
        for mu in json.loads(Path(path).read_text())["mutants"]:
            if mu["module"] in modules:
                status.setdefault(mu["module"], {})[Mutant(**mu).label] = mu["status"]
    current = {m: {mu.label for mu in mutants_of(m)} for m in status}
    stale = [m for m in status if set(status[m]) != current[m]]
    for m in stale:
        print(f"{m}: changed since the earlier report; all its mutants run", flush=True)
        del status[m]
    return status, {m: len(v) for m, v in status.items()}


def run(modules: list[str], jobs: int, report: Path, survivors_of: list[str] | None = None) -> dict:
    plan = {m: mutants_of(m) for m in modules}
    before: dict[str, dict[str, str]] = {}
    if survivors_of:  # re-test only what survived before: tests only grow, so a killed mutant stays killed
        before, _ = _previous(survivors_of, modules)
        for m, statuses in before.items():
            for mu in plan[m]:
                if statuses.get(mu.label) != "survived":
                    mu.status = statuses.get(mu.label, "pending")
    trees = [Path(tempfile.mkdtemp(prefix=f"mutate{i}-")) for i in range(jobs)]
    for t in trees:
        _copy_tree(t)
    budgets = {}
    for m in modules:  # the unmutated baseline must pass; its time sets the timeout
        rc, secs = _pytest(trees[0], TARGETS[m], timeout=1800)
        if rc != 0:
            raise SystemExit(f"the tests of {m} fail without any mutation (rc {rc}); fix them first")
        budgets[m] = max(30.0, 4 * secs)
        print(f"{m}: {len(plan[m])} mutants; tests pass unmutated in {secs:.1f} s", flush=True)
    queue = [mu for m in modules for mu in plan[m] if mu.status == "pending"]
    free = list(trees)

    def one(mu: Mutant) -> Mutant:
        tree = free.pop()
        try:
            target = tree / mu.module
            original = (ROOT / mu.module).read_bytes()
            target.write_bytes(original[:mu.start] + mu.new.encode() + original[mu.end:])
            rc, mu.seconds = _pytest(tree, TARGETS[mu.module], budgets[mu.module])
            mu.status = "timeout" if rc == -1 else ("survived" if rc == 0 else "killed")
            target.write_bytes(original)
        finally:
            free.append(tree)
        return mu

    done = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for mu in pool.map(one, queue):
            done += 1
            if mu.status == "survived":
                print(f"[{done}/{len(queue)}] SURVIVED {mu.label}", flush=True)
            elif done % 10 == 0:
                print(f"[{done}/{len(queue)}] ...", flush=True)
    for t in trees:
        shutil.rmtree(t, ignore_errors=True)
    summary = {}
    for m in modules:
        ms = plan[m]
        killed = sum(mu.status in ("killed", "timeout") for mu in ms)
        summary[m] = {"mutants": len(ms), "killed": killed,
                      "kill_rate": round(killed / len(ms), 4) if ms else None,
                      "survivors": [mu.label for mu in ms if mu.status == "survived"]}
    report.write_text(json.dumps({"summary": summary, "mutants": [asdict(mu) for m in modules for mu in plan[m]]},
                                 indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", default=None, help="modules (default: every target)")
    p.add_argument("--jobs", type=int, default=2, help="mutants tested at once (each with 1 thread)")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument("--report", default="mutation-report.json")
    p.add_argument("--survivors-of", nargs="*", default=None, metavar="REPORT",
                   help="re-test only the mutants that survived in these earlier reports (the others "
                        "keep their status; a module whose source changed since runs in full)")
    args = p.parse_args(argv)
    modules = args.only or list(TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    if unknown:
        print(f"error: no tests are mapped for {unknown}; targets: {list(TARGETS)}", file=sys.stderr)
        return 2
    if args.list:
        for m in modules:
            for mu in mutants_of(m):
                print(mu.label)
        return 0
    summary = run(modules, max(1, args.jobs), Path(args.report), args.survivors_of)
    total = sum(s["mutants"] for s in summary.values())
    killed = sum(s["killed"] for s in summary.values())
    print("\n| module | mutants | killed | kill rate |\n|---|---|---|---|")
    for m, s in summary.items():
        print(f"| {m} | {s['mutants']} | {s['killed']} | {100 * (s['kill_rate'] or 0):.1f} % |")
    print(f"| all | {total} | {killed} | {100 * killed / max(total, 1):.1f} % |")
    for s in summary.values():
        for label in s["survivors"]:
            print(f"survived: {label}")
    print(f"\nwrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
