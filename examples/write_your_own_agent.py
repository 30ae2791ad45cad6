"""Write your own agent in about 30 lines, then benchmark it against the included baselines.

The agent below is experience replay with a twist: it replays from a class-balanced view of the
reservoir by weighting the replayed loss per class. Everything else (env, memory, evaluation,
logging, checkpoints) comes from the library.

Usage:
    python examples/write_your_own_agent.py [--quick]
"""

from __future__ import annotations

import argparse

import torch
from torch.nn import functional as F

from agents import run
from agents.registry import AGENTS, AgentEntry
from agents.replay import ExperienceReplay


class BalancedReplay(ExperienceReplay):
    """ER whose replayed loss weights each class by the inverse of its share of the replay batch."""

    name = "balanced_er"
    SETTINGS = {"replay_batch": 20}

    def learn(self, x, t, y, logits):
        loss = self.loss(logits, y)
        mem = self.memory.sample(self.settings["replay_batch"], generator=self.generator)
        if mem is not None:
            counts = torch.bincount(mem.y, minlength=self.info.n_classes).float()
            weights = (1.0 / counts.clamp(min=1))[mem.y]
            per_item = F.cross_entropy(self.forward(mem.x, None), mem.y, reduction="none")
            loss = loss + (weights * per_item).sum() / weights.sum()
        self.sgd_step(loss)
        self.memory.observe(x.detach(), t or 0, y)
        return {"loss": loss.detach()}


# one row in the registry makes it usable everywhere, the CLI included
AGENTS["balanced_er"] = AgentEntry(f"{__name__}:BalancedReplay", ("reservoir",), "reservoir", 200,
                                   "example: class-balanced experience replay")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one seed instead of three")
    args = p.parse_args()
    stream = {"class_order": "sorted"}
    seeds = [0] if args.quick else [0, 1, 2]
    for agent in ("online", "er", "balanced_er"):
        ras = []
        for seed in seeds:
            kw = {"budget": 50} if agent != "online" else {}
            r = run("SplitMNIST-v0", agent=agent, seed=seed, stream_kwargs=stream, **kw)
            ras.append(r.retained_accuracy)
        print(f"{agent:12s} retained accuracy {sum(ras) / len(ras):.3f} over seeds {seeds}")


if __name__ == "__main__":
    main()
