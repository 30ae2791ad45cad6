"""``cl-env frontier``: the Pareto front (property tests), the table from result files written by
the real ``Result`` writer, the PNG, resuming without rerunning, bad inputs and one small run."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_plugins import plugin  # noqa: F401 - the fixture: a user's package with an agent and a memory

import cl_env
from agents.harness import frontier, frontier_grid, results, sweep
from agents.harness.cli import main
from agents.harness.runner import Result

# --------------------------------------------------------------------------- the Pareto front


def _dominates(a, b) -> bool:
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


coords = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)) | st.tuples(
    st.floats(0, 1e6, allow_nan=False), st.floats(0, 1, allow_nan=False)), max_size=30)


@given(coords)
def test_pareto_front_is_exactly_the_undominated_points_in_order(pts):
    front = frontier.pareto_front([p[0] for p in pts], [p[1] for p in pts])
    undominated = [i for i, p in enumerate(pts) if not any(_dominates(q, p) for q in pts)]
    assert sorted(front) == undominated                       # the definition, by brute force
    assert len(set(front)) == len(front)
    # along the front, x never decreases and y never decreases; a larger x buys a strictly larger y
    for a, b in zip(front, front[1:], strict=False):
        assert pts[a][0] <= pts[b][0] and pts[a][1] <= pts[b][1]
        assert pts[a][0] == pts[b][0] or pts[a][1] < pts[b][1]
    # every point off the front is beaten by a point on it
    for i in set(range(len(pts))) - set(front):
        assert any(_dominates(pts[j], pts[i]) for j in front)


@given(coords, st.randoms(use_true_random=False))
def test_pareto_front_does_not_depend_on_the_order_of_the_points(pts, rnd):
    perm = list(range(len(pts)))
    rnd.shuffle(perm)
    shuffled = [pts[i] for i in perm]
    a = {pts[i] for i in frontier.pareto_front([p[0] for p in pts], [p[1] for p in pts])}
    b = {shuffled[i] for i in frontier.pareto_front([p[0] for p in shuffled], [p[1] for p in shuffled])}
    assert a == b


def test_pareto_front_small_cases():
    assert frontier.pareto_front([], []) == []
    # (10, .5) beats (20, .4); (20, .7) and (40, .9) buy more accuracy with more bits; ties both stay
    assert frontier.pareto_front([10, 20, 20, 40, 40], [0.5, 0.4, 0.7, 0.9, 0.9]) == [0, 2, 3, 4]
    with pytest.raises(ValueError, match="2 x values but 1 y values"):
        frontier.pareto_front([1, 2], [0.5])


def test_memory_variants_and_memory_sets():
    spec = ["reservoir", {"srm": {"items": [200, 400], "n_sets": 1}}, {"codec": [{"quality": 50}, {"quality": 90}]}]
    assert frontier_grid.memory_variants(spec) == [
        ("reservoir", {}), ("srm", {"items": 200, "n_sets": 1}), ("srm", {"items": 400, "n_sets": 1}),
        ("codec", {"quality": 50}), ("codec", {"quality": 90})]
    from agents.harness.cli.frontier import parse_memory_sets

    assert parse_memory_sets(["srm:items=200,400", "srm:n_sets=1", "pkg.mod:Cls:bits=4"],
                             ["reservoir", "srm", "pkg.mod:Cls"]) == [
        ("reservoir", {}), ("srm", {"items": 200, "n_sets": 1}), ("srm", {"items": 400, "n_sets": 1}),
        ("pkg.mod:Cls", {"bits": 4})]


def test_a_memory_option_has_one_identity_however_it_is_typed():
    """``tau: 1``, ``tau: 1.0`` and no ``tau`` (its default) are one configuration: one cell of a
    sweep, one hash (they were three cells of the same run)."""
    from agents.harness.config import RunConfig
    from agents.harness.sweep.grid import expand

    hashes = {RunConfig.build("MNISTRotations-v0", "er", "srm", 50, settings=s).hash
              for s in ({"memory.tau": 1}, {"memory.tau": 1.0}, {})}
    assert len(hashes) == 1
    assert RunConfig.build("MNISTRotations-v0", "er", "srm", 50, settings={"memory.tau": 0.5}).hash not in hashes
    cells, _ = expand({"envs": ["MNISTRotations-v0"], "agents": ["er"], "memories": ["srm"], "budgets": [50],
                       "settings": [{"memory.tau": 1}, {"memory.tau": 1.0}, {}]})
    assert len(cells) == 1


def test_memory_set_values_parse_as_set_values():
    """``--memory-set srm:entropy_coding=true`` means what ``--set memory.entropy_coding=true`` and
    a grid file's ``true`` mean: a boolean, so the cell is the grid file's cell (same hash)."""
    from agents.harness.cli.args import parse_assignments
    from agents.harness.cli.frontier import parse_memory_sets

    assert parse_memory_sets(["srm:entropy_coding=true,false", "srm:prior=shared"], ["srm"]) == [
        ("srm", {"entropy_coding": True, "prior": "shared"}), ("srm", {"entropy_coding": False, "prior": "shared"})]
    assert parse_assignments(["memory.entropy_coding=true"], "--set") == {"memory.entropy_coding": True}
    yaml_grid = frontier_grid.grid_from_mapping({"env": "SplitMNIST-v0", "agent": "er", "budgets": [500], "seeds": [2],
                                                 "memories": [{"srm": {"entropy_coding": True}}]})
    cli_grid = frontier_grid.grid_from_mapping({"env": "SplitMNIST-v0", "agent": "er", "budgets": [500], "seeds": [2],
                                                "memories": [{m: [o]} for m, o in parse_memory_sets(
                                                    ["srm:entropy_coding=true"], ["srm"])]})
    assert [c.config_hash() for c in cli_grid.cells()] == [c.config_hash() for c in yaml_grid.cells()]


# --------------------------------------------------------------------------- synthetic results
@pytest.fixture
def stream(mnist_root):
    return {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 100}


def _grid(stream, out, **kw) -> frontier_grid.Grid:
    cfg = {"env": "MNISTRotations-v0", "agent": "er",
           "memories": ["reservoir", {"srm": {"items": 200, "n_sets": 1}}], "budgets": [20, 40],
           "seeds": [0, 1, 2], "stream": stream, "out": str(out), **kw}
    return frontier_grid.grid_from_mapping(cfg)


def _write(cell, root, ra, bits, items, status="completed", forgetting=0.1, lr=None):
    """A result.json for ``cell`` (its real configuration and hash) through the real writer."""
    cfg = cell.config()
    if lr is not None:  # another configuration, in the same directory
        cfg = {**cfg, "settings": {**cfg["settings"], "lr": lr}}
    cfg = {**cfg, "runtime": {"torch_threads": 1}}
    out = cell.directory(root) if lr is None else cell.directory(root).with_name(f"other{cell.seed}")
    out.mkdir(parents=True, exist_ok=True)
    div = {"step": 7, "task": 1, "reason": "non-finite loss"} if status == "diverged" else None
    forgetting = min(forgetting, 1.0 - ra)  # the metrics agree with the matrix (results are checked on load)
    Result(cfg["env"], cfg["agent"], cfg["memory"], cell.seed, [[ra + forgetting, 0.0], [ra, ra]], ra, -forgetting,
           0.0, forgetting,
           0.5, bits, 1000, bits / 6280, items, 2.0, 100.0, {}, cfg, status=status,
           config_hash=results.config_hash(cfg), divergence=div).to_json(out / results.RESULT_FILE)


def _fill(grid, root):
    """reservoir: 0.6/0.7/0.8 at budget 20, 0.9 +- 0 at 40; srm: 0.85 at 20 with 4x the items, one
    seed diverged at 40; plus a run of another learning rate that must stay out of the table."""
    ra = {("reservoir", 20.0): [0.6, 0.7, 0.8], ("reservoir", 40.0): [0.9] * 3,
          ("srm", 20.0): [0.85] * 3, ("srm", 40.0): [0.5] * 3}
    for c in grid.cells():
        mult = 4 if c.memory == "srm" else 1
        status = "diverged" if (c.memory, c.budget, c.seed) == ("srm", 40.0, 2) else "completed"
        _write(c, root, ra[c.memory, c.budget][c.seed], int(c.budget * 6280), int(c.budget * mult), status)
    _write(grid.cells()[0], root, 0.99, 1000, 1, lr=0.5)


def test_table_from_result_files(stream, tmp_path):
    grid = _grid(stream, tmp_path)
    _fill(grid, tmp_path)
    runs, skipped = results.find_results([tmp_path])
    assert not skipped and len(runs) == 13
    pts, missing = frontier_grid.points_of(grid, runs)
    assert missing == []
    table = frontier.frontier_table(pts)
    rows = {(r[0], r[2], r[-1].split(" ")[0]): r for r in table.rows}
    assert len(rows) == 5   # 4 configurations, srm@40 split into its completed and diverged seeds
    res20 = rows["reservoir", "20", "completed"]
    assert res20[1] == "-" and res20[3] == "0,1,2" and res20[4] == "15.70 ± 0.00" and res20[5] == "20"
    assert res20[6] == "70.00 ± 10.00" and res20[7] == "10.00 ± 0.00" and res20[9] == ""
    srm20 = rows["srm", "20", "completed"]
    assert srm20[1] == "items=200, n_sets=1" and srm20[5] == "80" and srm20[6] == "85.00 ± 0.00"
    assert srm20[9] == "yes" and rows["reservoir", "40", "completed"][9] == "yes"   # the front
    assert rows["srm", "40", "completed"][9] == "" and rows["srm", "40", "completed"][3] == "0,1"
    bad = rows["srm", "40", "**DIVERGED**"]
    assert bad[6] == "-" and bad[9] == "" and "seed 2 diverged at task 1, step 7" in bad[10]
    records = list(csv.DictReader(io.StringIO(results.to_csv([table]))))
    r = next(x for x in records if x["memory"] == "reservoir" and x["budget"] == "20.0")
    assert float(r["retained_accuracy_mean"]) == pytest.approx(0.7)
    assert float(r["retained_accuracy_std"]) == pytest.approx(0.1)
    assert float(r["stored_kb_mean"]) == pytest.approx(20 * 6280 / 8000) and r["pareto"] == "False"
    # the other configuration in the directory (lr=0.5) is no row; grouped alone it is refused
    assert all(p.retained != 0.99 for p in pts)
    with pytest.raises(ValueError, match="mix configurations: they differ in \\['settings.lr'\\]"):
        frontier.check_one_experiment(results.group_runs(runs))


def test_png_is_written_at_its_size(stream, tmp_path):
    from PIL import Image

    grid = _grid(stream, tmp_path)
    _fill(grid, tmp_path)
    pts, _ = frontier_grid.points_of(grid, results.find_results([tmp_path])[0])
    paths = frontier_grid.write_outputs(grid, pts, [])
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(paths["png"])
    img.verify()
    assert Image.open(paths["png"]).size == (840, 540)    # 7 x 4.5 inches at 120 dpi
    assert "| reservoir | - | 20 | 0,1,2 |" in paths["markdown"].read_text()
    assert paths["csv"].read_text().startswith("table,memory,memory_settings,budget")


def test_resuming_runs_only_the_unfinished_cells(stream, tmp_path, monkeypatch):
    grid = _grid(stream, tmp_path)
    _fill(grid, tmp_path)
    ran = []

    def fake_run_unit(cells, root, threads, run_options=None):
        ran.extend(cells)
        return [{"cell": c, "status": "completed", "score": 0.5, "seconds": 0.0} for c in cells]

    monkeypatch.setattr(sweep.local, "run_unit", fake_run_unit)
    assert frontier_grid.run_grid(grid, workers=0, log=lambda *_: None) == [] and ran == []
    gone = grid.cells()[4]
    (gone.directory(tmp_path) / results.RESULT_FILE).unlink()
    records = frontier_grid.run_grid(grid, workers=0, log=lambda *_: None)
    assert [r["cell"]["seed"] for r in records] == [gone.seed] and len(ran) == 1
    assert ran[0]["memory"] == gone.memory and ran[0]["budget"] == gone.budget


def test_a_frontier_whose_every_cell_failed_says_so(mnist_root, tmp_path, monkeypatch, capsys):
    """Every cell ran and failed: the command names the failures (exit 1), not "run it without
    --read-only" (it was not read-only)."""
    from agents.harness.cli import main

    def failing_run_unit(cells, root, threads, run_options=None):
        return [{"cell": c, "status": "failed", "error": "ValueError: boom", "seconds": 0.0} for c in cells]

    monkeypatch.setattr(sweep.local, "run_unit", failing_run_unit)
    assert main(["frontier", "MNISTRotations-v0", "--memories", "reservoir", "--budgets", "20", "--workers", "0",
                 "--out", str(tmp_path / "f"), *_flags(mnist_root)]) == 1
    err = capsys.readouterr().err
    assert "1 failed" in err and "--read-only" not in err


