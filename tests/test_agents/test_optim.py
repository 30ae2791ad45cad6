"""Optimisers and schedules: ``PlainSGD`` is a real ``torch.optim.Optimizer`` (SGD's update
exactly, schedulers, hooks, state), and an agent may bring any optimiser and scheduler."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from agents import run
from agents.base import PlainSGD


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def _train(net, opt, sched=None, steps=7):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(4, 6, generator=g), torch.randint(0, 3, (4,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()
    return [p.detach().clone() for p in net.parameters()]


def test_plain_sgd_is_a_torch_optimizer_with_sgds_update_and_groups():
    a, b = _net(), _net()
    opt = PlainSGD([{"params": a[0].parameters()}, {"params": a[2].parameters(), "lr": 0.02}], lr=0.1)
    ref = torch.optim.SGD([{"params": b[0].parameters()}, {"params": b[2].parameters(), "lr": 0.02}], lr=0.1)
    assert isinstance(opt, torch.optim.Optimizer)
    for p, q in zip(_train(a, opt), _train(b, ref), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="lr must be > 0"):
        PlainSGD(_net().parameters(), lr=0.0)


def test_plain_sgd_follows_a_scheduler_and_round_trips_its_state():
    a, b = _net(), _net()
    opt, ref = PlainSGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    s1 = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    s2 = torch.optim.lr_scheduler.StepLR(ref, step_size=2, gamma=0.5)
    for p, q in zip(_train(a, opt, s1), _train(b, ref, s2), strict=True):
        assert torch.equal(p, q)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)
    fresh = PlainSGD(_net().parameters(), lr=0.1)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    fresh.load_state_dict({"lr": 0.3})  # a checkpoint written before PlainSGD was an Optimizer
    assert fresh.param_groups[0]["lr"] == 0.3


def test_plain_sgd_does_not_import_dynamo():
    code = ("import sys, torch; from agents.base import PlainSGD; m = torch.nn.Linear(3, 2); "
            "o = PlainSGD(m.parameters(), lr=0.1); s = torch.optim.lr_scheduler.StepLR(o, 1); "
            "m(torch.ones(1, 3)).sum().backward(); o.step(); s.step(); o.zero_grad(); "
            "o.load_state_dict(o.state_dict()); print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


AGENTS_MODULE = textwrap.dedent('''
    import torch
    from agents.replay import ExperienceReplay as ER


    class AdamStep(ER):
        """ER with Adam and a step-decay schedule stepped after every optimiser step."""

        MEMORIES, DEFAULT_MEMORY, DEFAULT_BUDGET = ("reservoir",), "reservoir", 20

        def make_optimizer(self):
            return torch.optim.Adam(self.model.parameters(), lr=1e-3)

        def make_scheduler(self):
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=10, gamma=0.5)

        def summary(self):
            return {"lr": self.optimizer.param_groups[0]["lr"], "steps": self.scheduler.last_epoch}


    class PerTask(ER):
        """ER whose plain-SGD rate halves at every task end."""

        SCHEDULE_EVERY = "task"
        MEMORIES, DEFAULT_MEMORY, DEFAULT_BUDGET = ("reservoir",), "reservoir", 20

        def make_scheduler(self):
            return torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=0.5)

        def summary(self):
            return {"lr": self.optimizer.param_groups[0]["lr"]}
''')


@pytest.fixture
def sched_module(tmp_path, monkeypatch):
    (tmp_path / "my_sched.py").write_text(AGENTS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_sched"
    sys.modules.pop("my_sched", None)


def _stream(mnist_root):
    return {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 3,
            "train_per_task": 50}


def _last(out, key):
    import json

    rows = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r][-1]


def test_an_agent_brings_adam_and_a_scheduler_and_a_resumed_run_equals_an_uninterrupted_one(
        sched_module, mnist_root, tmp_path):
    stream = _stream(mnist_root)
    kw = {"agent": "my_sched:AdamStep", "stream_kwargs": stream, "progress": False, "log": "jsonl"}
    full = run("MNISTRotations-v0", out=tmp_path / "full", **kw)
    steps = 3 * 50 // 10  # batches of 10
    assert _last(tmp_path / "full", "steps") == steps
    assert _last(tmp_path / "full", "lr") == pytest.approx(1e-3 * 0.5 ** (steps // 10))
    with pytest.raises(KeyboardInterrupt):  # what a killed run leaves: its checkpoint
        run("MNISTRotations-v0", out=tmp_path / "cut", stop_after_task=0, **kw)
    resumed = run("MNISTRotations-v0", out=tmp_path / "cut", resume=True, **kw)
    assert resumed.accuracy_matrix == full.accuracy_matrix
    assert _last(tmp_path / "cut", "lr") == _last(tmp_path / "full", "lr")
    assert _last(tmp_path / "cut", "steps") == steps


def test_a_schedule_can_step_at_task_ends(sched_module, mnist_root, tmp_path):
    run("MNISTRotations-v0", agent="my_sched:PerTask", stream_kwargs=_stream(mnist_root),
        progress=False, log="jsonl", out=tmp_path)
    assert _last(tmp_path, "lr") == pytest.approx(0.1 * 0.5 ** 3)
