"""Seeds trained together (agents.stacked, runner.run_seeds) give each seed its separate run's numbers."""

from __future__ import annotations

import gc
import json
import os
import threading

import pytest
import torch

from agents.base import StreamInfo
from agents.harness.runner import run, run_seeds
from agents.online import Online
from agents.stacked import SeedStack


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the equivalence is exact at one thread (agents/stacked.py)
    yield
    torch.set_num_threads(before)


def _kw(mnist_root, n_tasks=3, per_task=100, **extra):
    return {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": n_tasks,
            "train_per_task": per_task, **extra}


CASES = [
    ("online", None, None, {}, "MNISTRotations-v0"),
    ("er", "reservoir", 30, {}, "MNISTRotations-v0"),
    ("er", "task_ring", 30, {"head": "masked", "replay_batch": 7}, "SplitMNIST-v0"),
    ("ewc", None, None, {"lam": 50.0, "fisher_samples": 30}, "MNISTRotations-v0"),
    ("lwf", None, None, {}, "SplitMNIST-v0"),
    ("lwf", None, None, {"update": "two_step", "temperature": 1.0}, "MNISTRotations-v0"),
    ("agem", "task_ring", 30, {"ref_batch": 16}, "MNISTRotations-v0"),
    ("agem", "reservoir", 30, {"model": "mlp400"}, "MNISTPermutations-v0"),
    ("der", None, 30, {}, "MNISTRotations-v0"),
    ("derpp", None, 30, {"head": "masked"}, "SplitMNIST-v0"),
    ("er_ace", "task_ring", 30, {}, "MNISTPermutations-v0"),
    ("er_ace", "reservoir", 30, {"replay_batch": 7}, "MNISTRotations-v0"),
]


