"""``cl-env sweep``: a grid of runs (envs x agents x memories x budgets x settings x seeds) on local
processes or on a Ray cluster, all results in one directory.

A cell is identified by its run's configuration hash (:func:`agents.harness.results.run_config`, every
default resolved): its directory is ``OUT/<env>/<agent>-<memory>-b<budget>-<hash of the
configuration without the seed>/seed<k>``. A cell is finished only when its ``result.json``
parses and carries that same hash, so changing any key (a stream option, the batch size, the
device, a setting) reruns exactly the cells it changes, and two spellings of one configuration
(``memories: [null, reservoir]`` for ER) run once. A stopped sweep started again resumes the
interrupted cells from their checkpoints.

Each local cell runs in a process of its own: a worker that dies (killed, out of memory) costs
only its cell, which is retried from its checkpoint (``retries`` times, default 2) while the
others go on. Threads: ``OMP_NUM_THREADS`` is honoured, the cores are those of the process's CPU
affinity, and by default workers x threads never exceed them. The sweep ends with a table of
finished / diverged / failed cells.

A config (YAML or TOML)::

    out: runs/sweep
    envs: [MNISTRotations-v0]
    agents: [er, gem]
    memories: [null, srm]          # null: the agent's default; pairs an agent cannot use are skipped
    budgets: [100, 200]            # null: the agent's default
    items: [null]                  # or exact item counts of a buffer memory, e.g. [200, 500]
                                   # (instead of budgets: give one or the other)
    seeds: [0, 1, 2]
    settings: [{}, {lr: 0.03}]     # each a --set dict (memory.KEY allowed)
    preset: null                   # or preset names (cl-env list presets), an axis: a preset
                                   # runs with its own agent and env only (other pairs skipped);
                                   # without agents:, each preset's agent
    stream: {}                     # --stream options for every env
    streams: [{}]                  # a grid axis of --stream dicts, each merged over `stream`
                                   # (e.g. [{source: mnist5k}, {source: fashion_mnist}])
    batch_size: null
    device: cpu
    retries: 2                     # attempts after a worker died, per cell
    checkpoint_every: null         # also checkpoint every this many steps (task ends always do)
    log: tensorboard               # where each cell's scalars go, as --log (e.g. tensorboard,csv)
    cpus_per_cell: 1               # torch threads per cell (Ray: the CPUs each task requests)
    gpus_per_cell: null            # Ray: GPUs per task (default 1 for device: cuda, else 0)
    storage: null                  # Ray: checkpoints' path or fsspec URI (default OUT/.storage)
    runtime_env: {}                # Ray: merged into each task's runtime_env
    ship_requirements: false       # Ray: also ship the driver's pinned dependency versions (pip)
    stack_seeds: true              # local: a configuration's seeds train together in one process
                                   # where the agent allows (agents.stacked; same numbers)

On Ray (``--backend ray [--address HOST:PORT]``) the driver owns the results and no
filesystem is assumed shared: see :mod:`agents.harness.sweep.ray`.

The package, one module per concern: :mod:`~agents.harness.sweep.config` (reading and checking
the file), :mod:`~agents.harness.sweep.grid` (the grid's cells), :mod:`~agents.harness.sweep.cells`
(a cell and running it), :mod:`~agents.harness.sweep.local` (worker processes, threads, retries,
:func:`sweep`), :mod:`~agents.harness.sweep.progress` (progress lines and the summary table) and
:mod:`agents.harness.sweep.ray` (the Ray driver, its tasks and their entry point).
"""

from __future__ import annotations

from agents.harness.sweep.cells import Cell, execute, execute_seeds, record_of, same_but_seed
from agents.harness.sweep.config import (
    KEYS,
    MAX_ALIASES,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    check_config,
    check_yaml_size,
    load_config,
    read_config_file,
)
from agents.harness.sweep.grid import expand, parse_seeds
from agents.harness.sweep.local import (
    available_cores,
    plan_threads,
    run_cell,
    run_unit,
    seed_groups,
    share_out,
    sweep,
)
from agents.harness.sweep.progress import summary_table
from agents.harness.sweep.ray.driver import run_on_ray

__all__ = [
    "KEYS", "MAX_ALIASES", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "Cell", "available_cores", "check_config",
    "check_yaml_size", "execute", "execute_seeds", "expand", "load_config", "parse_seeds", "plan_threads",
    "read_config_file", "record_of", "run_cell", "run_on_ray", "run_unit", "same_but_seed", "seed_groups", "share_out",
    "summary_table", "sweep",
]
