"""One seed's run: its env, agent, memory, logger, checkpoint and accuracy matrix (a :class:`Lane`),
stepped by :func:`agents.harness.run.loop.drive`."""

from __future__ import annotations

import datetime
import math
import os
import sys
import time
import warnings
from pathlib import Path
from types import MappingProxyType

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from agents.base import Agent, StreamInfo
from agents.harness import results
from agents.harness.evaluators import feature_classifier
from agents.harness.logger import Logger
from agents.harness.run import checkpoint as ckpt
from agents.harness.run.callbacks import (
    Callback,
    LoggingCallback,
    ProgressLines,
    TaskEnd,
    TrainStep,
    frozen_array,
    frozen_numbers,
)
from agents.harness.run.divergence import nonfinite_parameters
from agents.harness.run.evaluation import evaluate, evaluate_generative, matrix_fields
from agents.harness.run.memory_size import check_fits_the_stream, check_holds_an_item
from agents.harness.run.options import RunOptions
from agents.harness.run.progress import slow_note
from agents.harness.run.result import Result
from agents.registry import build_memory
from cl_env import checks, metrics


class Lane:
    """One seed's run: its env, agent, memory, logger, checkpoint and accuracy matrix.

    ``shared`` (the first seed's ``(stream, tests, validation sets)``) lets the other seeds of a
    :func:`run_seeds` call use the stream prepared once.
    """

    def __init__(self, o: RunOptions, cls: type[Agent], seed: int, out: Path | None, config: dict,
                 from_checkpoint: bool, caught: list[str], shared: tuple | None, first: bool):
        self.o, self.seed, self.out, self.caught = o, seed, out, caught
        # the first seed's clock starts with the call (validation included), the others' here
        self.started = o.started if first else time.perf_counter()
        self.result: Result | None = None
        self.done = False
        self.pending_eval: int | None = None  # a task end whose test sets the caller has yet to score
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
        check_fits_the_stream(config, env_id, stream.n_train)
        mem = build_memory(agent, o.config.memory, o.config.budget, info.memory_spec(device), seed=seed,
                           options=plain["memory_options"], items=o.config.memory_items)
        self.learner = learner = cls(info, mem, settings, device=device, seed=seed)
        check_holds_an_item(mem, config, env_id)  # after the agent bound its memory (feature memories size then)
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
            self.net, net_acc = feature_classifier(stream, device, seed=0)
            config["derived"]["frechet_classifier_accuracy"] = round(net_acc, 4)
        self.gen_log: dict[str, list] = {"neg_test_elbo": [], "frechet_distance": [], "zd_consistency": []}
        self.R = np.full((T, T), np.nan)
        self.V = np.full((T, T), np.nan)  # validation accuracies (stay NaN without a validation split)
        self.task_il = not gen and info.setting == "class" and not learner.masked  # Task-IL scored too
        self.TIL = np.full((T, T), np.nan)
        # b_j of FWT: the randomly initialised model (generative agents: its -ELBO)
        self.baseline = np.zeros(T) if gen else evaluate(learner, self.tests)
        # correct online predictions, counted exactly (an int), so that where checkpoints fall
        # (--checkpoint-every) cannot change online_accuracy in its last digits
        self.correct, self.steps, self.elapsed_before, self.resumes = 0, 0, 0.0, 0
        self.obs, _ = env.reset(seed=seed)
        if from_checkpoint:
            state = ckpt.resume_state(self.ckpt_path, chash, learner, T, raw.n_batches, batch_size)
            self.R, self.baseline, self.gen_log = state["R"], state["baseline"], state["gen_log"]
            self.V, self.TIL = state["V"], state.get("TIL", self.TIL)
            self.correct, self.steps, self.elapsed_before = state["correct"], state["steps"], state["elapsed"]
            self.resumes = state["resumes"] + 1
            if self.steps < raw.n_batches:
                self.obs = raw.seek(self.steps)
        steps = self.steps
        # one x-axis for everything: examples seen; a resumed run drops what the killed one logged
        # after its checkpoint (the checkpoint's own evaluation, at exactly that step, is kept)
        logger = Logger(out, purge_step=steps * batch_size + 1 if steps else None, formats=o.log_formats,
                        run_name=f"{agent}-{config['memory'] or 'none'}-{env_id}-seed{seed}")
        # what reports the run: read-only views to the logger, the per-task lines, the user's callbacks
        self.callbacks: list[Callback] = [LoggingCallback(logger, gen),
                                          *([ProgressLines()] if o.progress == "lines" else []), *o.callbacks]
        for cb in self.callbacks:
            cb.on_start(MappingProxyType(config), steps)
        self.started_loop, self.session_steps = time.perf_counter(), steps  # the ETA: this process's steps only
        self.checkpoints = 0
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
        for cb in self.callbacks:  # events up to the checkpoint reach the disk before it does
            cb.before_checkpoint()
        ckpt.save({"agent": self.learner.state_dict(), "R": self.R, "V": self.V, "TIL": self.TIL, "baseline": self.baseline,
                   "gen_log": self.gen_log, "correct": self.correct, "steps": self.steps,
                   "config": results.identity(self.config), "config_hash": self.chash, "resumes": self.resumes,
                   "elapsed": self.elapsed_before + time.perf_counter() - self.started}, self.ckpt_path)
        self.checkpoints += 1
        if self.o.on_checkpoint is not None:
            self.o.on_checkpoint(self.out, self.steps)

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
        if reason_params and nonfinite_parameters(self.learner):
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
        o, raw, learner = self.o, self.raw, self.learner
        if self.on_cpu:
            if not all(math.isfinite(float(v) if v.dim() == 0 else float(v.sum())) for v in losses.values()):
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
        # reward = k / batch_size correct, so k exactly: a Python int on the CPU, else on the device (no sync)
        if self.on_cpu:
            self.correct += round(float(self.reward) * self.batch_size)
        else:
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
            view = TrainStep(self.seed, steps, examples, frozen_numbers(losses))
            for cb in self.callbacks:
                cb.on_train_step(view)
        if raw.last_task_end:
            t = raw.last_t
            learner.end_task(t)
            self.divergence = self.diverged(True)  # task-end work (distillation, hand-over) can diverge too
            if self.divergence is not None:
                self.done = True
                return
            self.flush_correct()
            if not self.gen:  # the caller scores the test sets (several seeds at once where it can)
                self.pending_eval = t
                return
            row, union_elbo, fd = evaluate_generative(learner, self.tests, t, self.net)
            cons = learner.memory.consistency_history[-1]
            self.gen_log["neg_test_elbo"].append(union_elbo)
            self.gen_log["frechet_distance"].append(fd)
            self.gen_log["zd_consistency"].append(cons)
            self.R[t] = row
            self.close_task_end(t, MappingProxyType({"neg_test_elbo": union_elbo, "frechet_distance": fd,
                                                     "zd_consistency": cons}))
            return
        if o.checkpoint_every and steps % o.checkpoint_every == 0:
            self.divergence = self.diverged(True)
            if self.divergence is not None:
                self.done = True
                return
            self.flush_correct()
            self.checkpoint()
        self.next_batch()

    def next_batch(self) -> None:
        """Move on to the next observation; done at the end of the stream."""
        self.obs = self.next_obs
        self.done |= self.steps >= self.raw.n_batches

    def evaluated(self, accuracy: np.ndarray, task_il: np.ndarray | None) -> None:
        """The task end :meth:`after_step` left pending (``pending_eval``), once the caller has
        scored this seed's model on every test set (:func:`agents.harness.run.evaluation.scores`):
        the validation sets, the callbacks, the checkpoint."""
        t, self.pending_eval = self.pending_eval, None
        self.R[t] = accuracy
        if task_il is not None:
            self.TIL[t] = task_il
        if self.vals is not None:
            self.V[t] = evaluate(self.learner, self.vals)
        self.close_task_end(t, None)

    def close_task_end(self, t: int, generative) -> None:
        self.report_task_end(t, generative)
        self.checkpoint()
        o = self.o
        if o.stop_after_task is not None and t >= o.stop_after_task and not self.terminated:
            self.stopped = self.done = True
            return
        self.next_batch()

    def report_task_end(self, t: int, generative) -> None:
        """Every callback's :meth:`Callback.on_task_end`, with a read-only view of this task end."""
        learner, tests, steps, raw = self.learner, self.tests, self.steps, self.raw
        visuals = dict(learner.visuals())
        report: dict = {}
        if learner.memory is not None:
            visuals.update(learner.memory.visuals())
            probe = torch.cat([x[:100] for x, _ in tests[: t + 1]]).float().div_(255.0)
            report = learner.memory.report(probe)
        now = time.perf_counter()
        rate = (now - self.started_loop) / max(1, steps - self.session_steps)
        view = TaskEnd(
            env=self.o.env_id, agent=self.o.agent, seed=self.seed, multi=self.o.multi, task=t, n_tasks=self.T,
            steps=steps, total_steps=raw.n_batches, examples=steps * self.batch_size,
            accuracy=frozen_array(self.R), validation=frozen_array(self.V) if self.vals is not None else None,
            online_accuracy=None if self.gen else self.correct / (steps * self.batch_size),
            generative=generative, last=bool(self.terminated), storage=frozen_numbers(learner.storage()),
            summary=frozen_numbers(learner.summary()), memory_report=frozen_numbers(report),
            visuals=MappingProxyType({k: v if v is None else v.detach().clone() for k, v in visuals.items()}),
            elapsed_s=self.elapsed_before + now - self.started, eta_s=rate * (raw.n_batches - steps))
        for cb in self.callbacks:
            cb.on_task_end(view)

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
            for cb in self.callbacks:
                cb.close()
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
            **({} if self.vals is None else matrix_fields("validation", V, done_rows, status == "completed")),
            **({} if not self.task_il else matrix_fields("task_il", self.TIL, done_rows, status == "completed")),
            warnings=shown + [w for w in self.own_warnings if w not in shown], counters=counters,
        )
        final = ({"neg_test_elbo": (self.gen_log["neg_test_elbo"] or [None])[-1],
                  "frechet_distance": (self.gen_log["frechet_distance"] or [None])[-1]} if gen else
                 {k: result.__dict__[k] for k in ("retained_accuracy", "backward_transfer", "forgetting",
                                                   "online_accuracy")})
        for cb in self.callbacks:
            cb.on_end(MappingProxyType(final), steps * batch_size, status)
            cb.close()
        if self.out is not None:
            result.to_json(self.out / results.RESULT_FILE)
        self.result = result
