"""Where an SRM run's accuracy goes: its recollections against the real test images.

For each run directory (an ``er`` run with ``--memory srm`` on an MNIST stream, with its
``checkpoint.pt`` from the last task end), loads the agent and its memory from the checkpoint and
prints, per task: the final model's accuracy on the task's held recollections (decoded by the
final autoencoder), on the task's real test images, and on those test images passed through the
final autoencoder; and the store's items per task. A learner that classifies its recollections
well but the real images badly has fitted the recollections' distribution (docs/memories.md).

Usage::

    cl-env run SplitMNIST-v0 --agent er --memory srm --budget 50 --seed 0 --out runs/srm50
    cl-env run SplitMNIST-v0 --agent er --memory srm --budget 50 --seed 0 \\
        --set memory.entropy_coding=true --out runs/srm50-entropy
    python benchmarks/srm_recollection_gap.py runs/srm50 runs/srm50-entropy
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import torch

import cl_env  # noqa: F401  (registers the envs)
from agents.harness.run import checkpoint as ckpt
from agents.info import StreamInfo
from agents.registry import agent_class, build_memory


def gap(run_dir: Path, n_test: int = 500) -> list[dict]:
    config = json.loads((run_dir / "result.json").read_text())["config"]
    stream = gym.make(config["env"], **config["stream_kwargs"]).unwrapped.stream  # as the run built it
    info = StreamInfo.from_stream(stream)
    mem = build_memory(config["agent"], config["memory"], config["budget"], info.memory_spec("cpu"),
                       seed=config["seed"], options=config["memory_options"], items=config.get("memory_items"))
    agent = agent_class(config["agent"])(info, mem, config["settings"], device="cpu", seed=config["seed"])
    agent.load_state_dict(ckpt.load(run_dir / "checkpoint.pt")["agent"])
    held = mem._decode_rows(mem._rows_held())
    rows = []
    with torch.no_grad():
        pred = agent.predict(held.x, None).argmax(1)
        for t, task in enumerate(stream.tasks):
            x, y = task.test_x[:n_test].float().div(255.0), task.test_y[:n_test]
            mine = held.t == t
            rows.append({"task": t, "items": int(mine.sum()),
                         "recollections": float((pred[mine] == held.y[mine]).float().mean()),
                         "test": float((agent.predict(x, t).argmax(1) == y).float().mean()),
                         "test through the autoencoder": float(
                             (agent.predict(mem.reconstruct(x), t).argmax(1) == y).float().mean())})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--test", type=int, default=500, help="test images per task (default 500)")
    args = p.parse_args()
    print("| run | task | items | acc. on its recollections | acc. on real test images | "
          "acc. on test images through the autoencoder |")
    print("|---|---|---|---|---|---|")
    for run_dir in args.runs:
        for r in gap(run_dir, args.test):
            print(f"| {run_dir.name} | {r['task']} | {r['items']} | {r['recollections']:.3f} | {r['test']:.3f} | "
                  f"{r['test through the autoencoder']:.3f} |")


if __name__ == "__main__":
    main()
