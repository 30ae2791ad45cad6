"""What the benchmark scripts share: the agent x memory pairs they time, the budget each pair
runs at, and the bare PyTorch loop they are measured against. Imported as ``common`` (a script's
own directory is first on ``sys.path``)."""

from __future__ import annotations

import time

import torch
from torch.nn import functional as F

import cl_env
from agents.models import MLP
from agents.registry import AGENTS, agent_entry, build_memory
from memory.base import MemorySpec

SKIP = {"sb3", "lvae", "vae", "ewc_vae"}  # Stable-Baselines3's loop; generative agents run on other streams
FALLBACK_BUDGET = 100.0  # for memories without a protocol default size (addressable with GEM)


def pairs(agents: list[str] | None, only: list[str] | None = None) -> list[tuple[str, str | None]]:
    """(agent, memory) for every memory each agent accepts (``only``: these memories; memoryless
    agents still run), every classification agent by default."""
    out = []
    for name in agents or [a for a in AGENTS if a not in SKIP]:
        memories = [m for m in agent_entry(name).memories if only is None or m in only]
        if only is not None and agent_entry(name).memories and not memories:
            continue
        out += [(name, m) for m in memories] if memories else [(name, None)]
    return out


def budget_for(agent: str, memory: str | None, budget: float | None) -> float | None:
    """``budget``, else the agent's default, else :data:`FALLBACK_BUDGET` for a memory without a
    protocol default."""
    if budget is not None or memory is None:
        return budget
    try:
        build_memory(agent, memory, None, MemorySpec((1, 28, 28), 10, 2), seed=0, options={})
    except NotImplementedError:
        return FALLBACK_BUDGET
    return None


def bare_loop(env: str, n_tasks: int | None = None, device: str = "cpu", evaluate: bool = True,
              stream_kwargs: dict | None = None) -> float:
    """Seconds of plain PyTorch over ``env``'s prepared examples (MLP 784-100-100-10, SGD lr 0.1,
    batches of 10 within each task, one forward/backward/step each) and, with ``evaluate``, every
    task's test set at every task end (``stream_kwargs``: e.g. ``{"source": "mnist"}``)."""
    kwargs = dict(stream_kwargs or {})
    if n_tasks is not None:
        kwargs["n_tasks"] = n_tasks
    stream = cl_env.make_stream(env, **kwargs)
    px, py, index, _ = stream.pools()
    dev = torch.device(device)
    x, y = px[index].float().div_(255.0).flatten(1).to(dev), py[index].to(dev)
    tests = [(t.test_x.float().div_(255.0).flatten(1).to(dev), t.test_y.to(dev)) for t in stream.tasks]
    torch.manual_seed(0)
    model = MLP(x.shape[1], stream.n_classes).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # each task's whole batches of 10 (as the env steps them: a task's last partial batch dropped)
    starts, offset = [], 0
    for task in stream.tasks:
        starts.append([offset + s for s in range(0, task.n_train - task.n_train % 10, 10)])
        offset += task.n_train
    start = time.perf_counter()
    for task_starts in starts:
        for s in task_starts:
            loss = F.cross_entropy(model(x[s:s + 10]), y[s:s + 10])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if evaluate:
            with torch.no_grad():
                for tx, ty in tests:
                    (model(tx).argmax(1) == ty).float().mean()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