@pytest.mark.parametrize(("agent", "memory", "budget", "settings", "env"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[4]}-{i}" for i, c in enumerate(CASES)])
def test_stacked_seeds_equal_their_separate_runs(mnist_root, tmp_path, one_thread, agent, memory, budget,
                                                 settings, env):
    kw = (_kw(mnist_root, n_tasks=2, per_task=60) if env != "SplitMNIST-v0" else
          {"source": "mnist", "verify": False, "root": str(mnist_root), "train_per_class": 15})
    common = {"agent": agent, "memory": memory, "budget": budget, "settings": settings, "stream_kwargs": kw,
              "progress": False}
    seeds = [0, 1, 2]
    together = run_seeds(env, seeds=seeds, outs=[tmp_path / f"s{s}" for s in seeds], **common)
    for r in together:
        assert r.status == "completed"
        assert r.config["derived"]["stacked_seeds"] == 3  # they did train as one stack
        alone = run(env, seed=r.seed, **common)
        assert r.accuracy_matrix == alone.accuracy_matrix  # bit for bit
        assert r.task_il_accuracy_matrix == alone.task_il_accuracy_matrix
        assert r.online_accuracy == alone.online_accuracy
        assert r.config_hash == alone.config_hash
        assert r.counters == alone.counters  # A-GEM's projections per seed, dropped examples
        assert r.storage_bits == alone.storage_bits and r.items == alone.items
        written = json.loads((tmp_path / f"s{r.seed}" / "result.json").read_text())
        assert written["accuracy_matrix"] == alone.accuracy_matrix and written["seed"] == r.seed
    # the seeds differ from each other (each its own init, order and memory)
    assert together[0].accuracy_matrix != together[1].accuracy_matrix


def test_unstackable_configurations_run_one_seed_after_another(mnist_root, one_thread):
    kw = _kw(mnist_root, n_tasks=2, per_task=50)
    common = {"agent": "gem", "memory": "task_ring", "budget": 20, "stream_kwargs": kw, "progress": False}
    both = run_seeds("MNISTRotations-v0", seeds=[0, 1], **common)
    for r in both:
        assert "stacked_seeds" not in r.config["derived"]
        assert r.accuracy_matrix == run("MNISTRotations-v0", seed=r.seed, **common).accuracy_matrix


def test_stack_false_and_a_stack_give_the_same_numbers(mnist_root, one_thread):
    kw = _kw(mnist_root, n_tasks=2, per_task=50)
    common = {"agent": "er", "budget": 20, "stream_kwargs": kw, "progress": False}
    a = run_seeds("MNISTRotations-v0", seeds=[3, 4], **common)
    b = run_seeds("MNISTRotations-v0", seeds=[3, 4], stack=False, **common)
    assert [r.accuracy_matrix for r in a] == [r.accuracy_matrix for r in b]
    assert "stacked_seeds" not in b[0].config["derived"]


def test_a_diverging_seed_leaves_the_stack_and_the_others_go_on(mnist_root, tmp_path, one_thread, monkeypatch):
    """Seed 1's loss turns non-finite at step 7: it alone is 'diverged', exactly as its separate
    run; seeds 0 and 2 finish with their separate runs' numbers."""
    (tmp_path / "nan_agent.py").write_text('''
from agents.online import Online


class NaNOnSeed1(Online):
    name = "nan_on_seed1"
    stackable = True  # its learn is Online's (one sgd_step)
    steps = 0

    def learn(self, x, t, y, logits):
        self.steps += 1
        out = Online.learn(self, x, t, y, logits)
        if self.seed == 1 and self.steps >= 7:
            out["loss"] = out["loss"] * float("nan")
        return out
''')
    monkeypatch.syspath_prepend(str(tmp_path))
    kw = _kw(mnist_root, n_tasks=2, per_task=50)
    common = {"agent": "nan_agent:NaNOnSeed1", "stream_kwargs": kw, "progress": False}
    with pytest.warns(RuntimeWarning, match=r"\(seed 1\) diverged at step 7"):
        rs = run_seeds("MNISTRotations-v0", seeds=[0, 1, 2], **common)
    assert [r.status for r in rs] == ["completed", "diverged", "completed"]
    assert rs[1].divergence["step"] == 7
    assert not any("diverged" in w for w in rs[0].warnings + rs[2].warnings)
    for r in rs:
        with pytest.warns(RuntimeWarning) if r.seed == 1 else _no_warning():
            alone = run("MNISTRotations-v0", seed=r.seed, **common)
        assert (r.status, r.accuracy_matrix, r.divergence) == (alone.status, alone.accuracy_matrix, alone.divergence)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_stacked_seeds_resume_from_their_checkpoints(mnist_root, tmp_path, one_thread):
    kw = _kw(mnist_root, n_tasks=3, per_task=50)
    common = {"agent": "er", "budget": 20, "stream_kwargs": kw, "progress": False}
    outs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(KeyboardInterrupt):
        run_seeds("MNISTRotations-v0", seeds=[0, 1], outs=outs, stop_after_task=0, **common)
    assert all((o / "checkpoint.pt").exists() and not (o / "result.json").exists() for o in outs)
    resumed = run_seeds("MNISTRotations-v0", seeds=[0, 1], outs=outs, resume=True, **common)
    for r in resumed:
        assert r.counters["resumes"] == 1 and r.config["derived"]["stacked_seeds"] == 2
        assert r.accuracy_matrix == run("MNISTRotations-v0", seed=r.seed, **common).accuracy_matrix


def test_stackability_is_explained():
    from agents.base import StreamInfo
    from agents.registry import agent_class, build_memory
    from agents.stacked import SeedStack, why_not_stackable

    info = StreamInfo((1, 28, 28), 10, 2, "domain", (tuple(range(10)),) * 2, 200)
    online = [agent_class("online")(info, None, {}, seed=s) for s in (0, 1)]
    assert why_not_stackable(online) is None
    assert "fewer than two" in why_not_stackable(online[:1])
    assert "differ" in why_not_stackable([online[0], agent_class("online")(info, None, {"lr": 0.05}, seed=1)])
    gem = [agent_class("gem")(info, build_memory("gem", "task_ring", 20, info.memory_spec("cpu"), seed=s), {}, seed=s)
           for s in (0, 1)]
    assert "learner 'gem' is not declared stackable" in why_not_stackable(gem)
    conv = [agent_class("online")(info, None, {"model": "convnet"}, seed=s) for s in (0, 1)]
    assert "not an MLP" in why_not_stackable(conv)
    own_observe = type("OwnObserve", (Online,), {"stackable": True, "observe": lambda self, obs, y: {}})
    assert "overrides observe" in why_not_stackable([own_observe(info, None, {}, seed=s) for s in (0, 1)])
    der_like = [agent_class("er")(info, build_memory("er", "srm", 20, info.memory_spec("cpu"), seed=s), {}, seed=s)
                for s in (0, 1)]
    assert "not stackable" in why_not_stackable(der_like)
    with pytest.raises(ValueError, match="cannot be stacked"):
        SeedStack(gem)


def test_a_sweep_trains_a_configurations_seeds_together_and_retries_a_killed_group(mnist_root, tmp_path,
                                                                                   monkeypatch, kill_after_checkpoint):
    from agents.harness.results import load_result
    from agents.harness.sweep import Cell, seed_groups, sweep

    stream = {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 30}
    cfg = {"out": str(tmp_path / "s"), "envs": ["MNISTRotations-v0"], "agents": ["er", "gem"], "budgets": [20],
           "seeds": [0, 1, 2], "stream": stream}
    units = seed_groups([Cell("MNISTRotations-v0", a, None, 20.0, s, stream=stream) for a in ("er", "gem")
                         for s in (0, 1, 2)])
    assert [[(c.agent, c.seed) for c in u] for u in units] == [
        [("er", 0), ("er", 1), ("er", 2)], [("gem", 0)], [("gem", 1)], [("gem", 2)]]
    cfg["agents"] = ["er"]
    marker = tmp_path / "killed-once"
    # the group's process is SIGKILLed at seed 1's first checkpoint (seed 0's is on disk, seed 2's not)
    kill_after_checkpoint(f"1;seed1;{marker}")
    logs: list[str] = []
    records = sweep(cfg, workers=2, log=logs.append)
    assert marker.exists() and any("group(s) of seeds trained together" in line for line in logs)
    assert any("retrying" in line and "2 other seed(s)" in line for line in logs)
    assert sorted((r["cell"]["seed"], r["status"], r["attempts"]) for r in records) == [
        (0, "completed", 2), (1, "completed", 2), (2, "completed", 2)]
    for r in records:
        res = load_result(f"{r['dir']}/result.json")
        # the retry resumed seeds 0 and 1 together from their checkpoints and ran seed 2 alone
        assert res.data["config"]["derived"].get("stacked_seeds", 1) == (2 if r["cell"]["seed"] < 2 else 1)
        alone = run("MNISTRotations-v0", agent="er", budget=20.0, seed=r["cell"]["seed"], stream_kwargs=stream,
                    progress=False)
        assert res.data["accuracy_matrix"] == alone.accuracy_matrix
    # stack_seeds must be a boolean (false keeps one process per cell)
    from agents.harness.sweep import check_config

    with pytest.raises(ValueError, match="stack_seeds"):
        check_config({**cfg, "stack_seeds": "yes"})
    assert seed_groups([]) == []


class _FailsOnSeed1(Online):
    """Online whose learn raises ``error`` on seed 1 after its model call, while seed 0 is parked."""

    name = "fails_on_seed1"
    stackable = True
    error: type[BaseException] = ValueError

    def learn(self, x, t, y, logits):
        self.model(x)  # a sync point: both lanes park here, then seed 1 raises
        if self.seed == 1:
            raise self.error("seed 1 fails")
        return Online.learn(self, x, t, y, logits)


def _lane_threads() -> list[threading.Thread]:
    return [th for th in threading.enumerate() if th.name.startswith("seed-lane-")]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_exception_in_a_lane_reaches_the_caller_and_the_threads_end(one_thread, error):
    info = StreamInfo((1, 28, 28), 10, 2, "domain", (tuple(range(10)),) * 2, 200)
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand(4, 1, 28, 28, generator=gen) for _ in range(2)]
    ys = [torch.randint(0, 10, (4,), generator=gen) for _ in range(2)]
    before = len(_lane_threads())
    cls = type("Fails", (_FailsOnSeed1,), {"error": error, "stackable": True})
    agents = [cls(info, None, {}, seed=s) for s in (0, 1)]
    real = [a.model for a in agents]
    stack = SeedStack(agents)
    assert len(_lane_threads()) == before + 2
    stack.act(xs, None)
    with pytest.raises(error, match="seed 1 fails"):
        stack.observe(ys)
    # both lanes left their learn: the agents have their own models and primitives back
    assert [a.model for a in agents] == real and all("sgd_step" not in vars(a) for a in agents)
    for a in agents:
        a.error = RuntimeError  # never raised below: the lanes still serve a normal step
        a.seed = 0
    stack.act(xs, None)
    losses = stack.observe(ys)
    assert all(torch.isfinite(out["loss"]) for out in losses)
    del stack
    gc.collect()
    assert len(_lane_threads()) == before  # the lanes end with their stack


