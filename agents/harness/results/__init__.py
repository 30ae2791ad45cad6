"""Results you can cite: a run's identity, atomic result files, loading, grouping and the tables.

The one module that owns results. ``cl-env run`` writes a run directory through it, ``compare``,
``report`` and ``sweep`` read run directories through it, so every tool groups and checks runs the
same way:

- **Identity.** A run's configuration (:func:`run_config`) is the env id with every stream option
  resolved (defaults included), batch size, agent, every setting with its default, memory,
  memory options, budget, seed and device; its hash (:func:`config_hash`) is a run's identity.
  Two sections are recorded but are not identity: ``runtime`` (torch threads, package versions,
  git commit, host) and ``derived`` (what the built objects resolved, e.g. the model an image
  shape picks).
- **Grouping.** Runs are grouped by their identity without the seed (:func:`group_hash`); a table
  shows the data source and every key whose value differs between the groups it shows; a group
  whose runs differ in ``runtime`` (threads, versions) says so in its notes.
- **Status.** ``completed`` runs are aggregated; ``diverged`` runs are shown flagged in rows of
  their own and never averaged in.
- **Files.** Every result file is written atomically (:func:`write_json_atomic`); a malformed or
  foreign ``result.json`` is named and skipped (:func:`find_results`), never a traceback.

The package, one module per concern: :mod:`~agents.harness.results.files` (file names, errors,
atomic writers, :func:`read_json`), :mod:`~agents.harness.results.configuration` (flattened keys,
differences, :func:`run_config`, runtime), :mod:`~agents.harness.results.loading` (:class:`Run`,
:func:`load_result`, :func:`find_results`, :func:`is_finished`),
:mod:`~agents.harness.results.grouping` (:class:`Group`, :func:`group_runs`, the varying keys) and
:mod:`~agents.harness.results.tables` (:class:`Table`, the tables, Markdown/CSV/JSON). Every name
is re-exported here, so ``results.X`` works as before.
"""

from __future__ import annotations

from agents.harness.config import (
    NON_IDENTITY,
    RunConfig,
    canonical,
    config_hash,
    group_hash,
    identity,
)
from agents.harness.results.configuration import (
    _label,
    describe_differences,
    differing_keys,
    flatten,
    hparams_of,
    plain,
    run_config,
    runtime_info,
)
from agents.harness.results.files import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    REQUIRED,
    RESULT_FILE,
    STATUSES,
    ResultFileError,
    RunDirectoryError,
    _finite,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from agents.harness.results.grouping import (
    Group,
    _divergence_note,
    _runtime_notes,
    _stats,
    _text,
    data_source,
    group_runs,
    varying_config_keys,
    varying_keys,
)
from agents.harness.results.loading import Run, find_results, is_finished, load_result
from agents.harness.results.tables import (
    CLASSIFIER_METRICS,
    Table,
    classifier_table,
    comparison_tables,
    generative_table,
    to_csv,
    to_json,
    to_markdown,
)

__all__ = [
    "CHECKPOINT_FILE", "CLASSIFIER_METRICS", "CONFIG_FILE", "NON_IDENTITY", "REQUIRED", "RESULT_FILE", "STATUSES",
    "Group", "ResultFileError", "Run", "RunConfig", "RunDirectoryError", "Table", "_divergence_note", "_finite",
    "_label", "_runtime_notes", "_stats", "_text", "canonical", "classifier_table", "comparison_tables",
    "config_hash", "data_source", "describe_differences", "differing_keys", "find_results", "flatten",
    "generative_table", "group_hash", "group_runs", "hparams_of", "identity", "is_finished", "load_result",
    "plain", "read_json", "run_config", "runtime_info", "to_csv", "to_json", "to_markdown", "varying_config_keys",
    "varying_keys", "write_bytes_atomic", "write_json_atomic", "write_text_atomic",
]
