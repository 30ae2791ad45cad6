"""What a run says while it runs: a note when a configuration is known to be slow on a CPU."""

from __future__ import annotations

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
