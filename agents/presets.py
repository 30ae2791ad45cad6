"""Presets: named, versioned hyperparameters for one method on one benchmark and buffer size,
each with its provenance (Mammoth's ``--load_best_args``, written down as our own table).

A run given ``preset="derpp-seqmnist-500"`` (``cl-env run ... --preset``, a sweep's ``preset:``)
takes the row's memory, size and settings; explicit arguments win (``--set``, ``--memory``,
``--budget``) and the configuration records the preset's name, version and source and which of
its keys were overridden, so the preset is part of the run's identity (its hash).

The rows' numbers come from Mammoth's ``utils/best_args.py`` at the commit of the DER paper's
code (aimagelab/mammoth ``d20f640293df1a6e697c4ca0baa251efeb059ff2``, 2020-11-18; its
``best_args['seq-mnist']`` is identical at ``7ab9db9``, the first commit, and changed since only
by renaming ``wd_reg`` to ``optim_wd``), translated into our settings' meanings (the mapping
table in docs/agents.md); methods Mammoth does not tune on Seq-MNIST say where theirs come from.
A row never changes: a corrected row is a new ``version``. The DER paper's appendix lists its
chosen hyperparameters as well; the copies of the paper available to us while writing this
returned only its opening pages, so the rows are checked against Mammoth's file, not that text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.registry import agent_class, agent_entry
from cl_env import checks
from cl_env.error import UnknownNameError
from cl_env.registration import resolve_stream_kwargs
from memory import memory_class
from memory.base import MemorySpec, budget_bits

MAMMOTH = "aimagelab/mammoth@d20f640293df1a6e697c4ca0baa251efeb059ff2 utils/best_args.py"


@dataclass(frozen=True)
class Benchmark:
    """A benchmark a preset is tuned for: an env id, the stream options that make it that
    benchmark, the stream's geometry (what a memory's bits per item depend on) and the settings
    its protocol fixes for every method (the network)."""

    name: str
    env: str
    stream: tuple[tuple[str, Any], ...]
    image_shape: tuple[int, int, int]
    n_classes: int
    n_tasks: int
    settings: tuple[tuple[str, Any], ...] = ()

    def memory_spec(self) -> MemorySpec:
        return MemorySpec(self.image_shape, self.n_classes, self.n_tasks)

    def describe(self) -> str:
        opts = " ".join(f"--stream {k}={v}" for k, v in self.stream)
        return f"{self.env} {opts}".strip()


# the network of every Seq-MNIST row: Mammoth's backbone/MNISTMLP.py at the same commit, 784-100-100-10
# with ReLU, Xavier-uniform weights and zero biases, which is our "mlp" with weight_init "xavier"
SEQ_MNIST = Benchmark("seq-mnist", "SplitMNIST-v0", (("source", "mnist"),), (1, 28, 28), 10, 5,
                      (("model", "mlp"), ("weight_init", "xavier")))


@dataclass(frozen=True)
class Preset:
    """A row of :data:`PRESETS`.

    Attributes:
        name: What ``--preset`` takes (``NAME`` for the newest version, ``NAME@VERSION``).
        version: Bumped whenever any field changes; the run records it.
        agent: The registered agent the settings are for.
        benchmark: What they were tuned on.
        items: The buffer's size in items as the source states it (None: no memory).
        memory: The memory the method's paper uses (None: none).
        settings: ``--set`` keys and values (our names and meanings).
        source: Where the numbers come from (a file at a commit, or a paper and table).
        note: What could not be carried over, and differences a reader should know.
    """

    name: str
    version: int
    agent: str
    benchmark: Benchmark
    items: int | None
    memory: str | None
    settings: tuple[tuple[str, Any], ...]
    source: str
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def settings_dict(self) -> dict[str, Any]:
        return dict(self.settings)


def _mammoth(key: str) -> str:
    return f"{MAMMOTH}, best_args['seq-mnist']{key}"


def _row(agent: str, items: int | None, memory: str | None, settings: dict, source: str, note: str = "",
         version: int = 1) -> Preset:
    name = f"{agent}-seqmnist" + ("" if items is None else f"-{items}")
    merged = {**dict(SEQ_MNIST.settings), **settings}
    return Preset(name, version, agent, SEQ_MNIST, items, memory, tuple(merged.items()), source, note)


_ER = {200: 0.01, 500: 0.1, 5120: 0.1}  # Mammoth's er lr per buffer (minibatch_size 10 at each)
_GEM = {200: (0.01, 1.0), 500: (0.03, 0.5), 5120: (0.1, 1.0)}  # (lr, gamma)
_DER = {200: (0.03, 10, 0.2), 500: (0.03, 128, 1.0), 5120: (0.1, 128, 0.5)}  # (lr, minibatch_size, alpha)
_DERPP = {200: (0.03, 128, 0.2, 1.0), 500: (0.03, 10, 1.0, 0.5), 5120: (0.1, 64, 0.2, 0.5)}
_GEM_NOTE = ("Mammoth fills each task's share (buffer // 5) at the task's end with a random draw of its "
             "data; our task_ring keeps the task's last examples")
_ICARL_NOTE = ("Mammoth's loss is BCE averaged over batch x classes seen, ours (the paper's Algorithm 3) "
               "summed over classes: at lr 0.1 our steps are 2-10x Mammoth's; Mammoth's minibatch_size is "
               "unused by its iCaRL (exemplars join the task's training set), ours replays 10 per step")

PRESETS: tuple[Preset, ...] = (
    _row("online", None, None, {"lr": 0.03}, _mammoth("['sgd'][-1]")),
    _row("ewc", None, None, {"lr": 0.03, "lam": 180.0}, _mammoth("['ewc_on'][-1]: e_lambda 90, gamma 1.0"),
         "Mammoth's penalty is e_lambda * sum F (theta - theta*)^2, ours lam/2 * the same, so lam = 2 * 90; "
         "Mammoth runs online EWC (one anchor, Fisher over the whole task, decay gamma 1), ours one penalty "
         "per task from its last fisher_samples examples"),
    _row("si", None, None, {"lr": 0.1, "lam": 1.0, "xi": 0.9}, _mammoth("['si'][-1]: c 1.0, xi 0.9"),
         "lam = c (both penalties are c * sum Omega (theta - theta*)^2); Mammoth clips gradient values at 1 "
         "and accumulates lr * g^2 (penalty gradient included), ours -g_task * delta_theta (eq. 3)"),
    _row("lwf", None, None, {"lr": 0.03, "alpha": 0.25, "temperature": 2.0},
         _mammoth("['lwf'][-1]: alpha 1, softmax_temp 2.0, wd_reg 0.0005"),
         "Mammoth's term is alpha * CE(softmax(z_old/T), softmax(z/T)) (its smooth() is softmax(z/T)), ours "
         "alpha * T^2 * KL of the same distributions: same gradient at alpha = 1 / T^2 = 0.25; wd_reg 0.0005 (an "
         "L2 term on every weight) has no setting here and is not applied; Mammoth also distils only the "
         "classes of past tasks and warms the classifier up on each new task"),
    _row("mas", None, None, {"lr": 0.03, "lam": 0.01},
         "no published Seq-MNIST value: lr from " + _mammoth("['sgd'][-1]") + "; lam is cl-env's default "
         "(agents/importance.py, measured on MNISTRotations-v0)",
         "Mammoth and the DER paper have no MAS; Aljundi et al. 2018 report no split-MNIST lambda"),
    *(_row("er", n, "reservoir", {"lr": _ER[n], "replay_batch": 10}, _mammoth(f"['er'][{n}]")) for n in _ER),
    *(_row("er_ace", n, "reservoir", {"lr": _ER[n], "replay_batch": 10},
           "derived: ER's row (" + _mammoth(f"['er'][{n}]") + "); memory from pclucas14/AML@"
           "0c183e931518e89dec7f5dae34bbe3c8996efe4c buffer.py (add = add_reservoir)",
           "Mammoth and the ER-ACE paper (Caccia et al. 2022) tune no Seq-MNIST row; ER-ACE changes only the "
           "incoming batch's loss, so ER's rate and replay batch are used") for n in _ER),
    *(_row("gem", n, "task_ring", {"lr": _GEM[n][0], "margin": _GEM[n][1]},
           _mammoth(f"['gem'][{n}]: gamma {_GEM[n][1]}"), _GEM_NOTE) for n in _GEM),
    *(_row("agem", n, "task_ring", {"lr": 0.1, "ref_batch": 128}, _mammoth(f"['agem'][{n}]: minibatch_size 128"),
           _GEM_NOTE) for n in (200, 500, 5120)),
    *(_row("icarl", n, "herding", {"lr": 0.1, "replay_batch": 10}, _mammoth(f"['icarl'][{n}]: wd_reg 0"),
           _ICARL_NOTE) for n in (200, 500, 5120)),
    *(_row("der", n, "logit_reservoir", {"lr": _DER[n][0], "replay_batch": _DER[n][1], "alpha": _DER[n][2],
                                         "beta": 0.0}, _mammoth(f"['der'][{n}]")) for n in _DER),
    *(_row("derpp", n, "logit_reservoir", {"lr": _DERPP[n][0], "replay_batch": _DERPP[n][1],
                                           "alpha": _DERPP[n][2], "beta": _DERPP[n][3]},
           _mammoth(f"['derpp'][{n}]"), "Mammoth draws both replay batches of minibatch_size items, as we do")
      for n in _DERPP),
    *(_row("gdumb", n, "class_balanced", {"lr": 0.05, "min_lr": 0.0005, "epochs": 128, "batch": 16, "clip": 10.0},
           "drimpossible/GDumb@74a5e814afd89b19476cd0ea4287d09a7df3c7a8 scripts/replicate.sh (MNIST, 5 tasks "
           "of 2 classes, --num_passes 128) and src/opts.py (maxlr 0.05, minlr 0.0005, batch_size 16, clip 10)",
           "GDumb tunes no 200/5120 rows (its MNIST runs hold 300, 500 and 4,400 items); the same optimiser "
           "is used at every size") for n in (200, 500, 5120)),
)


def _index() -> dict[str, list[Preset]]:
    out: dict[str, list[Preset]] = {}
    for p in PRESETS:
        out.setdefault(p.name, []).append(p)
    return {k: sorted(v, key=lambda p: p.version) for k, v in out.items()}


def find_preset(spec: str) -> Preset:
    """The preset ``spec`` names: ``NAME`` (its newest version) or ``NAME@VERSION``.

    Raises:
        UnknownNameError: No such name (the message suggests the closest) or version.
    """
    if not isinstance(spec, str) or not spec:
        raise checks.fail("preset", spec, "a preset name such as 'derpp-seqmnist-500' (cl-env list presets)")
    index = _index()
    name, _, version = spec.partition("@")
    if name not in index:
        raise UnknownNameError("preset", name, index)
    if not version:
        return index[name][-1]
    for p in index[name]:
        if str(p.version) == version:
            return p
    raise UnknownNameError(f"version of preset {name!r}", version, [str(p.version) for p in index[name]])


def equivalent_budget(preset: Preset, memory: str) -> float:
    """The ``--budget`` (effective examples) whose memory holds exactly ``preset.items`` items.

    Only for memories whose bits per item are fixed (a class method ``item_bits``: the buffers of
    real examples, with their labels, task ids and, for ``logit_reservoir``, logits); their
    ``for_budget`` floors ``budget * example_bits / item_bits``, so the half-bit added here gives
    back exactly ``items``.

    Raises:
        ValueError: ``memory`` has no fixed bits per item.
    """
    cls = memory_class(memory)
    if not callable(getattr(cls, "item_bits", None)):
        raise ValueError(f"preset {preset.key} gives {preset.items} items, but memory {memory!r} has no fixed bits "
                         "per item; pass --budget B (effective real examples) instead")
    spec = preset.benchmark.memory_spec()
    budget = (preset.items * cls.item_bits(spec) + 0.5) / spec.example_bits
    assert budget_bits(budget, spec) // cls.item_bits(spec) == preset.items
    return budget


@dataclass(frozen=True)
class Applied:
    """A preset merged with a run's explicit arguments: what the run uses, and what its
    configuration records under ``"preset"``."""

    memory: str | None
    budget: float | None
    settings: dict
    record: dict
    items: int | None = None  # the preset's exact item count when its size applies (for an --items path)


def apply_preset(spec: str, env_id: str, agent: str, memory: str | None = None, budget: float | None = None,
                 settings: dict | None = None, stream_kwargs: dict | None = None) -> Applied:
    """Merge preset ``spec`` under the explicit arguments of a run.

    The preset's settings fill the keys ``settings`` does not give; its memory and size apply
    unless ``memory``/``budget`` are given. Its items become the equivalent budget
    (:func:`equivalent_budget`) until runs take an exact item count. The record names the
    preset, its version, benchmark, items and source, and lists the keys given explicitly over it
    with another value (``overridden``: settings, then ``memory`` and ``budget``), so restating a
    preset's own value is the same run as leaving it out.

    Raises:
        UnknownNameError: No such preset.
        ValueError: The preset is for another agent, env or stream source (one line with the fix).
    """
    p = find_preset(spec)
    if agent != p.agent:
        raise ValueError(f"preset {p.key} is for agent {p.agent!r}, not {agent!r}: use --agent {p.agent}, or a "
                         f"preset of {agent!r} (cl-env list presets)")
    bench = p.benchmark
    if env_id != bench.env:
        raise ValueError(f"preset {p.key} is for {bench.describe()}, not {env_id}: run that env, or drop --preset")
    resolved = resolve_stream_kwargs(env_id, stream_kwargs)
    for key, want in bench.stream:
        if resolved.get(key) != want:
            raise ValueError(f"preset {p.key} is for {bench.describe()}; this run has {key}={resolved.get(key)!r}: "
                             f"add --stream {key}={want}")
    given = dict(settings or {})
    overridden = sorted(k for k, v in p.settings if k in given and given[k] != v)  # 1 == 1.0: not overridden
    if memory is not None and memory != p.memory:
        overridden.append("memory")
    if budget is not None and p.items is not None:
        overridden.append("budget")
    mem = memory if memory is not None else p.memory
    size = budget
    if size is None and p.items is not None and mem is not None:
        size = equivalent_budget(p, mem)
    record = {"name": p.name, "version": p.version, "benchmark": bench.name, "items": p.items,
              "source": p.source, "overridden": overridden}
    items = p.items if budget is None and mem is not None else None
    return Applied(mem, size, {**p.settings_dict(), **given}, record, items)


def check_preset(p: Preset) -> dict:
    """A preset's settings resolved by its agent (:func:`agents.settings.resolve_settings`): every
    key known and every value valid; its memory one the agent accepts.

    Raises:
        UnknownNameError, InvalidValueError, ValueError: A key, value or memory the agent refuses.
    """
    entry = agent_entry(p.agent)
    if p.memory is not None and p.memory not in entry.memories:
        raise ValueError(f"preset {p.key}: agent {p.agent!r} cannot use memory {p.memory!r}")
    if (p.memory is None) != (p.items is None):
        raise ValueError(f"preset {p.key}: items and memory go together")
    return agent_class(p.agent).resolve_settings(p.settings_dict())


def preset_rows() -> list[dict]:
    """One dict per preset for ``cl-env list presets`` and the docs."""
    return [{"name": p.name, "version": p.version, "agent": p.agent, "benchmark": p.benchmark.name,
             "env": p.benchmark.describe(), "items": p.items, "memory": p.memory,
             "settings": p.settings_dict(), "source": p.source} for p in PRESETS]


def format_presets() -> str:
    """The text ``cl-env list presets`` prints."""
    lines = ["Presets (--preset NAME or NAME@VERSION; explicit --set/--memory/--budget win and are recorded):"]
    for r in preset_rows():
        buf = "-" if r["items"] is None else f"{r['items']} items ({r['memory']})"
        sets = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        lines.append(f"  {r['name']:22s} v{r['version']}  {r['agent']:7s} {r['benchmark']} ({r['env']}), "
                     f"buffer {buf}\n      {sets}\n      source: {r['source']}")
    return "\n".join(lines) + "\n"


def preset_mismatch(spec: str, env_id: str, agent: str) -> str | None:
    """Why preset ``spec`` does not fit a sweep cell of ``env_id`` and ``agent`` (None: it fits);
    the stream source is checked when the cell's configuration is computed.

    Raises:
        UnknownNameError: No such preset.
    """
    p = find_preset(spec)
    if p.agent != agent or p.benchmark.env != env_id:
        return f"{agent} on {env_id} + preset {p.key}: the preset is for {p.agent} on {p.benchmark.env}"
    return None


def preset_agents(specs: list) -> list[str]:
    """The agents of the presets ``specs`` in order, once each (a sweep without ``agents:``)."""
    out: list[str] = []
    for spec in specs:
        if spec is not None and find_preset(spec).agent not in out:
            out.append(find_preset(spec).agent)
    return out


def reference_lines(agent: str) -> list[str]:
    """The "Presets" part of ``agent``'s reference page (docs/reference/agent-NAME.md); empty
    when it has none."""
    rows = [p for p in PRESETS if p.agent == agent]
    if not rows:
        return []
    first = rows[0]
    out = ["## Presets (`--preset NAME`)", "",
           "Tuned settings with their source (`cl-env list presets`; explicit `--set` wins and is recorded):", ""]
    for p in rows:
        buf = "no memory" if p.items is None else f"{p.items} items of `{p.memory}`"
        sets = ", ".join(f"`{k}={v}`" for k, v in p.settings)
        out.append(f"- `{p.key}`: {p.benchmark.name} ({buf}): {sets}. Source: {p.source}.")
    notes = sorted({p.note for p in rows if p.note})
    out += ["", *[f"Note: {n}." for n in notes], "",
            "```bash", f"cl-env run {first.benchmark.describe()} --agent {agent} --preset {first.name} --seed 0", "```", ""]
    return out
