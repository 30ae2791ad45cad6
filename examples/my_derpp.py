"""DER++ written as a user would write it, outside the library, and checked against the built-in one.

The agent below is the whole method (Buzzega et al. 2020, eq. 7): the current batch's
cross-entropy, the stored logits matched on one replay batch and the stored labels on another.
The memory (a reservoir that keeps each item's logits, its bits counted), the runner, logging,
checkpoints and stacked seeds come from the library.

Usage:
    python examples/my_derpp.py [--quick]
"""

from __future__ import annotations

import argparse

from torch.nn import functional as F

from agents import Agent, run


class MyDERPP(Agent):
    """CE(h(x), y) + alpha * MSE(h(x'), z') + beta * CE(h(x''), y'')."""

    name = "my_derpp"
    SETTINGS = {"alpha": 0.1, "beta": 0.5, "replay_batch": 10}
    MEMORIES = ("logit_reservoir",)
    DEFAULT_MEMORY, DEFAULT_BUDGET = "logit_reservoir", 200

    def learn(self, x, t, y, logits):
        loss = self.loss(logits, y)
        n = self.settings["replay_batch"]
        mem = self.memory.sample(n, ctx=self, generator=self.generator)
        if mem is not None:
            loss = loss + self.settings["alpha"] * F.mse_loss(self.model(mem.x), mem.extras["logits"])
            again = self.memory.sample(n, ctx=self, generator=self.generator)
            loss = loss + self.settings["beta"] * self.loss(self.model(again.x), again.y)
        self.sgd_step(loss)
        self.memory.observe(x.detach(), t or 0, y, ctx=self, logits=logits.detach())
        return {"loss": loss.detach()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a two-task stream instead of the whole one")
    args = p.parse_args()
    stream = {"n_tasks": 2, "train_per_task": 200} if args.quick else {}
    mine = run("MNISTRotations-v0", agent=f"{__name__}:MyDERPP", stream_kwargs=stream)
    built_in = run("MNISTRotations-v0", agent="derpp", stream_kwargs=stream)
    print(f"my_derpp retained accuracy {mine.retained_accuracy:.4f}, built-in derpp {built_in.retained_accuracy:.4f}")
    assert mine.accuracy_matrix == built_in.accuracy_matrix, "the user's DER++ and the library's differ"


if __name__ == "__main__":
    main()
