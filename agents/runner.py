"""The one benchmark loop, used by the CLI, the examples and the tests.

``run`` builds the env, the memory and the agent, steps through the stream (``act`` -> ``step``
-> ``observe``), evaluates every task's whole test set at every task end, logs to TensorBoard,
checkpoints, and returns a :class:`Result` (also written as ``result.json``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import cl_env
from agents.base import Agent, StreamInfo
from agents.logger import Logger
from agents.registry import AGENTS, agent_class, build_memory
from cl_env import metrics
from cl_env.error import UnknownNameError

EVAL_CHUNK = 1000


@dataclass
class Result:
    """What a run produces; ``result.json`` holds exactly these keys.

    Accuracies are fractions in [0, 1]. ``accuracy_matrix[i][j]`` is the test accuracy on task
    ``j`` after training through task ``i``. Generative agents (``lvae``, ``vae``, ``ewc_vae``)
    have no accuracies (``[]`` / None); they fill, one value per task end, ``neg_test_elbo``
    (nats per image on the union of the test sets seen so far), ``frechet_distance`` (same union,
    as many samples) and ``zd_consistency`` (teacher vs student ``z_d``; None before a teacher
    exists), and ``elbo_matrix[i][j]`` (-ELBO on task ``j`` after task ``i``).
    """

    env: str
    agent: str
    memory: str | None
    seed: int
    accuracy_matrix: list[list[float]]
    retained_accuracy: float | None
    backward_transfer: float | None
    forward_transfer: float | None
    forgetting: float | None
    online_accuracy: float | None
    storage_bits: int
    overhead_bits: int
    effective_examples: float
    items: int
    wall_time_s: float
    examples_per_s: float
    data: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    neg_test_elbo: list[float] | None = None
    frechet_distance: list[float] | None = None
    elbo_matrix: list[list[float]] | None = None
    zd_consistency: list[float | None] | None = None

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> Result:
        return cls(**json.loads(Path(path).read_text()))


def validate(agent: str, memory: str | None, settings: dict | None) -> type[Agent]:
    """Check names before any work; errors list the valid choices."""
    from memory import MEMORIES

    cls = agent_class(agent)
    cls.resolve_settings(settings or {})
    if memory is not None:
        if memory not in MEMORIES:
            raise UnknownNameError("memory", memory, MEMORIES)
        if memory not in AGENTS[agent].memories:
            accepted = list(AGENTS[agent].memories) or "none"
            raise ValueError(f"agent {agent!r} cannot use memory {memory!r}; it accepts: {accepted}")
    return cls


def evaluate(agent: Agent, tests: list[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
    """Accuracy on each task's whole test set (``uint8`` images, batched by ``EVAL_CHUNK``)."""
    correct = []
    for j, (x, y) in enumerate(tests):
        c = torch.zeros((), dtype=torch.int64, device=y.device)
        for s in range(0, len(y), EVAL_CHUNK):
            logits = agent.predict(x[s:s + EVAL_CHUNK].float().div_(255.0), j)
            c += (logits.argmax(1) == y[s:s + EVAL_CHUNK]).sum()
        correct.append(c)
    counts = np.array([len(y) for _, y in tests], dtype=np.float64)
    return torch.stack(correct).cpu().numpy() / counts


