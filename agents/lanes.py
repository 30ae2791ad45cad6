"""Lockstep lanes: each seed's learner runs its own ``learn`` in a thread, one thread at a time.

A :class:`Lockstep` holds one :class:`Lane` per seed. A lane is a daemon thread that runs its
agent's unmodified :meth:`agents.base.Agent.learn` with four things swapped on the instance
for the call: ``model`` (a :class:`LaneModel`) and the three primitives through which learners
change their parameters, :meth:`~agents.base.Agent.sgd_step`,
:meth:`~agents.base.Agent.gradient` and :meth:`~agents.base.Agent.step_with`. Each of these is
a **sync point**: the lane parks there with its request and hands the baton on. Only one lane
runs at a time (the baton goes from lane to lane in seed order, then back to the calling
thread), so a round is deterministic, and each lane keeps its own thread-local torch state
(grad mode). When every unfinished lane is parked, the calling thread serves the requests, in
this order of priority:

1. **forwards** (``self.model(x)``): grouped by input shape, dtype, device and grad mode, each
   group one batched forward over the stacked parameters (the ``maths`` object; for
   :class:`agents.stacked.SeedStack` a ``StackedLinear`` per layer); each lane gets its slice;
2. **gradients** (``gradient(loss)``): one autograd call over the summed losses of the lanes
   parked there; each lane gets its own row, flattened into fresh memory;
3. **steps** (``sgd_step(loss)``, ``step_with(flat_gradient)``), only once every unfinished
   lane is parked at one: one backward of the summed losses and one SGD update of the stack.

A lane whose ``learn`` returns is finished for this call; its result (the learner's named
losses) is returned to the caller. Parameters a learner reads directly
(``self.model.named_parameters()``, EWC's penalty) are differentiable copies of the lane's row.
An exception raised in a lane (any ``BaseException``: a ``ValueError`` of the learner, a
``KeyboardInterrupt``) abandons the call: the other lanes are woken with
:class:`LaneAborted`, which unwinds their ``learn``, and the exception is raised to the caller
of :meth:`Lockstep.run`. :meth:`Lockstep.close` ends the threads (the stack calls it when it is
discarded).
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

_STEPS = ("sgd_step", "step_with")


class LaneAborted(BaseException):
    """Raised inside a parked lane when its call is abandoned (another lane failed)."""


class LaneModel(nn.Module):
    """What a lane's learner sees as ``self.model``: calling it is a sync point (the batched
    forward of the lane's row of the stacked parameters); its parameters are differentiable
    copies of that row (gradients flow into the stack)."""

    def __init__(self, lane: Lane):
        super().__init__()
        self.__dict__["_lane"] = lane  # not a submodule, not a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._lane.park("forward", x)

    __call__ = forward  # no hooks: nothing is registered on a lane's model

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        for name, p in self._lane.hub.maths.row_parameters(self._lane.k):
            yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self, recurse: bool = True):
        for _, p in self.named_parameters():
            yield p


class Lane:
    """One seed's thread; parks at the sync points (see the module docstring)."""

    def __init__(self, k: int, agent: Any, hub: Lockstep):
        self.k, self.agent, self.hub = k, agent, hub
        self.model = LaneModel(self)
        self.go = _thread.allocate_lock()
        self.go.acquire()  # held: the thread waits on it for the baton
        self.job: Callable[[], Any] | None = None
        self.busy = False  # inside a job (running or parked)
        self.kind: str | None = None
        self.payload: Any = None
        self.grad_mode = True
        self.reply: Any = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=_lane_main, args=(self,), name=f"seed-lane-{k}", daemon=True)
        self.thread.start()

    def park(self, kind: str, payload: Any) -> Any:
        """Wait at a sync point with ``payload``; returns what the calling thread served."""
        hub = self.hub
        if hub.aborting:
            raise LaneAborted
        self.kind, self.payload, self.grad_mode = kind, payload, torch.is_grad_enabled()
        hub.pass_baton()
        self.go.acquire()
        if hub.aborting:
            raise LaneAborted
        reply, self.reply = self.reply, None
        self.kind = self.payload = None
        return reply

    # the agent's primitives while it learns in this lane
    def sgd_step(self, loss: torch.Tensor) -> None:
        self.park("sgd_step", loss)

    def gradient(self, loss: torch.Tensor) -> torch.Tensor:
        return self.park("gradient", loss)

    def step_with(self, flat_gradient: torch.Tensor) -> None:
        self.park("step_with", flat_gradient)

    def learn(self, *args) -> Any:
        """The agent's own ``learn(*args)`` with its model and primitives swapped for this lane's."""
        agent = self.agent
        real = agent.model
        agent.model = self.model
        agent.sgd_step, agent.gradient, agent.step_with = self.sgd_step, self.gradient, self.step_with
        try:
            return agent.learn(*args)
        finally:
            agent.model = real
            del agent.sgd_step, agent.gradient, agent.step_with


