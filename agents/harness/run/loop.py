"""The one benchmark loop, used by the CLI, the examples and the tests.

:func:`run` builds the env, the memory and the agent, steps through the stream (``act`` ->
``step`` -> ``observe``), evaluates every task's whole test set at every task end, logs,
checkpoints, and returns a :class:`~agents.harness.run.result.Result` (also written as
``result.json``). :func:`run_seeds` does the same for several seeds of one configuration in one
process (stacked where the learner allows, :mod:`agents.stacked`).

A run directory holds one run: ``config.json`` (its resolved configuration and hash, written at
start), ``checkpoint.pt`` (at task ends), TensorBoard events and, at the end, ``result.json``
(status ``completed`` or ``diverged``); while a run writes into it, the directory is locked
(:mod:`agents.harness.lock`, taken before anything is written). The pieces: the run directory
(:mod:`.rundir`), one seed's run (:mod:`.lane`), evaluation (:mod:`.evaluation`), divergence
(:mod:`.divergence`), checkpoints (:mod:`.checkpoint`), progress notes (:mod:`.progress`).
"""

from __future__ import annotations

import contextlib
import operator
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from agents.base import Agent
from agents.harness.config import RunConfig
from agents.harness.logger import parse_formats
from agents.harness.run.callbacks import Callback
from agents.harness.run.divergence import is_overflow
from agents.harness.run.evaluation import scores, scores_of
from agents.harness.run.lane import Lane
from agents.harness.run.options import RunOptions
from agents.harness.run.result import Result
from agents.harness.run.rundir import locked, prepare_run_directory
from agents.registry import agent_class, agent_entry
from agents.stacked import SeedStack, why_not_stackable
from cl_env import checks
from cl_env.error import UnknownNameError
from memory import is_memory_name, memory_names


def validate(agent: str, memory: str | None, settings: dict | None) -> type[Agent]:
    """Check names before any work; errors list the valid choices."""

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


