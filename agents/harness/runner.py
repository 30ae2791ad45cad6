"""The one benchmark loop, used by the CLI, the examples and the tests.

``run`` builds the env, the memory and the agent, steps through the stream (``act`` -> ``step``
-> ``observe``), evaluates every task's whole test set at every task end, logs to TensorBoard,
checkpoints, and returns a :class:`Result` (also written as ``result.json``).

A run directory holds one run: ``config.json`` (its resolved configuration and hash, written at
start), ``checkpoint.pt`` (at task ends), TensorBoard events and, at the end, ``result.json``
(status ``completed`` or ``diverged``); while a run writes into it, the directory is locked
(:mod:`agents.harness.lock`, taken before anything is written). See :mod:`agents.harness.results` for identity and grouping.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from agents.base import Agent, StreamInfo
from agents.harness import checkpoint as ckpt
from agents.harness import results
from agents.harness.config import RunConfig
from agents.harness.lock import RunLock
from agents.harness.logger import Logger, parse_formats
from agents.registry import agent_class, build_memory
from cl_env import checks, metrics
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
    # with validation_fraction > 0: the same matrix on each task's held-out validation examples
    # (for choosing hyperparameters without reading the test sets), and its final retained mean
    validation_accuracy_matrix: list[list[float]] | None = None
    validation_retained_accuracy: float | None = None
    baseline_accuracy: list[float] | None = None  # b_j of FWT: the initial model on each task
    status: str = "completed"
    config_hash: str = ""
    divergence: dict | None = None
    warnings: list[str] = field(default_factory=list)
    counters: dict = field(default_factory=dict)

    def to_json(self, path: str | Path) -> None:
        """Write atomically, as strict JSON (non-finite values as null)."""
        results.write_json_atomic(path, asdict(self))

    @classmethod
    def from_json(cls, path: str | Path) -> Result:
        data = results.read_json(path)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def validate(agent: str, memory: str | None, settings: dict | None) -> type[Agent]:
    """Check names before any work; errors list the valid choices."""
    from agents.registry import agent_entry
    from memory import is_memory_name, memory_names

    cls = agent_class(agent)
    cls.resolve_settings(settings or {})
    if memory is not None:
        if not is_memory_name(memory):
            raise UnknownNameError("memory", memory, memory_names())
        entry = agent_entry(agent)
        if memory not in entry.memories:
            accepted = list(entry.memories) or "none"
            raise ValueError(f"agent {agent!r} cannot use memory {memory!r}; it accepts: {accepted}")
    return cls


# (agent, memory) -> seconds per training example on this project's 2-core CPU, at the smallest
# and largest configuration measured (docs/benchmarks.md: SRM Table 1 on MNISTRotations-v0,
# 20,000 examples: er+srm 118-906 s, gem+srm 590-4,287 s; compress-then-recall 424-1,290 s)
SLOW_ON_CPU = {
    ("er", "srm"): (118 / 20_000, 906 / 20_000),
    ("gem", "srm"): (590 / 20_000, 4_287 / 20_000),
    ("recall", "addressable"): (424 / 20_000, 1_290 / 20_000),
}


def slow_note(agent: str, memory: str | None, device: str, n_examples: int) -> str | None:
    """One line saying a configuration is known to be slow on a CPU, with the expected time
    (None when it is not, or when it runs on a GPU)."""
    rate = SLOW_ON_CPU.get((agent, memory))
    if rate is None or not str(device).startswith("cpu"):
        return None
    lo, hi = (r * n_examples / 60 for r in rate)
    if hi < 1:
        return None
    return (f"note: {agent} with memory {memory} is slow on a CPU: expect about {lo:.0f}-{hi:.0f} minutes "
            f"for these {n_examples:,} examples on 2 cores (measured, docs/benchmarks.md); "
            "a GPU (--device cuda) or a shorter stream (--stream n_tasks=5) is faster")


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
    from agents.harness.evaluators import generative_frechet
    from memory.generative import negative_elbo

    model = agent.memory.model
    per_task = np.array([negative_elbo(model, x.float().div(255.0)) for x, _ in tests])
    counts = np.array([len(y) for _, y in tests[: t + 1]], dtype=np.float64)
    union_elbo = float((per_task[: t + 1] * counts).sum() / counts.sum())
    real = torch.cat([x for x, _ in tests[: t + 1]]).float().div_(255.0)
    samples = agent.memory.generate(len(real), generator=torch.Generator().manual_seed(agent.seed + 99))
    return per_task, union_elbo, generative_frechet(net, samples, real)


RUN_FILES = (results.CONFIG_FILE, results.RESULT_FILE, results.CHECKPOINT_FILE, "error.txt",
             "progress.csv", "progress.jsonl")


def _run_files(out: Path) -> list[Path]:
    """The files of a run in ``out`` (configuration, result, checkpoint, TensorBoard events)."""
    if not out.is_dir():
        return []
    found = [out / n for n in RUN_FILES if (out / n).exists()]
    return found + sorted(out.glob("events.out.tfevents.*")) + sorted(out.glob(".checkpoint.pt.*.tmp"))


def _recorded_config(out: Path) -> dict | None:
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
    files = _run_files(out)
    if overwrite:
        for f in files:
            f.unlink()
        return False
    recorded = _recorded_config(out)
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


# Fault injection for tests (a kill at a known point instead of a race): "N[;TEXT[;MARKER]]"
# SIGKILLs the process right after its N-th checkpoint, if its run directory contains TEXT, and
# only while the file MARKER does not exist (it is created just before the kill).
FAULT_ENV = "CL_ENV_TEST_KILL_AFTER_CHECKPOINT"


def _fault_injection(out: Path | None, n: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec or out is None:
        return
    count, text, marker = (spec.split(";") + ["", ""])[:3]
    if int(count) != n or (text and text not in str(out)):
        return
    if marker:
        if Path(marker).exists():
            return
        Path(marker).write_text(str(os.getpid()))
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def _recording_warnings():
    """Warnings shown during the run, also kept (once each) for ``result.json``."""
    caught: list[str] = []
    with warnings.catch_warnings():
        show = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):
            text = f"{category.__name__}: {message}"
            if text not in caught:
                caught.append(text)
            show(message, category, filename, lineno, file, line)

        warnings.showwarning = record
        yield caught


def _parameters(learner: Agent) -> list[torch.Tensor]:
    params = list(learner.model.parameters()) if isinstance(learner.model, torch.nn.Module) else []
    inner = getattr(learner.memory, "model", None)
    if isinstance(inner, torch.nn.Module):
        params += list(inner.parameters())
    return params


def _nonfinite_parameters(learner: Agent) -> bool:
    params = _parameters(learner)
    if not params:
        return False
    return not bool(torch.stack([torch.isfinite(p.detach()).all() for p in params]).all())


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
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    log_every: int = 50,
    progress: bool | str | None = None,
    stop_after_task: int | None = None,
    log: str | list[str] | tuple[str, ...] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
    items: int | None = None,
    preset: str | None = None,
) -> Result:
    """Run one agent on one stream and return its :class:`Result`.

    Args:
        env_id: A registered id (``cl-env list``).
        agent: A registered agent name.
        memory: A memory name the agent accepts (default: the agent's).
        budget: Incremental storage in effective real examples (``budget * C * H * W * 8`` bits).
        items: Instead of ``budget``, the exact number of items a buffer memory holds (the papers'
            "buffer 500"; ``--items``), recorded in the configuration as ``memory_items``; the bits
            it costs are reported as for a budget. Memories without a fixed item count refuse it.
        seed: Seeds the agent (model init, sampling) and the order of examples inside each task.
        device: ``"cpu"`` or ``"cuda"``.
        out: Directory for ``config.json``, ``result.json``, TensorBoard events and
            ``checkpoint.pt``; None keeps everything in memory. A directory that holds another
            run is refused (:class:`agents.harness.results.RunDirectoryError`) unless ``resume`` or
            ``overwrite``.
        settings: Agent settings (``--set key=value``); keys ``memory.NAME`` go to the memory's
            constructor (e.g. ``memory.items=3000``, ``memory.categories=8``, ``memory.n_sets=5``).
        stream_kwargs: Options of the stream (``source``, ``root``, ``seed`` of the instance, sizes).
        batch_size: Examples per step (default 10, the papers' value; 1 for ``sb3``).
        resume: Continue the same configuration from ``out/checkpoint.pt`` (which must exist).
        overwrite: Delete the run files in ``out`` first and start afresh.
        checkpoint_every: Also checkpoint every this many steps (task ends always checkpoint).
        log_every: Steps between loss logs (and between divergence checks).
        log: Where scalars go: any of ``tensorboard``, ``csv`` (``out/progress.csv``), ``jsonl``
            (``out/progress.jsonl``), ``stdout``, as a list or ``"tensorboard,csv"``; default
            TensorBoard. Not part of the run's identity (it changes no number).
        progress: True: a tqdm bar; False: nothing; ``"lines"``: one line per task on stderr
            with elapsed time and ETA (what ``cl-env run`` prints when stderr is not a terminal);
            None: a bar on an interactive terminal, else nothing.
        stop_after_task: Stop (as if killed) after this task's checkpoint; for tests and demos.
        on_checkpoint: Called as ``on_checkpoint(out, steps)`` after every checkpoint is on disk
            (its events flushed first), e.g. to copy the run directory to storage other machines
            can reach (what a Ray sweep cell does); not part of the run's identity.
        preset: A preset's name (``NAME`` or ``NAME@VERSION``, :mod:`agents.presets`): its memory,
            size and settings, under the explicit ones; recorded in the configuration.

    A non-finite loss (checked every step, on the device) or parameter (checked every
    ``log_every`` steps and at task ends) stops the run: the result has ``status="diverged"``,
    ``divergence`` (step, task, examples seen, reason) and the accuracy rows measured so far.
    """
    return run_seeds(env_id, agent, memory, budget, seeds=[seed], device=device, outs=[out], settings=settings,
                     stream_kwargs=stream_kwargs, batch_size=batch_size, resume=resume, overwrite=overwrite,
                     checkpoint_every=checkpoint_every, log_every=log_every, progress=progress,
                     stop_after_task=stop_after_task, log=log, on_checkpoint=on_checkpoint, items=items,
                     preset=preset)[0]


def run_seeds(
    env_id: str,
    agent: str = "online",
    memory: str | None = None,
    budget: float | None = None,
    seeds: list[int] | tuple[int, ...] = (0,),
    device: str = "cpu",
    outs: list[str | Path | None] | None = None,
    settings: dict | None = None,
    stream_kwargs: dict | None = None,
    batch_size: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int | None = None,
    log_every: int = 50,
    progress: bool | str | None = None,
    stop_after_task: int | None = None,
    log: str | list[str] | tuple[str, ...] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
    stack: bool = True,
    items: int | None = None,
    preset: str | None = None,
) -> list[Result]:
    """:func:`run` for several seeds of one configuration in this process; one :class:`Result`
    per seed, each written to its own ``outs[k]`` exactly as :func:`run` writes it.

    The stream is prepared once for all seeds. When ``stack`` and the agents can be stacked
    (:func:`agents.stacked.why_not_stackable`: ``online``, ``er``, ``ewc``, ``lwf``, ``agem`` on an
    MLP, with no memory or a ``reservoir``/``task_ring`` one) and every seed starts from the same
    step, the seeds are trained together as one :class:`agents.stacked.SeedStack` (one batched
    step for all; each seed's numbers equal its separate run's at one torch thread); otherwise
    they run one after another. A seed that diverges leaves the stack and the others go on.
    ``wall_time_s`` and ``examples_per_s`` of stacked seeds are the group's (their
    ``config["derived"]["stacked_seeds"]`` says how many trained together).

    Args:
        seeds: The seeds (distinct).
        outs: One run directory (or None) per seed; default all None.
        stack: False runs the seeds one after another even when they could be stacked.

    The other arguments are :func:`run`'s.
    """
    started = time.perf_counter()
    seeds = [int(s) for s in seeds]
    outs = [None] * len(seeds) if outs is None else list(outs)
    if not seeds or len(set(seeds)) != len(seeds) or len(outs) != len(seeds):
        raise ValueError(f"seeds must be distinct and one out directory per seed, got seeds {seeds} and "
                         f"{len(outs)} out director(ies)")
    if checkpoint_every is not None:
        checks.integer("checkpoint_every", checkpoint_every, 1, fix="--checkpoint-every 1000")
    checks.integer("log_every", log_every, 1, fix="log_every=50")
    # the identity, built and checked once (a preset filled in under the explicit options); each
    # seed's configuration is this one with its seed
    base = RunConfig.build(env_id, agent, memory, budget, seeds[0], device, settings, stream_kwargs, batch_size,
                           items, preset)
    cls = validate(agent, base.memory, base.to_dict()["settings"])
    if cls.batch_sizes and base.batch_size not in cls.batch_sizes:
        raise ValueError(f"agent {agent!r} runs with batch_size in {list(cls.batch_sizes)}, "
                         f"got {base.batch_size}; pass --batch-size {cls.batch_sizes[0]}")
    opts = _RunOptions(base, checkpoint_every, log_every, parse_formats(log), progress, stop_after_task,
                       on_checkpoint, started, multi=len(seeds) > 1)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device; use --device cpu")
    if (resume or overwrite) and any(o is None for o in outs):
        raise ValueError("resume=True / overwrite=True need an out directory")
    with contextlib.ExitStack() as held:  # the run directories' locks, released however the call ends
        plans = []
        for seed, out in zip(seeds, outs, strict=True):
            config = base.with_seed(seed).to_dict()
            out = Path(out) if out is not None else None
            from_checkpoint = False
            if out is not None:
                held.enter_context(_locked(out))
                from_checkpoint = prepare_run_directory(out, config, resume, overwrite)
            plans.append((seed, out, config, from_checkpoint))
        return _run_plans(opts, cls, plans, stack)


@contextlib.contextmanager
def _locked(out: Path):
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


def _run_plans(opts: _RunOptions, cls: type[Agent], plans: list, stack: bool) -> list[Result]:
    with _recording_warnings() as caught:
        lanes: list[_Lane] = []
        shared = None
        for seed, out, config, from_checkpoint in plans:
            lanes.append(_Lane(opts, cls, seed, out, config, from_checkpoint, caught, shared, first=not lanes))
            shared = lanes[0].shared
        from agents.stacked import why_not_stackable

        together = (stack and len(lanes) > 1 and len({lane.steps for lane in lanes}) == 1
                    and why_not_stackable([lane.learner for lane in lanes]) is None)
        if together:
            _drive(lanes, stacked=True)
        else:
            for lane in lanes:
                _drive([lane], stacked=False)
        return [lane.result for lane in lanes]


@dataclass
class _RunOptions:
    """What every seed of a :func:`run_seeds` call shares: the configuration (its seed is the
    first seed's; each seed's own is ``config.with_seed``) and how the run is driven."""

    config: RunConfig
    checkpoint_every: int | None
    log_every: int
    log_formats: list[str]
    progress: bool | str | None
    stop_after_task: int | None
    on_checkpoint: Callable[[Path, int], None] | None
    started: float
    multi: bool

    @property
    def env_id(self) -> str:
        return self.config.env

    @property
    def agent(self) -> str:
        return self.config.agent

    @property
    def device(self) -> str:
        return self.config.device


class _Lane:
    """One seed's run: its env, agent, memory, logger, checkpoint and accuracy matrix.

    ``shared`` (the first seed's ``(stream, tests, validation sets)``) lets the other seeds of a
    :func:`run_seeds` call use the stream prepared once.
    """

    def __init__(self, o: _RunOptions, cls: type[Agent], seed: int, out: Path | None, config: dict,
                 from_checkpoint: bool, caught: list[str], shared: tuple | None, first: bool):
        self.o, self.seed, self.out, self.caught = o, seed, out, caught
        # the first seed's clock starts with the call (validation included), the others' here
        self.started = o.started if first else time.perf_counter()
        self.result: Result | None = None
        self.done = False
        agent, env_id, device = o.agent, o.env_id, o.device
        plain = o.config.to_dict()  # the configuration's mappings as plain dicts, for the env, memory and agent
        settings = plain["settings"]
        batch_size = self.batch_size = config["batch_size"]
        self.ckpt_path = out / results.CHECKPOINT_FILE if out is not None else None
        self.chash = chash = results.config_hash(config)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="gymnasium")  # float-image notes
            # torch mode on every device: the CPU runs exercise the same code path as CUDA runs,
            # and the batches are prepared on the device once per pass
            stream_kwargs = plain["stream_kwargs"]
            env_kwargs = stream_kwargs if shared is None else {**stream_kwargs, "stream": shared[0]}
            self.env = env = gym.make(env_id, batch_size=batch_size, device=device, disable_env_checker=True,
                                      **env_kwargs)
        self.raw = raw = env.unwrapped
        stream = raw.stream
        if cls.needs_task_labels and not raw.task_labels:
            raise ValueError(f"agent {agent!r} needs task labels; do not pass task_labels=False")
        self.info = info = StreamInfo.from_stream(stream)
        for key, unit, flag in (("budget", "effective examples", "--budget"), ("memory_items", "items", "--items")):
            if config.get(key) is not None and config[key] > stream.n_train:
                raise checks.fail(key if key == "budget" else "items", config[key],
                                  f"at most {stream.n_train:,} {unit}: {env_id} has {stream.n_train:,} "
                                  "training examples in all, so a larger memory could never fill",
                                  f"{flag} {min(200, stream.n_train)}")
        mem = build_memory(agent, o.config.memory, o.config.budget, info.memory_spec(device), seed=seed,
                           options=plain["memory_options"], items=o.config.memory_items)
        _check_holds_an_item(mem, config, env_id)
        self.learner = learner = cls(info, mem, settings, device=device, seed=seed)
        dev = self.dev = torch.device(device)
        if shared is None:
            tests = [(t.test_x.to(dev), t.test_y.to(dev)) for t in stream.tasks]
            vals = ([tuple(v.to(dev) for v in stream.validation_set(t, as_uint8=True)) for t in range(stream.n_tasks)]
                    if stream.has_validation and not cls.generative else None)
            shared = (stream, tests, vals)
        self.shared = shared
        self.tests, self.vals = shared[1], shared[2]
        self.stream = stream
        T = self.T = stream.n_tasks
        self.config = config = {**config, "runtime": results.runtime_info(),
                                "derived": {"settings": results.plain(learner.settings),
                                            "memory_class": None if mem is None else type(mem).__name__,
                                            "test_task_ids": bool(learner.uses_test_task_ids)}}
        if out is not None:
            results.write_json_atomic(out / results.CONFIG_FILE, {
                "config_hash": chash, "status": "running", "config": config, "pid": os.getpid(),
                "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})

        learner.prepare(stream)
        self.gen = gen = learner.generative
        self.net = None
        if gen:
            from agents.harness.evaluators import feature_classifier

            self.net, net_acc = feature_classifier(stream, device, seed=0)
            config["derived"]["frechet_classifier_accuracy"] = round(net_acc, 4)
        self.gen_log: dict[str, list] = {"neg_test_elbo": [], "frechet_distance": [], "zd_consistency": []}
        self.R = np.full((T, T), np.nan)
        self.V = np.full((T, T), np.nan)  # validation accuracies (stay NaN without a validation split)
        # b_j of FWT: the randomly initialised model (generative agents: its -ELBO)
        self.baseline = np.zeros(T) if gen else evaluate(learner, self.tests)
        # correct online predictions, counted exactly (an int), so that where checkpoints fall
        # (--checkpoint-every) cannot change online_accuracy in its last digits
        self.correct, self.steps, self.elapsed_before, self.resumes = 0, 0, 0.0, 0
        self.obs, _ = env.reset(seed=seed)
        if from_checkpoint:
            state = ckpt.load(self.ckpt_path)  # weights only: a crafted file is refused, never run
            if not isinstance(state, dict) or state.get("config_hash") != chash:
                raise results.RunDirectoryError(
                    f"{self.ckpt_path} was not written by this configuration (hash "
                    f"{checks.shown(state.get('config_hash')) if isinstance(state, dict) else None} "
                    f"vs {chash}); use another --out, or --overwrite to start afresh")
            ckpt.check_run_state(state, self.ckpt_path, T, raw.n_batches, batch_size)
            try:
                learner.load_state_dict(state["agent"])
            except (KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
                raise ckpt.CheckpointError(
                    f"checkpoint {self.ckpt_path}: its agent state does not fit this agent "
                    f"({type(exc).__name__}: {checks.shown(str(exc), 120)}); delete it (or start the run "
                    f"with --overwrite) and run again") from None
            self.R, self.baseline, self.gen_log = state["R"], state["baseline"], state["gen_log"]
            self.V = state["V"]
            self.correct, self.steps, self.elapsed_before = state["correct"], state["steps"], state["elapsed"]
            self.resumes = state["resumes"] + 1
            if self.steps < raw.n_batches:
                self.obs = raw.seek(self.steps)
        steps = self.steps
        # one x-axis for everything: examples seen; a resumed run drops what the killed one logged
        # after its checkpoint (the checkpoint's own evaluation, at exactly that step, is kept)
        self.logger = logger = Logger(out, purge_step=steps * batch_size + 1 if steps else None,
                                      formats=o.log_formats,
                                      run_name=f"{agent}-{config['memory'] or 'none'}-{env_id}-seed{seed}")
        if not steps:
            logger.text("config", "```json\n" + json.dumps(config, indent=2, default=str) + "\n```")
            logger.hparams(results.hparams_of(config),
                           ["final/neg_test_elbo", "final/frechet_distance"] if gen else
                           ["final/retained_accuracy", "final/backward_transfer", "final/forgetting",
                            "final/online_accuracy"])
        self.started_loop, self.session_steps = time.perf_counter(), steps  # the ETA: this process's steps only
        self.checkpoints = 0
        self.lines = o.progress == "lines"
        show = sys.stderr.isatty() if o.progress is None else (o.progress is True)
        note = slow_note(agent, config["memory"], device, raw.n_batches * batch_size)
        if first and note is not None and o.progress is not False and steps < raw.n_batches:
            print(note, file=sys.stderr, flush=True)
        self.bar = tqdm(total=raw.n_batches, initial=steps, disable=not (show and first),
                        desc=f"{agent} on {env_id}")
        self.correct_acc = torch.zeros((), dtype=torch.int64, device=dev)  # since the last flush
        # divergence: on the CPU each loss is read every step (a float read, ~1 us); on a GPU the
        # device keeps whether every loss so far was finite and for how many steps (no
        # synchronisation), read with the loss logs and at task ends
        self.on_cpu = dev.type == "cpu"
        self.finite = torch.ones((), dtype=torch.bool, device=dev)
        self.finite_steps = torch.full((), steps, dtype=torch.int64, device=dev)
        self.divergence: dict | None = None
        self.stopped = False
        self.own_warnings: list[str] = []
        self.done = steps >= raw.n_batches
        self.ready: float | None = time.perf_counter()

    def start_clock(self) -> None:
        """Leave out of this seed's times the wait while the seeds before it ran (seeds run one
        after another)."""
        if self.ready is None:  # already stepping (a stack that dissolved)
            return
        waited, self.ready = time.perf_counter() - self.ready, None
        self.started += waited
        self.started_loop += waited

    # ----------------------------------------------------------------- per step
    def checkpoint(self) -> None:
        if self.ckpt_path is None:
            return
        self.logger.flush()  # events up to the checkpoint reach the disk before it does
        ckpt.save({"agent": self.learner.state_dict(), "R": self.R, "V": self.V, "baseline": self.baseline,
                   "gen_log": self.gen_log, "correct": self.correct, "steps": self.steps,
                   "config": results.identity(self.config), "config_hash": self.chash, "resumes": self.resumes,
                   "elapsed": self.elapsed_before + time.perf_counter() - self.started}, self.ckpt_path)
        self.checkpoints += 1
        if self.o.on_checkpoint is not None:
            self.o.on_checkpoint(self.out, self.steps)
        _fault_injection(self.out, self.checkpoints)

    def flush_correct(self) -> None:
        self.correct += int(self.correct_acc)
        self.correct_acc.zero_()

    def overflowed(self, exc: BaseException) -> None:
        """The training step raised an arithmetic overflow (a finite but huge factor that torch
        cannot turn into a float): recorded as divergence at this step, like a non-finite loss."""
        step = self.steps + 1
        text = " ".join(str(exc).split())
        self.divergence = {"step": step, "task": self.raw.task_of_batch(step - 1),
                           "examples_seen": step * self.batch_size,
                           "reason": f"arithmetic overflow in the training step ({type(exc).__name__}: "
                                     f"{checks.shown(text, 100)})"}
        self.done = True

    def diverged(self, reason_params: bool) -> dict | None:
        raw, batch_size = self.raw, self.batch_size
        if not bool(self.finite):
            step = int(self.finite_steps) + 1
            return {"step": step, "task": raw.task_of_batch(step - 1), "examples_seen": step * batch_size,
                    "reason": "non-finite loss"}
        if reason_params and _nonfinite_parameters(self.learner):
            return {"step": self.steps, "task": raw.task_of_batch(self.steps - 1),
                    "examples_seen": self.steps * batch_size,
                    "reason": f"non-finite parameters (checked every {self.o.log_every} steps and at task ends)"}
        return None

    def env_step(self, action) -> None:
        self.next_obs, self.reward, self.terminated, _, self.step_info = self.env.step(action)

    def reads_model(self) -> bool:
        """Whether :meth:`after_step` (called next) will read the agent's model: divergence checks,
        task ends, checkpoints."""
        n = self.steps + 1
        every = self.o.checkpoint_every
        return n % self.o.log_every == 0 or self.raw.last_task_end or bool(every and n % every == 0)

    def after_step(self, losses: dict[str, torch.Tensor]) -> None:
        """Everything after the learner's step: divergence, logs, task-end evaluation, checkpoints."""
        o, raw, learner, logger, T = self.o, self.raw, self.learner, self.logger, self.T
        if self.on_cpu:
            if not all(math.isfinite(float(v.sum())) for v in losses.values()):
                self.finite.fill_(False)
                self.finite_steps.fill_(self.steps)  # the steps before this one were finite
                self.steps += 1
                self.divergence = self.diverged(False)
                self.done = True
                return
        else:
            for v in losses.values():
                self.finite &= torch.isfinite(v).all()
            self.finite_steps += self.finite
        # the reward is the fraction of the batch predicted correctly: k / batch_size, so k exactly
        self.correct_acc += torch.round(torch.as_tensor(self.reward) * self.batch_size).to(torch.int64)
        self.steps += 1
        steps = self.steps
        self.bar.update(1)
        examples = steps * self.batch_size
        if steps % o.log_every == 0 or raw.last_task_end:
            self.divergence = self.diverged(True)
            if self.divergence is not None:
                self.done = True
                return
        if steps % o.log_every == 0:
            logger.scalars(losses, examples, "train/")
        if raw.last_task_end:
            t = raw.last_t
            learner.end_task(t)
            self.divergence = self.diverged(True)  # task-end work (distillation, hand-over) can diverge too
            if self.divergence is not None:
                self.done = True
                return
            self.flush_correct()
            R, tests = self.R, self.tests
            if self.gen:
                R[t], union_elbo, fd = evaluate_generative(learner, tests, t, self.net)
                cons = learner.memory.consistency_history[-1]
                self.gen_log["neg_test_elbo"].append(union_elbo)
                self.gen_log["frechet_distance"].append(fd)
                self.gen_log["zd_consistency"].append(cons)
                logger.scalars({f"task_{j}": R[t, j] for j in range(T)}, examples, "eval/neg_elbo/")
                logger.scalars({"neg_test_elbo": union_elbo, "frechet_distance": fd,
                                **({} if cons is None else {"zd_consistency": cons})}, examples, "eval/")
            else:
                R[t] = evaluate(learner, tests)
                logger.scalars({f"task_{j}": R[t, j] for j in range(T)}, examples, "eval/accuracy/")
                if self.vals is not None:
                    self.V[t] = evaluate(learner, self.vals)
                    logger.scalars({"retained_accuracy": self.V[t, : t + 1].mean(),
                                    **{f"accuracy/task_{j}": self.V[t, j] for j in range(T)}}, examples, "val/")
                logger.scalars({"retained_accuracy": R[t, : t + 1].mean(),
                                "online_accuracy": self.correct / (steps * self.batch_size), "task": t}, examples, "eval/")
                logger.accuracy_matrix(R, examples, figure=self.terminated)
            if self.lines:
                now = time.perf_counter()
                rate = (now - self.started_loop) / max(1, steps - self.session_steps)
                score = (f"-ELBO {self.gen_log['neg_test_elbo'][-1]:.1f}" if self.gen
                         else f"retained acc. {R[t, : t + 1].mean():.4f}")
                who = f" (seed {self.seed})" if o.multi else ""
                print(f"[task {t + 1}/{T}] {o.agent} on {o.env_id}{who}: {examples:,} examples, {score}, "
                      f"elapsed {self.elapsed_before + now - self.started:.0f} s, "
                      f"ETA {rate * (raw.n_batches - steps):.0f} s", file=sys.stderr, flush=True)
            logger.scalars(learner.storage(), examples, "storage/")
            logger.scalars(learner.summary(), examples)
            visuals = dict(learner.visuals())
            if learner.memory is not None:
                visuals.update(learner.memory.visuals())
                probe = torch.cat([x[:100] for x, _ in tests[: t + 1]]).float().div_(255.0)
                logger.scalars(learner.memory.report(probe), examples)
            for tag, images in visuals.items():
                logger.images(tag, images, examples)
            self.checkpoint()
            if o.stop_after_task is not None and t >= o.stop_after_task and not self.terminated:
                self.stopped = self.done = True
                return
        elif o.checkpoint_every and steps % o.checkpoint_every == 0:
            self.divergence = self.diverged(True)
            if self.divergence is not None:
                self.done = True
                return
            self.flush_correct()
            self.checkpoint()
        self.obs = self.next_obs
        if steps >= raw.n_batches:
            self.done = True

    # ----------------------------------------------------------------- the end
    def finish(self, stacked_seeds: int = 1) -> None:
        """The run's :class:`Result` (written to ``result.json``) once the loop is over."""
        o, raw, learner, gen, T, R, V = self.o, self.raw, self.learner, self.gen, self.T, self.R, self.V
        agent, env_id, steps, batch_size = o.agent, o.env_id, self.steps, self.batch_size
        self.bar.close()
        if self.divergence is None and not self.stopped:
            self.divergence = self.diverged(True)
        divergence = self.divergence
        self.flush_correct()
        if self.stopped:
            self.logger.close()
            raise KeyboardInterrupt(f"stopped after task {o.stop_after_task} (checkpoint in {self.out})")

        wall = self.elapsed_before + time.perf_counter() - self.started
        store = learner.storage()
        spec = self.info.memory_spec(o.device)
        status = "completed" if divergence is None else "diverged"
        done_rows = [i for i in range(T) if not np.isnan(R[i]).all()]
        if stacked_seeds > 1:
            self.config["derived"]["stacked_seeds"] = stacked_seeds
        if status == "diverged":
            who = f" (seed {self.seed})" if o.multi else ""
            message = (f"{agent} on {env_id}{who} diverged at step {divergence['step']} (task {divergence['task']}): "
                       f"{divergence['reason']}; the result has status 'diverged'")
            self.own_warnings.append(f"RuntimeWarning: {message}")
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            accuracy = {"accuracy_matrix": [R[i].tolist() for i in done_rows] if not gen else [],
                        "retained_accuracy": None, "backward_transfer": None, "forward_transfer": None,
                        "forgetting": None, "online_accuracy": None}
            generative = {} if not gen else {"elbo_matrix": [R[i].tolist() for i in done_rows], **self.gen_log}
        else:
            accuracy = {} if gen else {
                "accuracy_matrix": R.tolist(),
                "retained_accuracy": metrics.retained_accuracy(R),
                "backward_transfer": metrics.backward_transfer(R),
                "forward_transfer": metrics.forward_transfer(R, self.baseline),
                "forgetting": metrics.forgetting(R),
                "online_accuracy": self.correct / max(steps * batch_size, 1),
            }
            generative = {} if not gen else {
                "accuracy_matrix": [], "retained_accuracy": None, "backward_transfer": None,
                "forward_transfer": None, "forgetting": None, "online_accuracy": None,
                "elbo_matrix": R.tolist(), **self.gen_log,
            }
        counters = {"dropped_examples": int(sum(raw.dropped)), "resumes": self.resumes, **learner.counters()}
        # the warnings of the process while this seed ran, less the other seeds' divergence notes
        others = (" diverged at step ", f"(seed {self.seed}) diverged")
        shown = [w for w in self.caught if not (o.multi and others[0] in w and others[1] not in w)]
        result = Result(
            env=env_id, agent=agent, memory=self.config["memory"], seed=self.seed, **accuracy, **generative,
            storage_bits=store["storage_bits"], overhead_bits=store["overhead_bits"],
            effective_examples=store["storage_bits"] / spec.example_bits, items=store["items"],
            wall_time_s=wall,
            examples_per_s=steps * batch_size / max(time.perf_counter() - self.started_loop, 1e-9),
            data=self.stream.describe(), config=self.config, status=status, config_hash=self.chash,
            divergence=divergence, baseline_accuracy=None if gen else [float(b) for b in self.baseline],
            **({} if self.vals is None else {
                "validation_accuracy_matrix": [V[i].tolist() for i in done_rows],
                "validation_retained_accuracy": (metrics.retained_accuracy(V) if status == "completed" else None)}),
            warnings=shown + [w for w in self.own_warnings if w not in shown], counters=counters,
        )
        final = ({"neg_test_elbo": (self.gen_log["neg_test_elbo"] or [None])[-1],
                  "frechet_distance": (self.gen_log["frechet_distance"] or [None])[-1]} if gen else
                 {k: result.__dict__[k] for k in ("retained_accuracy", "backward_transfer", "forgetting",
                                                   "online_accuracy")})
        self.logger.scalars({k: v for k, v in final.items() if v is not None}, steps * batch_size, "final/")
        self.logger.end_session(status)
        self.logger.close()
        if self.out is not None:
            result.to_json(self.out / results.RESULT_FILE)
        self.result = result


def _drive(lanes: list[_Lane], stacked: bool) -> None:
    """The benchmark loop: ``act`` -> ``step`` -> ``observe`` -> bookkeeping, for one seed, or for
    several in lockstep as one :class:`agents.stacked.SeedStack` (``stacked``; the caller has
    checked they stack, and seeds that leave it leave the others stackable)."""
    from agents.stacked import SeedStack

    if not stacked and len(lanes) != 1:
        raise ValueError("seeds that are not stacked are driven one at a time")
    stacked_seeds = len(lanes) if stacked else 1
    for lane in lanes:
        if stacked:
            lane.ready, lane.started = None, lane.o.started  # the group's clock, from the call
        else:
            lane.start_clock()
    _finish([lane for lane in lanes if lane.done], stacked_seeds)  # resumed at the end of the stream
    active = [lane for lane in lanes if not lane.done]
    group = SeedStack([lane.learner for lane in active]) if stacked and len(active) > 1 else None
    while active:
        try:
            losses = _step(active, group)
        except (RuntimeError, OverflowError) as exc:
            if not _is_overflow(exc):
                raise
            for lane in active:
                lane.overflowed(exc)
            _finish(active, stacked_seeds)
            return
        synced = group is not None and any(lane.reads_model() for lane in active)
        if synced:
            group.sync_out()
        for lane, loss in zip(active, losses, strict=True):
            lane.after_step(loss)
        if group is not None and (synced or any(lane.done for lane in active)):
            if not synced:
                group.sync_out()
            group.sync_in()
        if any(lane.done for lane in active):
            _finish([lane for lane in active if lane.done], stacked_seeds)
            active = [lane for lane in active if not lane.done]
            if group is not None:
                group = SeedStack([lane.learner for lane in active]) if len(active) > 1 else None


def _step(active: list[_Lane], group) -> list:
    """One ``act`` -> ``step`` -> ``observe`` of the active seeds; their losses."""
    if group is None:  # one seed left
        lane = active[0]
        action = lane.learner.act(lane.obs)
        lane.env_step(action)
        return [lane.learner.observe(lane.obs, lane.step_info["y"])]
    ts = {lane.obs.get("t") for lane in active}
    if len(ts) != 1:
        raise RuntimeError(f"stacked seeds out of step: task ids {sorted(map(str, ts))}")
    actions = group.act([lane.obs["x"] for lane in active], ts.pop())
    for lane, action in zip(active, actions, strict=True):
        lane.env_step(action)
    return group.observe([lane.step_info["y"] for lane in active])


def _is_overflow(exc: BaseException) -> bool:
    """Whether ``exc`` is arithmetic overflow (Python's OverflowError, or torch's "cannot be
    converted to type float without overflow")."""
    return isinstance(exc, OverflowError) or "overflow" in str(exc).lower()


def _check_holds_an_item(mem, config: dict, env_id: str) -> None:
    """Refuse a budget too small for even one item of the memory (it would run with an empty
    memory, silently): a buffer of capacity 0, or a per-task ring with 0 slots in all."""
    if mem is None or config.get("budget") is None:
        return
    slots = getattr(mem, "capacity", None)
    caps = getattr(mem, "caps", None)
    if slots is None and caps is not None:
        slots = int(sum(int(c) for c in caps))
    if isinstance(slots, int) and slots == 0:
        raise checks.fail("budget", config["budget"],
                          f"a budget that holds at least one item of memory {config['memory']!r} on {env_id} "
                          "(this one holds none: the run would replay nothing)", "--budget 1")


def _finish(lanes: list[_Lane], stacked_seeds: int) -> None:
    """Finish each lane; a stop asked for (``stop_after_task``) is raised once all are closed."""
    stop = None
    for lane in lanes:
        try:
            lane.finish(stacked_seeds)
        except KeyboardInterrupt as exc:
            stop = stop or exc
    if stop is not None:
        raise stop