def _lane_main(lane: Lane) -> None:
    """A lane's thread: run each job handed to it; a release with no job ends the thread."""
    while True:
        lane.go.acquire()
        job, lane.job = lane.job, None
        if job is None:
            return
        try:
            if not lane.hub.aborting:
                lane.result = job()
        except LaneAborted:
            pass
        except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
            lane.error = exc
        lane.busy = False
        lane.kind = lane.payload = None
        lane.hub.pass_baton()


class Lockstep:
    """``K`` lanes over one ``maths`` object (the stacked parameters), driven by :meth:`run`.

    ``maths`` provides ``forward_rows(ks, xs)``, ``gradient_rows(ks, losses)``,
    ``step_rows(requests)`` and ``row_parameters(k)`` (see :class:`agents.stacked.StackedMLP`).
    """

    def __init__(self, agents: Sequence[Any], maths: Any):
        self.maths = maths
        self.back = _thread.allocate_lock()
        self.back.acquire()  # held: the calling thread waits on it while lanes run
        self.order: list[Lane] = []
        self.pos = 0
        self.aborting = False
        self.in_round = False
        self.closed = False
        self.lanes = [Lane(k, a, self) for k, a in enumerate(agents)]

    def pass_baton(self) -> None:
        """Wake the next lane of this round, or the calling thread after the last."""
        self.pos += 1
        if self.pos < len(self.order):
            self.order[self.pos].go.release()
        else:
            self.back.release()

    def _round(self, lanes: list[Lane]) -> None:
        self.order, self.pos, self.in_round = lanes, 0, True
        lanes[0].go.release()
        self.back.acquire()
        self.in_round = False

    def run(self, args: Sequence[tuple]) -> list[Any]:
        """Each lane's agent ``learn(*args[k])`` in lockstep; their results in lane order."""
        if self.closed:
            raise RuntimeError("these lanes are closed")
        for lane, a in zip(self.lanes, args, strict=True):
            lane.job = (lambda lane=lane, a=a: lane.learn(*a))
            lane.busy, lane.result, lane.error = True, None, None
        # one torch thread while the lanes step: their batched products are small (K x batch x 784
        # x 100) and intra-op threads only add hand-over costs between the lanes' threads; measured
        # on 2 cores (5 seeds of er, MNISTRotations-v0): the whole run 17.8 s at two threads, 9.6 s
        # with the lanes at one (the serving alone 7.4 s -> 2.9 s); evaluation keeps the caller's
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            todo = list(self.lanes)
            while todo:
                self._round(todo)
                failed = next((lane.error for lane in self.lanes if lane.error is not None), None)
                if failed is not None:
                    raise failed
                parked = [lane for lane in self.lanes if lane.busy]
                todo = self._serve(parked) if parked else []
        except BaseException:
            self._abort()
            raise
        finally:
            torch.set_num_threads(threads)
            for lane in self.lanes:
                lane.error = None
        results = [lane.result for lane in self.lanes]
        for lane in self.lanes:
            lane.result = None
        return results

    def _serve(self, parked: list[Lane]) -> list[Lane]:
        """Serve the parked lanes' requests (forwards, else gradients, else the step); the lanes to
        resume, in lane order."""
        forwards = [lane for lane in parked if lane.kind == "forward"]
        if forwards:
            groups: dict[tuple, list[Lane]] = {}
            for lane in forwards:
                x = lane.payload
                groups.setdefault((tuple(x.shape), x.dtype, x.device, lane.grad_mode), []).append(lane)
            for members in groups.values():
                with torch.set_grad_enabled(members[0].grad_mode):
                    outs = self.maths.forward_rows([m.k for m in members], [m.payload for m in members])
                for m, out in zip(members, outs, strict=True):
                    m.reply = out
            return forwards
        grads = [lane for lane in parked if lane.kind == "gradient"]
        if grads:
            rows = self.maths.gradient_rows([m.k for m in grads], [m.payload for m in grads])
            for m, row in zip(grads, rows, strict=True):
                m.reply = row
            return grads
        odd = [lane.kind for lane in parked if lane.kind not in _STEPS]
        if odd:
            raise RuntimeError(f"a lane parked at an unknown sync point: {odd}")
        self.maths.step_rows([(m.k, m.kind, m.payload) for m in parked])
        return parked

    def _abort(self) -> None:
        """Unwind every lane still inside a job (they raise :class:`LaneAborted`)."""
        self.aborting = True
        try:
            if self.in_round:  # interrupted while a lane ran: let the round drain
                self.back.acquire()
                self.in_round = False
            busy = [lane for lane in self.lanes if lane.busy]
            if busy:
                self._round(busy)
        finally:
            self.aborting = False
            for lane in self.lanes:
                lane.busy, lane.job, lane.reply = False, None, None

    def close(self) -> None:
        """End the lanes' threads (idempotent)."""
        me = threading.current_thread()
        if self.closed or any(lane.thread is me for lane in self.lanes):
            return  # (a lane cannot end itself; the stack holds no cycle, so it is freed by the caller)
        if any(lane.busy for lane in self.lanes) or self.in_round:
            self._abort()
        self.closed = True
        for lane in self.lanes:
            lane.job = None
            lane.go.release()
        for lane in self.lanes:
            if lane.thread is not me:
                lane.thread.join(timeout=5)