@contextlib.contextmanager
def recording_warnings():
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
    callbacks: Sequence[Callback] = (),
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
        callbacks: Read-only observers of the run (:class:`agents.harness.run.callbacks.Callback`:
            training losses, task ends with their evaluation, the end), called after the run's own
            logging; they see copies and cannot change training. Not part of the run's identity.
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
                     stop_after_task=stop_after_task, log=log, on_checkpoint=on_checkpoint, callbacks=callbacks,
                     items=items,
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
    callbacks: Sequence[Callback] = (),
    stack: bool = True,
    items: int | None = None,
    preset: str | None = None,
) -> list[Result]:
    """:func:`run` for several seeds of one configuration in this process; one :class:`Result`
    per seed, each written to its own ``outs[k]`` exactly as :func:`run` writes it.

    The stream is prepared once for all seeds. When ``stack`` and the agents can be stacked
    (:func:`agents.stacked.why_not_stackable`: a learner that declares ``stackable`` — ``online``,
    ``er``, ``er_ace``, ``ewc``, ``lwf``, ``agem``, ``der``, ``derpp`` — on an MLP, with a memory
    that never reads the model) and every seed starts from the same step, the seeds are trained
    together as one :class:`agents.stacked.SeedStack` (lockstep lanes over each learner's own
    ``learn``, :mod:`agents.lanes`: one batched forward and step for all; each seed's numbers equal
    its separate run's at one torch thread); otherwise
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
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise checks.fail("seeds", seeds, "a list of seeds", "seeds=[0, 1, 2]")
    seeds = list(seeds)
    # integers (numpy's too) checked, never converted: 1.5, "3" or True are not seeds
    seeds = [operator.index(s) if hasattr(s, "__index__") and not isinstance(s, bool) else s for s in seeds]
    for s in seeds:
        checks.integer("seed", s, 0, 2**32 - 1, fix="seed=0")
    outs = [None] * len(seeds) if outs is None else list(outs)
    dirs = [str(Path(o).resolve()) for o in outs if o is not None]
    if len(set(dirs)) != len(dirs):
        raise checks.fail("outs", outs, "one directory per seed (distinct)", "outs=['runs/s0', 'runs/s1']")
    if not seeds or len(set(seeds)) != len(seeds) or len(outs) != len(seeds):
        raise ValueError(f"seeds must be distinct and one out directory per seed, got seeds {seeds} and "
                         f"{len(outs)} out director(ies)")
    if checkpoint_every is not None:
        checks.integer("checkpoint_every", checkpoint_every, 1, fix="--checkpoint-every 1000")
    checks.integer("log_every", log_every, 1, fix="log_every=50")
    if stop_after_task is not None:
        checks.integer("stop_after_task", stop_after_task, 0, fix="stop_after_task=0")
    if on_checkpoint is not None and not callable(on_checkpoint):
        raise checks.fail("on_checkpoint", on_checkpoint, "a function of (out, steps) or None")
    if callbacks is None or isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise checks.fail("callbacks", callbacks, "a list of Callback objects", "callbacks=[]")
    # the identity, built and checked once (a preset filled in under the explicit options); each
    # seed's configuration is this one with its seed
    base = RunConfig.build(env_id, agent, memory, budget, seeds[0], device, settings, stream_kwargs, batch_size,
                           items, preset)
    cls = validate(agent, base.memory, base.to_dict()["settings"])
    if cls.batch_sizes and base.batch_size not in cls.batch_sizes:
        raise ValueError(f"agent {agent!r} runs with batch_size in {list(cls.batch_sizes)}, "
                         f"got {base.batch_size}; pass --batch-size {cls.batch_sizes[0]}")
    opts = RunOptions(base, checkpoint_every, log_every, parse_formats(log), progress, stop_after_task,
                       on_checkpoint, started, multi=len(seeds) > 1, callbacks=tuple(callbacks))
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
                held.enter_context(locked(out))
                from_checkpoint = prepare_run_directory(out, config, resume, overwrite)
            plans.append((seed, out, config, from_checkpoint))
        return run_plans(opts, cls, plans, stack)


def run_plans(opts: RunOptions, cls: type[Agent], plans: list, stack: bool) -> list[Result]:
    with recording_warnings() as caught:
        lanes: list[Lane] = []
        shared = None
        for seed, out, config, from_checkpoint in plans:
            lanes.append(Lane(opts, cls, seed, out, config, from_checkpoint, caught, shared, first=not lanes))
            shared = lanes[0].shared

        together = (stack and len(lanes) > 1 and len({lane.steps for lane in lanes}) == 1
                    and why_not_stackable([lane.learner for lane in lanes]) is None)
        if together:
            drive(lanes, stacked=True)
        else:
            for lane in lanes:
                drive([lane], stacked=False)
        return [lane.result for lane in lanes]


def drive(lanes: list[Lane], stacked: bool) -> None:
    """The benchmark loop: ``act`` -> ``step`` -> ``observe`` -> bookkeeping, for one seed, or for
    several in lockstep as one :class:`agents.stacked.SeedStack` (``stacked``; the caller has
    checked they stack, and seeds that leave it leave the others stackable)."""
    if not stacked and len(lanes) != 1:
        raise ValueError("seeds that are not stacked are driven one at a time")
    stacked_seeds = len(lanes) if stacked else 1
    for lane in lanes:
        if stacked:
            lane.ready, lane.started = None, lane.o.started  # the group's clock, from the call
        else:
            lane.start_clock()
    finish_lanes([lane for lane in lanes if lane.done], stacked_seeds)  # resumed at the end of the stream
    active = [lane for lane in lanes if not lane.done]
    group = SeedStack([lane.learner for lane in active]) if stacked and len(active) > 1 else None
    while active:
        try:
            losses = step(active, group)
        except (RuntimeError, OverflowError) as exc:
            if not is_overflow(exc):
                raise
            for lane in active:
                lane.overflowed(exc)
            finish_lanes(active, stacked_seeds)
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
        pending = [lane for lane in active if lane.pending_eval is not None]
        if pending:
            evaluate_lanes(pending, group)
        if any(lane.done for lane in active):
            finish_lanes([lane for lane in active if lane.done], stacked_seeds)
            active = [lane for lane in active if not lane.done]
            if group is not None:
                group = SeedStack([lane.learner for lane in active]) if len(active) > 1 else None


def evaluate_lanes(lanes: list[Lane], group: SeedStack | None) -> None:
    """Score the test sets of seeds at a task end (:meth:`Lane.evaluated`): stacked seeds on the
    same test sets in one batched forward per chunk (their parameters current: the caller has
    synced them in), else each seed's own model. Measured on 2 cores, the five models' forward
    on a chunk of 1,000 MNIST images: 8.4-9.5 ms one model after another, 5.4-5.6 ms stacked."""
    first = lanes[0]
    if (group is not None and len(lanes) > 1 and group.predicts_as_agents()
            and all(lane.tests is first.tests and lane.task_il == first.task_il for lane in lanes)):
        ks = [group.agents.index(lane.learner) for lane in lanes]
        out = scores_of(lambda x, j: group.predict(ks, x, j), len(ks), group.class_mask, first.tests,
                        first.task_il)
        for lane, (accuracy, task_il) in zip(lanes, out, strict=True):
            lane.evaluated(accuracy, task_il)
        return
    for lane in lanes:
        lane.evaluated(*scores(lane.learner, lane.tests, lane.task_il))


def step(active: list[Lane], group) -> list:
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


def finish_lanes(lanes: list[Lane], stacked_seeds: int) -> None:
    """Finish each lane; a stop asked for (``stop_after_task``) is raised once all are closed."""
    stop = None
    for lane in lanes:
        try:
            lane.finish(stacked_seeds)
        except KeyboardInterrupt as exc:
            stop = stop or exc
    if stop is not None:
        raise stop
