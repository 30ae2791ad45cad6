"""``ContinualEnv``: a Gymnasium environment that steps through a :class:`TaskStream`.

One step is one batch: the observation holds the images (and the task id), the action is the
predicted labels, the reward is the fraction predicted correctly and ``info["y"]`` reveals the
labels of the batch just acted on. Everything is prepared at ``reset``; ``step`` only slices.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from cl_env import checks
from cl_env.error import CLEnvError
from cl_env.registration import make_stream
from cl_env.stream import TaskStream

_INT64 = np.dtype(np.int64)  # the dtype of the labels a model predicts (argmax), on the hot path


class InvalidActionError(CLEnvError, ValueError, AssertionError):
    """An action outside the action space (an ``AssertionError`` too, as Gymnasium's own envs
    assert ``action_space.contains(action)``)."""


class ContinualEnv(gym.Env):
    """A task stream as a Gymnasium environment.

    Args:
        stream: The tasks to step through.
        batch_size: Examples per step. 1 gives a ``Discrete`` action and unbatched ``x``.
        task_labels: Put the task id ``t`` in observations and infos. False gives a task-free
            stream: ``t`` is hidden from the agent.
        task_boundaries: Put ``task_end`` in infos. False hides task boundaries from the agent.
        device: None (default) emits NumPy arrays, as Gymnasium spaces expect. ``"cpu"`` or
            ``"cuda"`` emits torch tensors already on that device (prepared there at reset), so an
            agent on a GPU pays no host-device copy per step; rewards are then 0-d tensors.
        chunk_bytes: Float32 images are prepared this many bytes at a time (1 GiB: a whole pass
            of the MNIST and CIFAR streams at once; a million-example phase in chunks).
        render_mode: None or ``"rgb_array"``: :meth:`render` returns the batch the agent acts on
            next as one ``(H, W, 3)`` uint8 grid image (a window, ``"human"``, is not offered: a
            batch of digits is better looked at in TensorBoard or saved with the grid).
        passes: Each task's examples are emitted this many times, each time in a fresh order,
            before the next task (ARM's "task iterations"; offline protocols' epochs); one
            ``reset`` covers all of them and ``task_end`` marks the last pass's last batch.
        transition: Gradual boundaries: consecutive tasks overlap over a window of this many
            examples (half from each task), the next task's batches mixed in with a probability
            ramping from 0 to 1 (:func:`cl_env.stream.ramp_interleave`); 0 (default) gives sharp
            boundaries. Batches still hold one task each; ``task_end`` is a task's last batch.

    Observation: ``{"x": float32 (C, H, W) or (B, C, H, W) in [0, 1], "t": task id}``.
    Info after ``step``: ``y`` (labels of the batch acted on), ``t``, ``task_end`` and
    ``examples_seen`` (examples emitted so far in this pass). The harness (the runner) reads the
    true task position from :attr:`last_t` and :attr:`last_task_end` whatever is hidden.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        stream: TaskStream,
        batch_size: int = 10,
        task_labels: bool = True,
        task_boundaries: bool = True,
        device: str | torch.device | None = None,
        chunk_bytes: int = 1 << 30,
        render_mode: str | None = None,
        passes: int = 1,
        transition: int = 0,
    ):
        if render_mode is not None:
            checks.choice("render_mode", render_mode, self.metadata["render_modes"])
        self.render_mode = render_mode

        smallest = min(t.n_train for t in stream.tasks)
        batch_size = checks.integer("batch_size", batch_size, 1, smallest,
                                    fix=f"batch_size={min(10, smallest)} (batches never span tasks; the smallest task "
                                        f"of {stream.name} has {smallest} training examples)")
        checks.boolean("task_labels", task_labels)
        checks.boolean("task_boundaries", task_boundaries)
        if device is not None and not isinstance(device, torch.device):
            checks.device("device", device)
        checks.integer("chunk_bytes", chunk_bytes, 1)
        self.passes = checks.integer("passes", passes, 1, fix="passes=1")
        self.transition = checks.integer("transition", transition, 0, fix="transition=0 (sharp boundaries)")
        if 0 < transition < 2 * batch_size:  # mixed in whole batches, half on each side: no batch at all
            raise checks.fail("transition", transition, f"0 or at least 2 x batch_size = {2 * batch_size} examples "
                              "(the mixing is in whole batches, half on each side of a boundary)",
                              f"transition={2 * batch_size}")
        self.stream = stream
        self.batch_size = batch_size
        stream.warn_if_dropped(batch_size)
        self.task_labels = task_labels
        self.task_boundaries = task_boundaries
        self.device = None if device is None else torch.device(device)
        self.dropped = stream.dropped(batch_size)

        c, h, w = stream.image_shape
        x_shape = (c, h, w) if batch_size == 1 else (batch_size, c, h, w)
        obs = {"x": spaces.Box(0.0, 1.0, x_shape, np.float32)}
        if task_labels:
            obs["t"] = spaces.Discrete(stream.n_tasks)
        self.observation_space = spaces.Dict(obs)
        self.action_space = (
            spaces.Discrete(stream.n_classes)
            if batch_size == 1
            else spaces.MultiDiscrete([stream.n_classes] * batch_size)
        )

        self._t_obs = [np.int64(t) for t in range(stream.n_tasks)]
        # The batch plan: per batch, its task and whether it ends it (drawn again at each reset
        # when boundaries are gradual; this one, in stored order, serves until the first reset).
        self._set_plan(*stream.train_plan(batch_size, None, self.passes, self.transition))
        # the shape of actions step() checks inline (_check_labels's subset test); None: never inline
        self._fast_shape = (batch_size,) if self.device is None and 1 < batch_size <= 64 else None
        self._full_info = task_labels and task_boundaries
        self._n_classes = stream.n_classes
        self._labels = frozenset(range(stream.n_classes))  # the hot path's range check (a subset test)
        self._pool_x, self._pool_y, self._pool_index, _ = stream.pools()
        per_example = 4 * int(np.prod(stream.image_shape))
        self.chunk_batches = max(1, (chunk_bytes // per_example) // batch_size)
        self._x: Any = None
        self._y: Any = None
        self._rows: Any = None
        self._chunk_start = 0
        self._chunk_end = 0
        self._i = 0

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start a pass: shuffle the examples inside each task with ``self.np_random``."""
        super().reset(seed=seed)
        order, batch_t, batch_end = self.stream.train_plan(self.batch_size, self.np_random, self.passes,
                                                           self.transition)
        self._set_plan(None, batch_t, batch_end)
        order = torch.from_numpy(order)
        dev = self.device or torch.device("cpu")
        self._rows = self._pool_index[order]
        ys = self._pool_y[self._rows].to(dev)
        if self.device is None:
            ys = ys.numpy()
        self._y = ys if self.batch_size == 1 else ys.reshape(self.n_batches, self.batch_size)
        self._chunk_end = 0  # forces the first chunk to load
        self._load_chunk(0)
        self._i = 0
        return self._obs(0), {"examples_seen": 0, **self._t_info(0)}

    def _load_chunk(self, i: int) -> None:
        """Prepare float images for batches ``i`` .. ``i + chunk_batches`` (one gather, one cast)."""
        b = self.batch_size
        start, end = i, min(i + self.chunk_batches, self.n_batches)
        rows = self._rows[start * b:end * b]
        dev = self.device or torch.device("cpu")
        xs = self._pool_x[rows].to(dev).float().div_(255.0)
        if self.device is None:
            xs = xs.numpy()
        self._x = xs if b == 1 else xs.reshape(end - start, b, *xs.shape[1:])
        self._chunk_start, self._chunk_end = start, end

    def step(self, action):
        i = self._i
        if i >= self.n_batches:
            raise RuntimeError("the stream has ended (terminated=True was returned); call reset()")
        try:  # free on Python >= 3.11 unless raised
            y = self._y[i]
        except TypeError:  # _y is None: gym.make adds no OrderEnforcing wrapper (cl_env.registration)
            raise RuntimeError("call reset() before step()") from None
        b = self.batch_size
        if type(action) is np.ndarray and action.dtype is _INT64 and action.shape == self._fast_shape:
            # the hot path: int64 labels, _check_labels's subset test inline (0.4 against 0.7 us a step)
            if not self._labels.issuperset(action.tolist()):
                self._invalid(action)
            reward = np.count_nonzero(action == y) / b
        else:
            reward = self._reward(action, y)
        self._i = n = i + 1
        if self._full_info:  # task labels and boundaries, the default
            info = {"y": y, "examples_seen": n * b, "t": self._batch_t_list[i], "task_end": self._batch_end_list[i]}
        else:
            info = {"y": y, "examples_seen": n * b}
            if self.task_labels:
                info["t"] = self._batch_t_list[i]
            if self.task_boundaries:
                info["task_end"] = self._batch_end_list[i]
        if n >= self._chunk_end:  # one comparison on the hot path covers both cases
            if n == self.n_batches:
                return self._terminal_obs(), reward, True, False, info
            self._load_chunk(n)
        if self.task_labels:
            return {"x": self._x[n - self._chunk_start], "t": self._batch_t_obs[n]}, reward, False, False, info
        return {"x": self._x[n - self._chunk_start]}, reward, False, False, info

    # ------------------------------------------------------------------ helpers
    def _set_plan(self, order, batch_t: np.ndarray, batch_end: np.ndarray) -> None:
        self._batch_t_list = batch_t.tolist()  # Python lists index faster than arrays
        self._batch_end_list = batch_end.tolist()
        self._batch_t_obs = [self._t_obs[t] for t in self._batch_t_list]  # each batch's observed task id
        self.n_batches = len(self._batch_t_list)

    def _check_labels(self, a: np.ndarray, action) -> None:
        """``a`` (``action`` as an array) holds integer labels in ``[0, n_classes)``."""
        kind = a.dtype.kind
        if kind not in "iu":
            self._invalid(action)
        if a.ndim == 1 and len(a) <= 64:  # the hot path: a subset test of the batch's Python ints
            if not self._labels.issuperset(a.tolist()):  # (0.29 us for ten labels; min/max 0.62 us)
                self._invalid(action)
        elif a.size:  # one reduction: read as unsigned, a negative label exceeds every class
            u = a if kind == "u" else a.view(f"u{a.dtype.itemsize}")
            if int(np.maximum.reduce(u, axis=None)) >= self._n_classes:
                self._invalid(action)

    def _invalid(self, action):
        raise InvalidActionError(f"{action!r} ({type(action).__name__}) invalid: actions are class labels in "
                                 f"{self.action_space} (integers in [0, {self._n_classes}))")

    def _reward(self, action, y):
        if self.device is not None:
            try:  # None, text, NumPy's unsigned wider than 8 bits, ints past int64: invalid actions
                a = torch.as_tensor(action, device=self.device)
            except (TypeError, ValueError, RuntimeError, OverflowError):
                self._invalid(action)
            if a.shape != y.shape:
                raise ValueError(f"action has shape {tuple(a.shape)}, expected {tuple(y.shape)}")
            # the range check reads two numbers back, so on a GPU it is skipped (no synchronisation
            # on the hot path); on the CPU it costs one aminmax
            if self.device.type == "cpu":
                if a.is_floating_point() or a.dtype == torch.bool:
                    self._invalid(action)
                self._check_labels(a.numpy(), action)  # integer labels: the NumPy mode's check, no copy
                if a.dtype in (torch.uint16, torch.uint32, torch.uint64):  # torch compares these with no int64
                    a = a.to(torch.int64)
            return (a == y).float().mean()
        if self.batch_size == 1:
            if type(action) is int or type(action) is np.int64:  # the common label: no array made
                if not 0 <= action < self._n_classes:
                    self._invalid(action)
                return float(action == y)
            a = np.asarray(action)  # an int, a NumPy integer or an integer array of one label
            if not isinstance(action, (int, np.integer, np.ndarray)) or a.shape not in ((), (1,)):
                self._invalid(action)
            self._check_labels(a, action)  # a bool becomes a bool array: refused here
            return float(int(a.reshape(-1)[0]) == int(y))
        a = np.asarray(action)
        if a.shape != y.shape:
            raise ValueError(
                f"action has shape {a.shape}, expected {y.shape}: one predicted label per example"
            )
        self._check_labels(a, action)
        return np.count_nonzero(a == y) / self.batch_size

    def _t_info(self, i: int) -> dict:
        return {"t": self._batch_t_list[i]} if self.task_labels else {}

    def _obs(self, i: int) -> dict:
        if not self._chunk_start <= i < self._chunk_end:
            self._load_chunk(i)
        x = self._x[i - self._chunk_start]
        if self.task_labels:
            return {"x": x, "t": self._batch_t_obs[i]}
        return {"x": x}

    def _terminal_obs(self) -> dict:
        """A fresh all-zero observation: there is no next batch after the stream's last."""
        zeros = np.zeros_like(self._x[0]) if self.device is None else torch.zeros_like(self._x[0])  # fresh
        if self.task_labels:
            return {"x": zeros, "t": self._t_obs[-1]}
        return {"x": zeros}

    def render(self):
        """The batch the agent acts on next (the last one after the stream ends) as an image grid:
        ``(rows * (H + 2), cols * (W + 2), 3)`` uint8, ``cols = ceil(sqrt(B))``; None without
        ``render_mode="rgb_array"``."""
        if self.render_mode is None:
            return None
        if self._x is None:
            raise RuntimeError("call reset() before render()")
        x = self._obs(min(self._i, self.n_batches - 1))["x"]
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if x.ndim == 3:
            x = x[None]
        b, c, h, w = x.shape
        cols = math.ceil(math.sqrt(b))
        rows = math.ceil(b / cols)
        grid = np.zeros((rows * (h + 2), cols * (w + 2), 3), dtype=np.uint8)
        imgs = (np.clip(x, 0, 1) * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)
        if c == 1:
            imgs = np.repeat(imgs, 3, axis=3)
        for k in range(b):
            r, q = divmod(k, cols)
            grid[r * (h + 2) + 1: r * (h + 2) + 1 + h, q * (w + 2) + 1: q * (w + 2) + 1 + w] = imgs[k, :, :, :3]
        return grid

    @property
    def last_t(self) -> int:
        """True task id of the batch last acted on (for the harness, even when ``t`` is hidden)."""
        return self._batch_t_list[max(self._i - 1, 0)]

    @property
    def last_task_end(self) -> bool:
        """Whether the batch last acted on ended its task (for the harness)."""
        return self._i > 0 and self._batch_end_list[self._i - 1]

    def task_of_batch(self, i: int) -> int:
        """Task id of batch ``i`` of the pass (0-based)."""
        return self._batch_t_list[i]

    def seek(self, position: int) -> dict:
        """Jump to batch ``position`` of the current pass (to resume a run); returns its observation."""
        if not 0 <= position < self.n_batches:
            raise ValueError(f"position must be in [0, {self.n_batches}), got {position}")
        if self._x is None:
            raise RuntimeError("call reset() before seek()")
        self._i = position
        return self._obs(position)

    @property
    def position(self) -> int:
        """Index of the next batch in the pass."""
        return self._i


def make_env(
    stream_id: str,
    batch_size: int = 10,
    task_labels: bool = True,
    task_boundaries: bool = True,
    device: str | None = None,
    chunk_bytes: int = 1 << 30,
    render_mode: str | None = None,
    passes: int = 1,
    transition: int = 0,
    stream: TaskStream | None = None,
    **stream_kwargs,
) -> ContinualEnv:
    """Gymnasium entry point of every registered id: build the stream, wrap it.

    ``stream``: a stream this id already built with these ``stream_kwargs`` (several envs over
    one prepared stream, as the runner's seeds of one configuration share it; a stream is never
    modified by the envs that read it); None builds it.
    """
    if stream is None:
        stream = make_stream(stream_id, **stream_kwargs)
    return ContinualEnv(stream, batch_size=batch_size,
                        task_labels=task_labels, task_boundaries=task_boundaries, device=device,
                        chunk_bytes=chunk_bytes, render_mode=render_mode, passes=passes,
                        transition=transition)
