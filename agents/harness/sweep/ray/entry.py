"""The entry point of a Ray sweep task, sent to the workers by value (cloudpickle), so that
unpickling it imports nothing of cl-env: it first makes the packages shipped in the job's
``runtime_env`` (``py_modules``) the ones imported, ahead of any copy installed on the node (an
editable install's import hook would otherwise win), then runs the cell."""

PACKAGES = ("cl_env", "memory", "agents")


def shipped_paths() -> list:
    """``sys.path`` entries that Ray's runtime_env unpacked and that hold one of :data:`PACKAGES`."""
    import os
    import sys

    return [p for p in sys.path if "runtime_resources" in p
            and any(os.path.isfile(os.path.join(p, pkg, "__init__.py")) for pkg in PACKAGES)]


def prefer_shipped_code() -> None:
    """Import :data:`PACKAGES` from the shipped paths: drop import hooks that map them elsewhere
    (setuptools' editable finders) and any copy already imported."""
    import sys

    shipped = shipped_paths()
    if not shipped:
        return
    for finder in list(sys.meta_path):
        mod = getattr(type(finder), "__module__", "") or getattr(finder, "__name__", "")
        if str(mod).startswith("__editable__"):
            sys.meta_path.remove(finder)
    for name in list(sys.modules):
        if name.split(".")[0] in PACKAGES and not str(getattr(sys.modules[name], "__file__", "")).startswith(
                tuple(shipped)):
            del sys.modules[name]
    for p in reversed(shipped):
        sys.path.remove(p)
        sys.path.insert(0, p)


def run(*args, **kwargs):
    """``agents.harness.sweep.ray.task.cell_task(*args, **kwargs)`` with the shipped code."""
    prefer_shipped_code()
    from agents.harness.sweep.ray.task import cell_task

    return cell_task(*args, **kwargs)
