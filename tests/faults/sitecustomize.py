"""Fault injection for the tests, kept out of the library: every Python process started with this
folder on ``PYTHONPATH`` imports this file at start-up (Python's ``sitecustomize`` hook), and
while ``CL_ENV_TEST_KILL_AFTER_CHECKPOINT`` is set it arms :mod:`kill_after_checkpoint`. Tests use
it through the ``kill_after_checkpoint`` fixture of ``tests/conftest.py``."""

import os

if os.environ.get("CL_ENV_TEST_KILL_AFTER_CHECKPOINT"):
    import kill_after_checkpoint

    kill_after_checkpoint.install()
