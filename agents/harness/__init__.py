"""The running and reporting side of cl-env: the runner loop, checkpoints, loggers, results and
comparisons, sweeps, reports, the CLI and the generated reference pages.

The harness imports the learners (``agents.base``, ``agents.registry`` and one module per
learner); no learner imports the harness. ``from agents import run`` is the public entry point.
"""
