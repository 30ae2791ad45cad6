"""Time a full pass of an env with random actions against a bare loop over the same prepared arrays.

The bare loop does the same work minus the environment: slice x and y from the arrays the env
prepared at reset, draw the same random actions, compute the same reward. Both loops take their
actions from identical pre-drawn arrays, so the difference is the environment's own overhead
(``gym.make`` adds no wrapper to cl-env's envs: the env refuses a step before ``reset`` itself). A
third loop is the floor of any Gymnasium env: a null env that only slices, rewards and returns
the API's observation and info dicts, with no check of the action.

It also prints the process's peak resident memory after the stream is built and after the
passes (``ru_maxrss``), e.g. for Seq-MNIST on full MNIST (``cl-env data get mnist`` first).

Usage:
    python benchmarks/env_throughput.py [--env MNISTRotations-v0] [--repeats 7] [--stream source=mnist]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import warnings

import gymnasium as gym
import numpy as np

import cl_env  # noqa: F401  (registers the envs)
from agents.harness.cli.args import parse_assignments


def env_pass(env, actions) -> float:
    env.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return time.perf_counter() - start


def bare_pass(x, y, actions, batch_size) -> float:
    start = time.perf_counter()
    total = 0.0
    if batch_size == 1:
        for i, a in enumerate(actions):
            _ = x[i]
            total += float(int(a) == int(y[i]))
    else:
        for i, a in enumerate(actions):
            _ = x[i]
            total += np.count_nonzero(a == y[i]) / batch_size
    return time.perf_counter() - start


class NullEnv(gym.Env):
    """The floor: slicing, the reward and Gymnasium's return values, nothing else."""

    def __init__(self, x, y, batch_size: int):
        self.x, self.y, self.b, self.n = x, y, batch_size, len(x)
        self.i = 0

    def reset(self, *, seed=None, options=None):
        self.i = 0
        return {"x": self.x[0]}, {}

    def step(self, action):
        i = self.i
        self.i = n = i + 1
        y = self.y[i]
        reward = float(int(action) == int(y)) if self.b == 1 else np.count_nonzero(action == y) / self.b
        return ({"x": self.x[n if n < self.n else i]}, reward, n >= self.n, False,
                {"y": y, "examples_seen": n * self.b})


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(env_id: str, batch_size: int, repeats: int, stream: dict | None = None) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(env_id, batch_size=batch_size, **(stream or {}))
    env.reset(seed=0)
    raw = env.unwrapped
    if raw.chunk_batches < raw.n_batches:
        raise SystemExit(f"{env_id}: the stream spans more than one chunk of prepared images; the bare loop "
                         "slices the first chunk only, so this script times streams of up to 1 GB of float32")
    x, y = raw._x, raw._y  # the arrays the env prepared at reset
    rng = np.random.default_rng(0)
    shape = () if batch_size == 1 else (batch_size,)
    actions = [rng.integers(0, raw.stream.n_classes, size=shape) for _ in range(raw.n_batches)]
    if batch_size == 1:
        actions = [int(a) for a in actions]
    env_times = [env_pass(env, actions) for _ in range(repeats)]
    bare_times = [bare_pass(x, y, actions, batch_size) for _ in range(repeats)]
    null = NullEnv(x, y, batch_size)
    null_times = [env_pass(null, actions) for _ in range(repeats)]
    e, b, f = statistics.median(env_times), statistics.median(bare_times), statistics.median(null_times)
    return {"env": env_id, "batch_size": batch_size, "steps": raw.n_batches,
            "env_s": e, "bare_s": b, "null_s": f, "ratio": e / b, "null_ratio": f / b,
            "env_steps_per_s": raw.n_batches / e, "min_ratio": min(env_times) / min(bare_times)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="MNISTRotations-v0")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--stream", nargs="*", default=[], metavar="KEY=VALUE", help="stream options, e.g. source=mnist")
    args = p.parse_args()
    stream = parse_assignments(args.stream, "--stream")
    start = time.perf_counter()
    built = cl_env.make_stream(args.env, **stream)
    print(f"stream {args.env} {stream or ''}: {built.n_train:,} training examples in {built.n_tasks} tasks, "
          f"built in {time.perf_counter() - start:.2f} s; peak RSS {peak_rss_mb():,.0f} MB")
    del built
    print("| env | batch | steps | env pass (s, median) | bare loop (s, median) | ratio | ratio of the minima | "
          "null env (s, median) | null env ÷ bare | env steps/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in (1, 10):
        r = measure(args.env, b, args.repeats, stream)
        print(f"| {r['env']} | {b} | {r['steps']} | {r['env_s']:.4f} | {r['bare_s']:.4f} | "
              f"{r['ratio']:.2f} | {r['min_ratio']:.2f} | {r['null_s']:.4f} | {r['null_ratio']:.2f} | "
              f"{r['env_steps_per_s']:,.0f} |")
    print(f"peak RSS after the passes: {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
