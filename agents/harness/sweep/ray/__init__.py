"""Sweep cells on a Ray cluster: :mod:`~agents.harness.sweep.ray.driver` (the job's environment
and the driver, which owns every result), :mod:`~agents.harness.sweep.ray.task` (the worker side:
the node's environment, checkpoint storage, the task) and :mod:`~agents.harness.sweep.ray.entry`
(the task's entry point, sent by value). Ray itself is imported only when a sweep uses it."""