def test_stacked_runs_leave_no_threads(mnist_root, one_thread):
    kw = _kw(mnist_root, n_tasks=2, per_task=30)
    before = len(_lane_threads())
    rs = run_seeds("MNISTRotations-v0", agent="er", budget=20, seeds=[0, 1], stream_kwargs=kw, progress=False)
    assert rs[0].config["derived"]["stacked_seeds"] == 2
    gc.collect()
    assert len(_lane_threads()) == before


def test_gradient_then_step_with_is_sgd_step(one_thread):
    """The two primitives A-GEM steps through give plain SGD's numbers bit for bit."""
    info = StreamInfo((1, 28, 28), 10, 2, "domain", (tuple(range(10)),) * 2, 200)
    a, b = (Online(info, None, {}, seed=3) for _ in range(2))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(8, 1, 28, 28, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    a.sgd_step(a.loss(a.forward(x, None), y))
    g = b.gradient(b.loss(b.forward(x, None), y))
    assert g.shape == (sum(p.numel() for p in b.model.parameters()),)
    b.step_with(g)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_stacked_predict_equals_each_seeds_own_predict(one_thread):
    """Task-end scoring of stacked seeds: one batched forward, each slice (any subset of the
    seeds, masked heads too) equal to the seed's own ``predict`` bit for bit at one thread."""
    info = StreamInfo((1, 28, 28), 4, 2, "class", ((0, 1), (2, 3)), 200)
    agents = [Online(info, None, {"head": "masked"}, seed=s) for s in range(3)]
    group = SeedStack(agents)
    try:
        assert group.predicts_as_agents()
        x = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        for ks in ([0, 1, 2], [2, 0]):
            for t in (None, 1):
                out = group.predict(ks, x, t)
                assert out.shape == (len(ks), 50, 4)
                for row, k in zip(out, ks, strict=True):
                    assert torch.equal(row, agents[k].predict(x, t))
    finally:
        group.close()


def test_stacked_seeds_are_scored_together_and_equal_their_separate_runs(mnist_root, one_thread, monkeypatch):
    calls = []
    predict = SeedStack.predict
    monkeypatch.setattr(SeedStack, "predict", lambda self, ks, x, t: calls.append(list(ks)) or predict(self, ks, x, t))
    kw = {"source": "mnist", "verify": False, "root": str(mnist_root), "train_per_class": 15}
    common = {"agent": "er", "budget": 20, "settings": {"head": "single"}, "stream_kwargs": kw, "progress": False}
    rs = run_seeds("SplitMNIST-v0", seeds=[0, 1, 2], **common)
    assert calls and all(ks == [0, 1, 2] for ks in calls)  # every task end: the three seeds at once
    n_calls = len(calls)
    for r in rs:
        alone = run("SplitMNIST-v0", seed=r.seed, **common)
        assert r.task_il_accuracy_matrix is not None
        assert (r.accuracy_matrix, r.task_il_accuracy_matrix) == (alone.accuracy_matrix, alone.task_il_accuracy_matrix)
    assert len(calls) == n_calls  # a run of one seed scores its own model


def test_share_out_splits_groups_of_four_or_more_seeds_while_cores_would_idle():
    from agents.harness.sweep import Cell, share_out

    def cells(agent, n):
        return [Cell("MNISTRotations-v0", agent, None, 20.0, s) for s in range(n)]

    def seeds(units):
        return [[(c.agent, c.seed) for c in u] for u in units]

    five, three = cells("er", 5), cells("ewc", 3)
    assert seeds(share_out([five], 2)) == [[("er", 0), ("er", 1), ("er", 2)], [("er", 3), ("er", 4)]]
    assert seeds(share_out([five], 1)) == seeds([five])  # one core: one stack
    assert seeds(share_out([three], 2)) == seeds([three])  # a part of one seed would not stack
    assert seeds(share_out([five, three], 2)) == seeds([five, three])  # no core idles
    assert [len(u) for u in share_out([cells("er", 8)], 4)] == [2, 2, 2, 2]
    assert [len(u) for u in share_out([cells("er", 8)], 3)] == [3, 3, 2]  # as even as can be
    assert [len(u) for u in share_out([cells("er", 10)], 3)] == [4, 3, 3]
    assert [len(u) for u in share_out([cells("er", 6)], 4)] == [2, 2, 2]  # parts of 2 at least
    assert [len(u) for u in share_out([five, three], 3)] == [3, 2, 3]
    assert [len(u) for u in share_out([three, cells("ewc", 4)], 3)] == [3, 2, 2]  # the larger group first
    gpu = [Cell("MNISTRotations-v0", "er", None, 20.0, s, device="cuda") for s in range(5)]
    assert [len(u) for u in share_out([gpu], 2)] == [5]  # one CUDA context, not two
    assert share_out([], 2) == []


def test_seeds_of_a_group_on_idle_cores_train_in_parts_and_equal_their_separate_runs(mnist_root, tmp_path,
                                                                                       monkeypatch):
    """``cl-env run --seeds 0-3`` on 2 cores: 2 stacked seeds in this process and 2 in a worker
    process, one thread each (not one process whose lanes use one core), every seed equal to its
    separate one-thread run."""
    from agents.harness.results import load_result
    from agents.harness.sweep import local, sweep

    monkeypatch.setattr(local, "available_cores", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # recorded, so the part run here cannot leak its setting
    monkeypatch.delenv("OMP_NUM_THREADS")
    stream = {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 30}
    cfg = {"out": str(tmp_path / "s"), "envs": ["MNISTRotations-v0"], "agents": ["er"], "budgets": [20],
           "seeds": [0, 1, 2, 3], "stream": stream}
    logs: list[str] = []
    before = torch.get_num_threads()
    try:
        records = sweep(cfg, isolate=False, log=logs.append)
        # the part run here at one thread leaves the caller's settings as they were
        assert torch.get_num_threads() == before and "OMP_NUM_THREADS" not in os.environ
        assert any("this process and 1 worker process(es), 1 torch thread(s) each" in line for line in logs)
        assert sorted((r["cell"]["seed"], r["status"]) for r in records) == [(s, "completed") for s in range(4)]
        torch.set_num_threads(1)
        for r in records:
            res = load_result(f"{r['dir']}/result.json")
            assert res.data["config"]["derived"]["stacked_seeds"] == 2
            alone = run("MNISTRotations-v0", agent="er", budget=20.0, seed=r["cell"]["seed"], stream_kwargs=stream,
                        progress=False)
            assert res.data["accuracy_matrix"] == alone.accuracy_matrix
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("when", ["while its part runs", "while it waits for the worker"])
def test_an_interrupted_part_in_this_process_stops_the_worker_beside_it(tmp_path, monkeypatch, when):
    """Ctrl-C (or any error) in this process, while its part of a shared-out group runs or while it
    waits for the worker running the other part, ends that worker at once: no retry, no wait."""
    import multiprocessing
    import signal
    import time

    from agents.harness.sweep import local, sweep

    monkeypatch.setattr(local, "available_cores", lambda: 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("OMP_NUM_THREADS")

    def interrupted(*args, **kwargs):
        time.sleep(1.0)  # the worker has started its part
        raise KeyboardInterrupt

    def finished_at_once(*args, **kwargs):
        # SIGINT to this process alone (kill -INT, a notebook's interrupt) once it is waiting
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
        return []

    monkeypatch.setattr(local, "run_unit", interrupted if when == "while its part runs" else finished_at_once)
    # the embedded MNIST-5k rotations (20 tasks): seconds of work for the worker's two seeds
    cfg = {"out": str(tmp_path / "s"), "envs": ["MNISTRotations-v0"], "agents": ["er"], "budgets": [20],
           "seeds": [0, 1, 2, 3]}
    with pytest.raises(KeyboardInterrupt):
        sweep(cfg, isolate=False, log=lambda *_: None)
    assert multiprocessing.active_children() == []
    assert not list((tmp_path / "s").rglob("result.json"))  # the worker's seeds were stopped, not waited for
