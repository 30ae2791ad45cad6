"""Stable-Baselines3 algorithms as continual learners: the stream as a contextual bandit.

With ``batch_size=1`` each step of the env is a one-step episode: the context is the image (and
task id), the action the predicted label and the reward 1 when it is right. The adapter feeds
the transitions the runner produces into the algorithm's own buffer and calls its own ``train``
(PPO and A2C on their rollout buffer, DQN on its replay buffer), so the algorithm learns exactly
as ``algo.learn`` would make it, while the one runner loop drives the stream and evaluates.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from agents.base import Agent

ON_POLICY = ("ppo", "a2c")
OFF_POLICY = ("dqn",)


class _SpacesOnly(gym.Env):
    """Carries the spaces to the algorithm's constructor; the runner owns the real env."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):  # pragma: no cover - never driven
        raise RuntimeError("the SB3 adapter is driven by cl-env's runner, not by algo.learn")

    def step(self, action):  # pragma: no cover - never driven
        raise RuntimeError("the SB3 adapter is driven by cl-env's runner, not by algo.learn")


class SB3Agent(Agent):
    """A Stable-Baselines3 algorithm (``algo=ppo|a2c|dqn``) trained online on the stream.

    Randomness is the agent's own: SB3 draws from torch's and NumPy's global generators, so the
    adapter swaps its private states in around every SB3 call; runs are reproducible and resume
    exactly.

    Settings:
        algo: ``"ppo"``, ``"a2c"`` or ``"dqn"``.
        policy: SB3 policy name (``"MultiInputPolicy"`` for the dict observation).
        algo_kwargs: Keyword arguments for the algorithm's constructor, e.g.
            ``{"n_steps": 256, "batch_size": 64}`` for PPO or ``{"learning_starts": 100}`` for DQN.
        lr: The algorithm's ``learning_rate``; default (None): 1e-3 for PPO, SB3's own default
            for A2C and DQN. Giving both ``lr`` and ``algo_kwargs.learning_rate`` is an error.
    """

    name = "sb3"
    SETTINGS = {"algo": "ppo", "policy": "MultiInputPolicy", "algo_kwargs": {}, "lr": None}
    SETTING_RULES = {"algo": "string", "policy": "string"}
    needs_task_labels = True
    batch_sizes = (1,)

    def make_model(self) -> torch.nn.Module:
        import stable_baselines3 as sb3

        algo = str(self.settings["algo"]).lower()
        if algo not in ON_POLICY + OFF_POLICY:
            raise ValueError(f"algo must be one of {list(ON_POLICY + OFF_POLICY)}, got {algo!r}")
        self.algo_name = algo
        info = self.info
        obs_space = spaces.Dict({"x": spaces.Box(0.0, 1.0, info.image_shape, np.float32),
                                 "t": spaces.Discrete(info.n_tasks)})
        act_space = spaces.Discrete(info.n_classes)
        cls = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[algo]
        kwargs = dict(self.settings["algo_kwargs"])
        kwargs.setdefault("gamma", 0.0)  # one-step episodes: nothing to bootstrap
        if self.settings["lr"] is not None:
            if "learning_rate" in kwargs:
                raise ValueError("sb3: give the learning rate once, as lr or as algo_kwargs.learning_rate, "
                                 f"not both (lr={self.settings['lr']}, learning_rate={kwargs['learning_rate']})")
            kwargs["learning_rate"] = float(self.settings["lr"])
        if algo == "ppo":  # measured on SplitMNIST-v0: SB3's 2048-step rollouts barely learn
            kwargs.setdefault("n_steps", 64)
            kwargs.setdefault("batch_size", 64)
            kwargs.setdefault("learning_rate", 1e-3)
        if algo == "dqn":
            # SB3's default holds 1,000,000 transitions (6 GB of MNIST-sized observations); one
            # pass over the stream is all a bandit on it can ever store
            kwargs.setdefault("buffer_size", max(info.n_examples, 1000))
            kwargs.setdefault("learning_starts", 100)
            kwargs.setdefault("train_freq", 1)
            kwargs.setdefault("target_update_interval", 500)
        self.algo = cls(self.settings["policy"], _SpacesOnly(obs_space, act_space),
                        device=self.device, seed=self.seed, verbose=0, **kwargs)
        from stable_baselines3.common.logger import configure

        self.algo.set_logger(configure(None, []))
        self._torch_state = torch.get_rng_state()
        self._np_rng = np.random.RandomState(self.seed)
        self._pending: tuple | None = None
        self.steps = 0
        return self.algo.policy

    def make_optimizer(self):
        return None  # the algorithm's policy owns its optimiser

    # ------------------------------------------------------------- private RNG
    def _sb3_call(self, fn, *args, **kwargs):
        """Run an SB3 call with this agent's torch and NumPy global RNG states swapped in."""
        torch_before, np_before = torch.get_rng_state(), np.random.get_state()
        torch.set_rng_state(self._torch_state)
        np.random.set_state(self._np_rng.get_state())
        try:
            return fn(*args, **kwargs)
        finally:
            self._torch_state = torch.get_rng_state()
            self._np_rng.set_state(np.random.get_state())
            torch.set_rng_state(torch_before)
            np.random.set_state(np_before)

    # ------------------------------------------------------------- env protocol
    @staticmethod
    def _batched(obs: dict) -> dict[str, np.ndarray]:
        x = obs["x"]
        # SB3's buffers are NumPy: a device tensor comes to the host here, by SB3's design
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
        return {"x": x[None] if x.ndim == 3 else x,
                "t": np.asarray(obs["t"], dtype=np.int64).reshape(1)}

    def act(self, obs: dict):
        b = self._batched(obs)
        policy = self.algo.policy
        if self.algo_name in ON_POLICY:
            def sample():
                with torch.no_grad():
                    return policy(policy.obs_to_tensor(b)[0])
            action, value, log_prob = self._sb3_call(sample)
            a = action.cpu().numpy()
            self._pending = (obs["x"], b, a, value, log_prob)
        else:
            a = self._sb3_call(self.algo.predict, b, deterministic=False)[0]
            self._pending = (obs["x"], b, a)
        return int(a.reshape(-1)[0])

    def observe(self, obs: dict, y) -> dict[str, torch.Tensor]:
        pending, self._pending = self._pending, None
        if pending is None or pending[0] is not obs["x"]:
            self.act(obs)
            pending, self._pending = self._pending, None
        b, a = pending[1], pending[2]
        label = int(y.reshape(-1)[0]) if isinstance(y, torch.Tensor) else int(np.asarray(y).reshape(-1)[0])
        reward = np.array([float(int(a.reshape(-1)[0]) == label)], dtype=np.float32)
        self.steps += 1
        algo = self.algo
        algo.num_timesteps = self.steps
        if self.algo_name in ON_POLICY:
            buf = algo.rollout_buffer
            buf.add(b, a.reshape(1, 1), reward, np.array([True]), pending[3], pending[4])
            if buf.full:
                buf.compute_returns_and_advantage(last_values=torch.zeros(1, device=self.device),
                                                  dones=np.array([True]))
                self._sb3_call(algo.train)
                buf.reset()
        else:
            algo.replay_buffer.add(b, b, a.reshape(1, 1), reward, np.array([True]), [{}])
            # as algo.learn(total_timesteps=one pass) would: the exploration schedule's progress
            horizon = max(self.info.n_examples, 1)
            algo._current_progress_remaining = max(0.0, 1.0 - self.steps / horizon)
            algo._on_step()
            if self.steps > algo.learning_starts and self.steps % algo.train_freq.frequency == 0:
                self._sb3_call(algo.train, gradient_steps=max(algo.gradient_steps, 1),
                               batch_size=algo.batch_size)
        return {"reward": torch.tensor(float(reward[0]))}

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        """Action preferences for evaluation: PPO/A2C logits, DQN Q-values."""
        tt = torch.full((len(x),), int(t) if t is not None else 0, dtype=torch.long, device=x.device)
        obs = {"x": x, "t": tt}
        policy = self.algo.policy
        if self.algo_name in ON_POLICY:
            return policy.get_distribution(obs).distribution.logits
        return policy.q_net(obs)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t: int | None = None) -> torch.Tensor:
        self.algo.policy.set_training_mode(False)
        return self.forward(x.to(self.device), t)

    def learn(self, x, t, y, logits):  # pragma: no cover - observe is overridden
        raise NotImplementedError

    def storage(self) -> dict[str, int]:
        """The algorithm's buffer is a memory of real examples: its filled rows are counted, at the
        precision SB3 stores them (float32 observations, and DQN keeps each next observation too)."""
        buf = self._buffer()
        filled = buf.buffer_size if buf.full else buf.pos

        def bits(v) -> int:
            if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == buf.buffer_size:
                return int(v[:filled].nbytes * 8)
            if isinstance(v, dict):
                return sum(bits(a) for a in v.values())
            return 0

        return {"storage_bits": sum(bits(v) for v in buf.__dict__.values()),
                "overhead_bits": 0, "items": int(filled * buf.n_envs)}

    # ------------------------------------------------------------- checkpoints
    def _buffer(self):
        return self.algo.rollout_buffer if self.algo_name in ON_POLICY else self.algo.replay_buffer

    def state_dict(self) -> dict:
        buf = self._buffer()
        filled = buf.buffer_size if buf.full else buf.pos

        def trim(v):  # only the filled rows of the buffer's preallocated arrays
            if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == buf.buffer_size:
                return v[:filled].copy()
            if isinstance(v, dict):
                return {k: trim(a) for k, a in v.items()}
            return v

        # the buffer's arrays and counters as they are (no pickled bytes: the runner's checkpoint
        # encodes NumPy arrays as tensors and loads with weights_only=True)
        buffer = {k: trim(v) for k, v in buf.__dict__.items()
                  if isinstance(v, (np.ndarray, dict, int, bool, float))}
        state: dict[str, Any] = {
            "policy": self.algo.policy.state_dict(),
            "policy_optimizer": self.algo.policy.optimizer.state_dict(),
            "buffer": buffer,
            "steps": self.steps,
            "torch_rng": self._torch_state,
            "np_rng": self._np_rng.get_state(),
            "action_space_rng": self.algo.action_space.np_random.bit_generator.state,
            "algo": {k: getattr(self.algo, k) for k in ("_n_updates", "_n_calls", "exploration_rate")
                     if hasattr(self.algo, k)},
        }
        return state

    def load_state_dict(self, state: dict) -> None:
        self.algo.policy.load_state_dict(state["policy"])
        self.algo.policy.optimizer.load_state_dict(state["policy_optimizer"])
        buf = self._buffer()
        saved = state["buffer"]
        if not isinstance(saved, dict):
            raise ValueError("this sb3 checkpoint keeps its buffer as pickled bytes (cl-env before 0.2), "
                             "which cannot be loaded safely; start the run again with --overwrite")

        def restore(target, value):
            if isinstance(target, np.ndarray) and isinstance(value, np.ndarray) and value.shape != target.shape:
                target[: len(value)] = value
                return target
            if isinstance(target, dict) and isinstance(value, dict):
                return {k: restore(target[k], v) for k, v in value.items()}
            return value

        for k, v in saved.items():
            setattr(buf, k, restore(getattr(buf, k, None), v))
        self.steps = state["steps"]
        self._torch_state = state["torch_rng"]
        self._np_rng.set_state(state["np_rng"])
        self.algo.action_space.np_random.bit_generator.state = state["action_space_rng"]
        for k, v in state["algo"].items():
            setattr(self.algo, k, v)
