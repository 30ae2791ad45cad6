"""A memory's size against the stream, checked before the run starts: one that could never fill
or that holds nothing is refused in one line."""

from __future__ import annotations

from cl_env import checks


def check_fits_the_stream(config: dict, env_id: str, n_train: int) -> None:
    """Refuse a budget or item count larger than the stream's training examples (the memory could
    never fill: the same run as a smaller one under another identity)."""
    for key, unit, flag in (("budget", "effective examples", "--budget"), ("memory_items", "items", "--items")):
        if config.get(key) is not None and config[key] > n_train:
            raise checks.fail(key if key == "budget" else "items", config[key],
                              f"at most {n_train:,} {unit}: {env_id} has {n_train:,} "
                              "training examples in all, so a larger memory could never fill",
                              f"{flag} {min(200, n_train)}")


def check_holds_an_item(mem, config: dict, env_id: str) -> None:
    """Refuse a budget too small for even one item of the memory (it would run with an empty
    memory, silently): a buffer of capacity 0, or a per-task ring with 0 slots in all."""
    if mem is None or config.get("budget") is None:
        return
    slots = getattr(mem, "capacity", None)
    caps = getattr(mem, "caps", None)
    if slots is None and caps is not None:
        slots = int(sum(int(c) for c in caps))
    if isinstance(slots, int) and slots == 0:
        raise checks.fail("budget", config["budget"],
                          f"a budget that holds at least one item of memory {config['memory']!r} on {env_id} "
                          "(this one holds none: the run would replay nothing)",
                          "a larger --budget, or --items N for an exact number of items")
