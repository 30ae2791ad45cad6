"""The runner's public names at their earlier import path (``from agents.harness.runner import
run``); the loop and its parts live in :mod:`agents.harness.run`."""

from agents.harness.run import (
    EVAL_CHUNK,
    RUN_FILES,
    SLOW_ON_CPU,
    Result,
    evaluate,
    evaluate_generative,
    prepare_run_directory,
    run,
    run_seeds,
    slow_note,
    validate,
)

__all__ = ["EVAL_CHUNK", "RUN_FILES", "SLOW_ON_CPU", "Result", "evaluate", "evaluate_generative",
           "prepare_run_directory", "run", "run_seeds", "slow_note", "validate"]
