"""The one table of registered streams, their Gymnasium registration and ``make_stream``.

Each row names the stream builder (a string entry point, imported only when used), the
protocol's defaults, and a one-line description. ``import cl_env`` registers every row with
``gymnasium.register`` under its ``-v0`` id.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import PurePath

from cl_env import checks
from cl_env.data import SOURCES
from cl_env.error import UnknownNameError
from cl_env.stream import TaskStream, with_validation


@dataclass(frozen=True)
class StreamSpec:
    """A row of the registry table.

    Attributes:
        entry_point: ``"module:function"`` building the :class:`TaskStream`.
        kwargs: Protocol defaults passed to the builder (overridable by the caller).
        description: One line for ``cl-env list`` and the docs.
        seed_dependent: Whether the stream seed changes the instance (False for protocols that
            fix every example's task, like the CIFAR splits).
        channels: Image channels whatever the options, where the protocol fixes them (None: not
            declared); lets a sweep know the default model without loading the data.
        source_kwargs: Protocol defaults that depend on the data source, over ``kwargs`` when
            ``source`` is that source and the caller did not set the key (SplitMNIST on full MNIST
            is the DER paper's Seq-MNIST: every training image).
    """

    entry_point: str
    kwargs: dict = field(default_factory=dict)
    description: str = ""
    seed_dependent: bool = True
    channels: int | None = None
    source_kwargs: dict = field(default_factory=dict)

    def protocol_kwargs(self, kwargs: dict, defaults: dict) -> dict:
        """The protocol defaults for a call with ``kwargs``: :attr:`kwargs`, then those of
        :attr:`source_kwargs` for the source asked for (``kwargs``, else the defaults')."""
        source = kwargs.get("source", self.kwargs.get("source", defaults.get("source")))
        return {**self.kwargs, **self.source_kwargs.get(source, {})}


STREAMS: dict[str, StreamSpec] = {
    "MNISTRotations-v0": StreamSpec(
        "cl_env.streams.mnist:rotations",
        {"n_tasks": 20, "train_per_task": 1000},
        "20 tasks, each MNIST rotated by one angle in [9t, 9t+9) deg; 1,000 train / whole test (GEM)",
        channels=1,
    ),
    "MNISTPermutations-v0": StreamSpec(
        "cl_env.streams.mnist:permutations",
        {"n_tasks": 20, "train_per_task": 1000},
        "20 tasks, each one fixed pixel permutation; 1,000 train / whole test (GEM)",
        channels=1,
    ),
    "MANY-v0": StreamSpec(
        "cl_env.streams.mnist:many",
        {"n_tasks": 100, "train_per_task": 200},
        "100 pixel permutations, 200 train each / whole test (MER)",
        channels=1,
    ),
    "SplitMNIST-v0": StreamSpec(
        "cl_env.streams.mnist:split",
        {"classes_per_task": 2, "train_per_class": 500},
        "MNIST-5k-5: 5 tasks of 2 digits, class-incremental single head (MIR / ARM Table 6); "
        "source=mnist: Seq-MNIST, all 60,000 (DER)",
        channels=1,
        source_kwargs={"mnist": {"train_per_class": None}},
    ),
    "IncCIFAR100-v0": StreamSpec(
        "cl_env.streams.images:inc_cifar100", {"grouping": "fine"},
        "20 tasks of 5 CIFAR-100 classes, masked heads (GEM; grouping='coarse': SRM's superclasses)",
        seed_dependent=False,
    ),
    "SplitCIFAR10-v0": StreamSpec(
        "cl_env.streams.images:split_cifar10", {},
        "5 tasks of 2 CIFAR-10 classes, 95/5 train/validation, single head (MIR / ARM Table 1)",
        seed_dependent=False,
    ),
    "IncCIFAR100LongTerm-v0": StreamSpec(
        "cl_env.streams.images:long_term_retention", {"cifar10_examples": 1_000_000},
        "IncCIFAR100-v0 then 1,000,000 CIFAR-10 examples in passes, as indices (SRM Figure 2)",
    ),
    "IncOmniglot-v0": StreamSpec(
        "cl_env.streams.images:inc_omniglot", {},
        "50 Omniglot alphabets as tasks, 28x28, 90/10 split per alphabet (SRM)",
    ),
    "SplitMiniImageNet-v0": StreamSpec(
        "cl_env.streams.images:split_miniimagenet", {},
        "20 tasks of 5 MiniImageNet classes, 84x84, 456/24/120 per class (ARM Table 5)",
        seed_dependent=False,
    ),
    "SeqFashionMNIST-v0": StreamSpec(
        "cl_env.streams.images:sequential_classes", {"source": "fashion_mnist"},
        "the 10 Fashion-MNIST classes as 10 distributions, whole splits (Lifelong Generative Modeling)",
        seed_dependent=False,
    ),
    "PermutedMNISTGen-v0": StreamSpec(
        "cl_env.streams.images:permuted_gen", {"n_tasks": 5},
        "plain MNIST then 4 permutations, whole splits (Lifelong Generative Modeling)",
    ),
    "SVHNToMNIST-v0": StreamSpec(
        "cl_env.streams.images:svhn_to_mnist", {},
        "all of SVHN then all of MNIST, 1x32x32 (Lifelong Generative Modeling 5.3)",
        seed_dependent=False,
    ),
}


def stream_ids() -> list[str]:
    """Every registered stream id, in table order."""
    return list(STREAMS)


def _spec(env_id: str) -> StreamSpec:
    if env_id not in STREAMS:
        raise UnknownNameError("env id", env_id, STREAMS)
    return STREAMS[env_id]


def make_stream(env_id: str, **kwargs) -> TaskStream:
    """Build the stream of a registered id, without gymnasium.

    Args:
        env_id: A registered id, e.g. ``"MNISTRotations-v0"``.
        **kwargs: Overrides of the protocol defaults and builder options: ``source``, ``root``,
            ``download``, ``seed`` (fixes the benchmark instance), sizes.

    Raises:
        UnknownNameError: ``env_id`` is not registered (with a "did you mean").
        TypeError: A keyword the builder does not take (the message lists those it does).
    """
    spec = _spec(env_id)
    module, func = spec.entry_point.split(":")
    builder = getattr(importlib.import_module(module), func)
    import inspect

    params = inspect.signature(builder).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    bad = [k for k in kwargs if k not in params and k not in STREAM_OPTIONS and not accepts_any]
    if bad:
        valid = sorted({*(k for k in params if k != "env_id"), *STREAM_OPTIONS})
        raise TypeError(f"{env_id} does not take {bad}; valid options: {valid}")
    defaults, _ = _builder_defaults(builder)
    protocol = spec.protocol_kwargs(kwargs, defaults)
    check_stream_kwargs(env_id, kwargs, {**STREAM_OPTIONS, **defaults, **protocol})
    if "validation_fraction" in params:  # the protocol holds out its own split (SplitCIFAR10's 5 %)
        return builder(env_id=env_id, **{**protocol, **kwargs})
    kwargs = dict(kwargs)
    fraction = float(kwargs.pop("validation_fraction", 0.0))
    stream = builder(env_id=env_id, **{**protocol, **kwargs})
    seed = {**defaults, **protocol, **kwargs}.get("seed", 0)
    return with_validation(stream, fraction, seed=int(seed or 0))


# options of the env itself (``make_env``), beside the stream builder's
ENV_OPTIONS = {"task_labels": True, "task_boundaries": True, "passes": 1, "transition": 0}
# options every stream takes, applied after its builder (``cl_env.stream.with_validation``)
STREAM_OPTIONS = {"validation_fraction": 0.0}
# options added after runs were first recorded: a run's identity holds them only when they differ
# from these defaults, so results recorded before they existed keep their configuration hash
IDENTITY_OMITS_AT_DEFAULT = {"passes": 1, "transition": 0, "validation_fraction": 0.0}
# options that never change what is emitted (how the float32 batches are prepared, whether
# missing files may be downloaded): not part of a run's identity
PERFORMANCE_OPTIONS = ("chunk_bytes", "download")


def _builder_defaults(builder) -> tuple[dict, bool]:
    """Keyword defaults of a stream builder, following ``_cl_env_delegate`` for builders that pass
    ``**kwargs`` on (MANY -> permutations); keys in ``_cl_env_fixed`` are set by the builder."""
    import inspect

    params = inspect.signature(builder).parameters
    defaults = {k: p.default for k, p in params.items()
                if p.default is not inspect.Parameter.empty and k != "env_id"}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    delegate = getattr(builder, "_cl_env_delegate", None)
    if delegate is not None:
        inner, inner_any = _builder_defaults(delegate)
        for k in getattr(builder, "_cl_env_fixed", ()):
            inner.pop(k, None)
        defaults = {**inner, **defaults}
        accepts_any = inner_any
    return defaults, accepts_any


def _plain(value):
    """A JSON-able form of an option value (paths as strings, tuples as lists)."""
    from pathlib import PurePath

    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


# integer options that may be 0 (everything else integral counts from 1)
_ZERO_OK = ("seed", "transition")


def check_stream_kwargs(env_id: str, kwargs: dict, defaults: dict) -> None:
    """Each given option has its default's type and a sensible range; one clear error otherwise."""
    for k, v in kwargs.items():
        name, d = f"{env_id} option {k}", defaults.get(k, ENV_OPTIONS.get(k))
        if k == "root" or k.endswith("_root"):
            if v is not None and not isinstance(v, (str, PurePath)):
                raise checks.fail(name, v, "a path (str) or None", f"{k}='/path/to/data'")
        elif k == "class_order":  # a permutation's range is checked where the classes are known
            ok = (isinstance(v, str) and v in ("sorted", "random")) or (
                isinstance(v, (list, tuple)) and all(checks.is_int(c) and c >= 0 for c in v))
            if not ok:
                raise checks.fail(name, v, "'sorted', 'random' or a list of class ids",
                                  f"{k}=[1,0,3,2,5,4,7,6,9,8] (a permutation of the classes)")
        elif k in ("source", "mnist_source"):
            if not isinstance(v, str) or v not in SOURCES:
                raise UnknownNameError(f"data source ({name})", str(v), SOURCES)
        elif isinstance(d, bool):
            checks.boolean(name, v, f"{k}={d}")
        elif checks.is_int(d):  # None too is refused: seed=None drew other data under one identity
            checks.integer(name, v, 0 if k in _ZERO_OK else 1, fix=f"{k}={d}")
        elif isinstance(d, float):
            if k.endswith("fraction"):
                checks.number(name, v, 0.0, 1.0, fix=f"{k}={d}")
            else:
                checks.number(name, v, 0.0, fix=f"{k}={d}")
        elif isinstance(d, str) and not isinstance(v, (str, list, tuple)):
            raise checks.fail(name, v, f"a string like {d!r}", f"{k}={d!r}")
        elif d is None and k.endswith(("per_task", "per_class", "examples")) and v is not None:
            checks.integer(name, v, 1)


def resolve_stream_kwargs(env_id: str, kwargs: dict | None = None) -> dict:
    """Every option that defines the stream of ``env_id``: the builder's defaults, the protocol's
    defaults from :data:`STREAMS`, the env options, then ``kwargs`` (a run records this dict).

    Passing the returned dict back to ``gym.make(env_id, **resolved)`` builds the same stream.

    Raises:
        UnknownNameError: ``env_id`` is not registered.
        TypeError: A keyword neither the builder nor the env takes.
    """
    spec = _spec(env_id)
    module, func = spec.entry_point.split(":")
    builder = getattr(importlib.import_module(module), func)
    defaults, accepts_any = _builder_defaults(builder)
    kwargs = dict(kwargs or {})
    bad = [k for k in kwargs if k not in defaults and k not in ENV_OPTIONS and k not in STREAM_OPTIONS
           and k not in PERFORMANCE_OPTIONS and not accepts_any]
    if bad:
        valid = sorted({*defaults, *ENV_OPTIONS, *STREAM_OPTIONS})
        raise TypeError(f"{env_id} does not take {bad}; valid options: {valid}")
    base = {**STREAM_OPTIONS, **defaults, **spec.protocol_kwargs(kwargs, defaults), **ENV_OPTIONS}
    check_stream_kwargs(env_id, kwargs, base)
    for k, v in kwargs.items():  # an int where the default is a float is that float (one identity)
        if isinstance(base.get(k), float) and isinstance(v, int) and not isinstance(v, bool):
            kwargs[k] = float(v)
    merged = {**base, **kwargs}
    for k, d in IDENTITY_OMITS_AT_DEFAULT.items():
        if k in merged and merged[k] == d and type(merged[k]) is type(d):
            del merged[k]
    return {k: _plain(merged[k]) for k in sorted(merged) if k not in PERFORMANCE_OPTIONS}


def register_envs() -> None:
    """Register every row of :data:`STREAMS` with Gymnasium (idempotent)."""
    import gymnasium

    for env_id in STREAMS:
        if env_id not in gymnasium.registry:
            # no wrapper on every step: gymnasium's full check_env runs on every env in the tests
            # (tests/test_cl_env/test_envs.py) instead of its PassiveEnvChecker, and the env refuses
            # a step or a render before reset itself instead of OrderEnforcing (0.24 us a step)
            gymnasium.register(id=env_id, entry_point="cl_env.env:make_env", kwargs={"stream_id": env_id},
                               disable_env_checker=True, order_enforce=False)