# --------------------------------------------------------------------------- the command
def _flags(mnist_root) -> list[str]:
    return ["--stream", "source=mnist", "--stream", "verify=False", "--stream", f"root={str(mnist_root)!r}",
            "--stream", "n_tasks=2", "--stream", "train_per_task=100"]


@pytest.mark.parametrize("argv, message", [
    (["MNISTRotations-v0", "--memories", "reservoir,nope", "--budgets", "20"], "unknown memory 'nope'"),
    (["MNISTRotations-v0", "--memories", "class_balanced", "--budgets", "20"],
     "agent 'er' cannot use memory 'class_balanced'"),
    (["MNISTRotations-v0", "--memories", "reservoir", "--budgets", "20,abc"], "--budgets: got"),
    (["MNISTRotations-v0", "--memories", "reservoir", "--budgets", "-5"], "positive numbers"),
    (["MNISTRotations-v0", "--memories", "reservoir", "--budgets", "20", "--seeds", "2-1"], "--seeds: got"),
    (["MNISTRotations-v0", "--memories", "reservoir", "--budgets", "20", "--memory-set", "bits=4"],
     "MEMORY:KEY=VALUE"),
    (["MNISTRotations-v0", "--memories", "reservoir", "--budgets", "20", "--memory-set", "srm:items=4"],
     "add srm to --memories"),
    (["MNISTRotations-v0", "--memories", "reservoir", "--budgets", "20", "--memory-set", "reservoir:bits=4"],
     "option of memory 'reservoir'"),
    (["MNISTRotations-v0", "--budgets", "20", "--memory-set", "reservoir:bits=4"], "--memory-set needs --memories"),
    (["NoSuchEnv-v0", "--memories", "reservoir", "--budgets", "20"], "NoSuchEnv-v0"),
    (["MNISTRotations-v0", "--memories", "reservoir", "--budgets", "20", "--workers", "-1"], "--workers"),
    (["MNISTRotations-v0", "--memories", "reservoir", "--budgets", "20", "--read-only"], "no result of this"),
    (["/nonexistent/grid.yaml"], "does not exist"),
    ([], "needs an env id or a grid file"),
])
def test_bad_inputs_are_one_line_and_exit_2(argv, message, tmp_path, capsys):
    assert main(["frontier", *argv, "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_grid_files(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text("env: MNISTRotations-v0\nagent: er\nmemory: [reservoir]\nbudgets: [20]\n")
    (tmp_path / "b.yaml").write_text("env: MNISTRotations-v0\nagent: er\nmemories: [{srm: 3}]\nbudgets: [20]\n")
    (tmp_path / "c.yaml").write_text("env: [MNISTRotations-v0\n")
    for name, message in (("a.yaml", "unknown keys ['memory']"), ("b.yaml", "a mapping of settings"),
                          ("c.yaml", "not valid YAML")):
        assert main(["frontier", str(tmp_path / name), "--out", str(tmp_path / "f")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


def test_end_to_end_on_a_fixture_stream_then_the_report(mnist_root, tmp_path, capsys):
    import yaml

    out = tmp_path / "front"
    argv = ["frontier", "MNISTRotations-v0", "--agent", "er", "--memories", "reservoir,task_ring", "--budgets",
            "20", "--seeds", "0-1", "--out", str(out), "--workers", "0", "--no-progress", *_flags(mnist_root)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "[4/4] done" in text and "| reservoir | - | 20 | 0,1 |" in text and "| task_ring | - | 20 | 0,1 |" in text
    assert {p.name for p in out.iterdir()} >= {"frontier.md", "frontier.csv", "frontier.png", "frontier.json"}
    grid = json.loads((out / "frontier.json").read_text())
    assert grid["memories"] == ["reservoir", "task_ring"] and grid["seeds"] == [0, 1]
    # again, from a grid file naming the same cells: nothing runs
    (tmp_path / "g.yaml").write_text(yaml.safe_dump({**grid, "seeds": "0-1"}))
    assert main(["frontier", str(tmp_path / "g.yaml"), "--workers", "0", "--no-progress"]) == 0
    assert "4 cells, 4 already finished, 0 to run" in capsys.readouterr().out
    assert main(["frontier", "--read-only", "--out", str(out)]) == 0    # the grid from frontier.json
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Frontier: retained accuracy against stored bits" in page and "<td>task_ring</td>" in page


def test_progress_bar_on_request(stream, tmp_path, monkeypatch, capsys):
    grid = _grid(stream, tmp_path, memories=["reservoir"], budgets=[20], seeds=[0])
    monkeypatch.setattr(sweep.local, "run_unit", lambda cells, *a, **k: [
        {"cell": c, "status": "completed", "score": 0.5, "seconds": 0.0} for c in cells])
    frontier_grid.run_grid(grid, workers=0, log=lambda *_: None, bar=True)
    err = capsys.readouterr().err
    assert "1/1" in err and "last: er reservoir budget=20 seed=0 0.5000" in err


@pytest.mark.usefixtures("plugin")
def test_a_plugin_memory_on_the_frontier(mnist_root, tmp_path, capsys):
    """Any memory name the agent accepts: here a user's package's agent and memory (entry points)."""
    out = tmp_path / "plug"
    assert main(["frontier", "MNISTRotations-v0", "--agent", "my_replay", "--memories", "first_seen,reservoir",
                 "--budgets", "8", "--out", str(out), "--workers", "0", "--no-progress", *_flags(mnist_root)]) == 0
    text = capsys.readouterr().out
    assert "| first_seen | - | 8 | 0 |" in text and "| reservoir | - | 8 | 0 |" in text


def test_every_committed_frontier_grid_loads_and_checks():
    """The grids the docs cite (benchmarks/frontier_*.yaml, srm_entropy_seeds.yaml) parse, name memories their
    learner accepts and build every cell's configuration, before anyone spends hours on them."""
    from pathlib import Path

    from agents.harness.frontier_grid import load_grid

    bench = Path(__file__).parents[2] / "benchmarks"
    paths = sorted(bench.glob("frontier_*.yaml"))
    assert len(paths) >= 10
    for path in [*paths, bench / "srm_entropy_seeds.yaml"]:
        grid = load_grid(path)
        assert grid.memories and grid.budgets and grid.seeds, path.name
        assert grid.out.startswith("runs/frontier-" if path in paths else "runs/"), path.name


def test_a_memory_option_the_agent_sets_keeps_the_users_value_even_at_the_memorys_default():
    """GEM's own memory kwargs hold ``policy: task_ring``; a user's ``memory.policy=reservoir`` (the
    memory's default) must win, not be dropped as a default and replaced by the agent's."""
    from agents.harness.config import RunConfig

    c = RunConfig.build("MNISTRotations-v0", "agem", "quantized", 20, settings={"memory.policy": "reservoir"})
    assert c.memory_options["policy"] == "reservoir"
    assert RunConfig.build("MNISTRotations-v0", "agem", "quantized", 20).memory_options["policy"] == "task_ring"
    from agents.base import StreamInfo
    from agents.registry import build_memory

    spec = StreamInfo.from_stream(cl_env.make_stream("MNISTRotations-v0", n_tasks=2, train_per_task=50)).memory_spec("cpu")
    assert build_memory("agem", "quantized", 20, spec, options={"policy": "reservoir"}).policy == "reservoir"