def evaluate_generative(agent: Agent, tests: list[tuple[torch.Tensor, torch.Tensor]], t: int,
                        net) -> tuple[np.ndarray, float, float]:
    """Per-task -ELBO of every task, -ELBO and Fréchet distance on the union of tasks ``0..t``."""
    from agents.evaluators import generative_frechet
    from memory.generative import negative_elbo

    model = agent.memory.model
    per_task = np.array([negative_elbo(model, x.float().div(255.0)) for x, _ in tests])
    counts = np.array([len(y) for _, y in tests[: t + 1]], dtype=np.float64)
    union_elbo = float((per_task[: t + 1] * counts).sum() / counts.sum())
    real = torch.cat([x for x, _ in tests[: t + 1]]).float().div_(255.0)
    samples = agent.memory.generate(len(real), generator=torch.Generator().manual_seed(agent.seed + 99))
    return per_task, union_elbo, generative_frechet(net, samples, real)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run(
    env_id: str,
    agent: str = "online",
    memory: str | None = None,
    budget: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    out: str | Path | None = None,
    settings: dict | None = None,
    stream_kwargs: dict | None = None,
    batch_size: int | None = None,
    resume: bool = False,
    checkpoint_every: int | None = None,
    log_every: int = 50,
    progress: bool | None = None,
    stop_after_task: int | None = None,
) -> Result:
    """Run one agent on one stream and return its :class:`Result`.

    Args:
        env_id: A registered id (``cl-env list``).
        agent: A registered agent name.
        memory: A memory name the agent accepts (default: the agent's).
        budget: Incremental storage in effective real examples (``budget * C * H * W * 8`` bits).
        seed: Seeds the agent (model init, sampling) and the order of examples inside each task.
        device: ``"cpu"`` or ``"cuda"``.
        out: Directory for ``result.json``, TensorBoard events and ``checkpoint.pt``; None keeps
            everything in memory.
        settings: Agent settings (``--set key=value``); keys ``memory.NAME`` go to the memory's
            constructor (e.g. ``memory.items=3000``, ``memory.categories=8``, ``memory.n_sets=5``).
        stream_kwargs: Options of the stream (``source``, ``root``, ``seed`` of the instance, sizes).
        batch_size: Examples per step (default 10, the papers' value; 1 for ``sb3``).
        resume: Continue from ``out/checkpoint.pt`` if it exists.
        checkpoint_every: Also checkpoint every this many steps (task ends always checkpoint).
        log_every: Steps between loss logs.
        progress: Show a tqdm bar (default: only on an interactive terminal).
        stop_after_task: Stop (as if killed) after this task's checkpoint; for tests and demos.
    """
    started = time.perf_counter()
    settings = dict(settings or {})
    memory_options = {k.split(".", 1)[1]: settings.pop(k) for k in list(settings) if k.startswith("memory.")}
    stream_kwargs = dict(stream_kwargs or {})
    cls = validate(agent, memory, settings)
    if batch_size is None:
        batch_size = cls.batch_sizes[0] if cls.batch_sizes else 10
    if cls.batch_sizes and batch_size not in cls.batch_sizes:
        raise ValueError(f"agent {agent!r} runs with batch_size in {list(cls.batch_sizes)}, "
                         f"got {batch_size}; pass --batch-size {cls.batch_sizes[0]}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use --device cpu")
    out = Path(out) if out is not None else None
    ckpt_path = out / "checkpoint.pt" if out is not None else None
    if resume and out is None:
        raise ValueError("resume=True needs an out directory holding checkpoint.pt")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # gymnasium's float-image notes
        # torch mode on every device: the CPU runs exercise the same code path as CUDA runs,
        # and the batches are prepared on the device once per pass
        env = gym.make(env_id, batch_size=batch_size, device=device, disable_env_checker=True,
                       **stream_kwargs)
    raw: cl_env.ContinualEnv = env.unwrapped
    stream = raw.stream
    if cls.needs_task_labels and not raw.task_labels:
        raise ValueError(f"agent {agent!r} needs task labels; do not pass task_labels=False")
    info = StreamInfo.from_stream(stream)
    mem = build_memory(agent, memory, budget, info.memory_spec(device), seed=seed, options=memory_options)
    learner = cls(info, mem, settings, device=device, seed=seed)
    dev = torch.device(device)
    tests = [(t.test_x.to(dev), t.test_y.to(dev)) for t in stream.tasks]
    T = stream.n_tasks
    config = {
        "env": env_id, "agent": agent, "memory": None if mem is None else mem.name,
        "budget": budget, "seed": seed, "device": device, "batch_size": batch_size,
        "settings": learner.settings, "memory_options": memory_options, "stream_kwargs": {k: str(v) for k, v in stream_kwargs.items()},
        "python": platform.python_version(), "torch": torch.__version__, "cl_env": cl_env.__version__,
    }

    learner.prepare(stream)
    gen = learner.generative
    net = None
    if gen:
        from agents.evaluators import feature_classifier

        net, net_acc = feature_classifier(stream, device, seed=0)
        config["frechet_classifier_accuracy"] = round(net_acc, 4)
    gen_log: dict[str, list] = {"neg_test_elbo": [], "frechet_distance": [], "zd_consistency": []}
    R = np.full((T, T), np.nan)
    # b_j of FWT: the randomly initialised model (generative agents: its -ELBO)
    baseline = np.zeros(T) if gen else evaluate(learner, tests)
    reward_sum, steps, elapsed_before = 0.0, 0, 0.0
    obs, _ = env.reset(seed=seed)
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, weights_only=False)
        if state["config"] != config:
            raise ValueError(f"{ckpt_path} was written by a different configuration: "
                             f"{state['config']} vs {config}; use another --out or drop --resume")
        learner.load_state_dict(state["agent"])
        R, baseline, gen_log = state["R"], state["baseline"], state["gen_log"]
        reward_sum, steps, elapsed_before = state["reward_sum"], state["steps"], state["elapsed"]
        if steps < raw.n_batches:
            obs = raw.seek(steps)
    logger = Logger(out, purge_step=steps if steps else None)
    started_loop = time.perf_counter()

    def checkpoint() -> None:
        if ckpt_path is None:
            return
        _atomic_save({"agent": learner.state_dict(), "R": R, "baseline": baseline, "gen_log": gen_log,
                      "reward_sum": reward_sum, "steps": steps, "config": config,
                      "elapsed": elapsed_before + time.perf_counter() - started}, ckpt_path)

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=raw.n_batches, initial=steps, disable=not show, desc=f"{agent} on {env_id}")
    reward_acc = torch.zeros((), device=dev)
    stopped = False
    while steps < raw.n_batches:
        action = learner.act(obs)
        next_obs, reward, terminated, _, step_info = env.step(action)
        losses = learner.observe(obs, step_info["y"])
        reward_acc += reward
        steps += 1
        bar.update(1)
        if steps % log_every == 0:
            logger.scalars(losses, steps * batch_size, "train/")
        if raw.last_task_end:
            t = raw.last_t
            learner.end_task(t)
            reward_sum += float(reward_acc)
            reward_acc.zero_()
            if gen:
                R[t], union_elbo, fd = evaluate_generative(learner, tests, t, net)
                cons = learner.memory.consistency_history[-1]
                gen_log["neg_test_elbo"].append(union_elbo)
                gen_log["frechet_distance"].append(fd)
                gen_log["zd_consistency"].append(cons)
                logger.scalars({f"task_{j}": R[t, j] for j in range(T)}, t, "eval/neg_elbo/")
                logger.scalars({"neg_test_elbo": union_elbo, "frechet_distance": fd,
                                **({} if cons is None else {"zd_consistency": cons})}, t, "eval/")
            else:
                R[t] = evaluate(learner, tests)
                logger.scalars({f"task_{j}": R[t, j] for j in range(T)}, t, "eval/accuracy/")
                logger.scalars({"retained_accuracy": R[t, : t + 1].mean(),
                                "online_accuracy": reward_sum / steps}, t, "eval/")
                logger.accuracy_matrix(R, t, figure=terminated)
            logger.scalars(learner.storage(), t, "storage/")
            logger.scalars(learner.summary(), t)
            visuals = dict(learner.visuals())
            if learner.memory is not None:
                visuals.update(learner.memory.visuals())
                probe = torch.cat([x[:100] for x, _ in tests[: t + 1]]).float().div_(255.0)
                logger.scalars(learner.memory.report(probe), t)
            for tag, images in visuals.items():
                logger.images(tag, images, t)
            checkpoint()
            if stop_after_task is not None and t >= stop_after_task and not terminated:
                stopped = True
                break
        elif checkpoint_every and steps % checkpoint_every == 0:
            reward_sum += float(reward_acc)
            reward_acc.zero_()
            checkpoint()
        obs = next_obs
    bar.close()
    reward_sum += float(reward_acc)
    logger.close()
    if stopped:
        raise KeyboardInterrupt(f"stopped after task {stop_after_task} (checkpoint in {out})")

    wall = elapsed_before + time.perf_counter() - started
    store = learner.storage()
    spec = info.memory_spec(device)
    accuracy = {} if gen else {
        "accuracy_matrix": R.tolist(),
        "retained_accuracy": metrics.retained_accuracy(R),
        "backward_transfer": metrics.backward_transfer(R),
        "forward_transfer": metrics.forward_transfer(R, baseline),
        "forgetting": metrics.forgetting(R),
        "online_accuracy": reward_sum / max(steps, 1),
    }
    generative = {} if not gen else {
        "accuracy_matrix": [], "retained_accuracy": None, "backward_transfer": None,
        "forward_transfer": None, "forgetting": None, "online_accuracy": None,
        "elbo_matrix": R.tolist(), **gen_log,
    }
    result = Result(
        env=env_id, agent=agent, memory=config["memory"], seed=seed, **accuracy, **generative,
        storage_bits=store["storage_bits"], overhead_bits=store["overhead_bits"],
        effective_examples=store["storage_bits"] / spec.example_bits, items=store["items"],
        wall_time_s=wall,
        examples_per_s=steps * batch_size / max(time.perf_counter() - started_loop, 1e-9),
        data=stream.describe(), config=config,
    )
    if out is not None:
        result.to_json(out / "result.json")
    return result
