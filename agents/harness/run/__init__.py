"""Running: the one benchmark loop and its parts, one job each.

- :mod:`.loop` — :func:`run` / :func:`run_seeds`: build, step, evaluate, finish (one loop for one
  seed or several in lockstep);
- :mod:`.lane` — one seed's run (env, agent, memory, logger, checkpoint, accuracy matrix);
- :mod:`.rundir` — the run directory: checked against the configuration, locked while written;
- :mod:`.checkpoint` — checkpoints written atomically, loaded weights-only and checked;
- :mod:`.evaluation`, :mod:`.divergence`, :mod:`.progress` — task-end evaluation, divergence
  checks, progress notes;
- :mod:`.callbacks` — what logging and progress lines (and a user's ``callbacks=[...]``) see:
  read-only views of the run, never the run itself;
- :mod:`.result` — :class:`Result`, what ``result.json`` holds.

The run's identity is :class:`agents.harness.config.RunConfig`.
"""

from agents.harness.run.callbacks import Callback, TaskEnd, TrainStep
from agents.harness.run.evaluation import EVAL_CHUNK, evaluate, evaluate_generative
from agents.harness.run.loop import run, run_seeds, validate
from agents.harness.run.progress import SLOW_ON_CPU, slow_note
from agents.harness.run.result import Result
from agents.harness.run.rundir import RUN_FILES, prepare_run_directory

__all__ = ["EVAL_CHUNK", "Callback", "TaskEnd", "TrainStep", "RUN_FILES", "SLOW_ON_CPU", "Result", "evaluate", "evaluate_generative",
           "prepare_run_directory", "run", "run_seeds", "slow_note", "validate"]
