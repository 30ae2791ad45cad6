"""Generate docs/reference/: one page per registered environment, agent and memory, from the
registry tables and the docstrings (``python -m agents.harness.docgen``). A test checks the pages are
current, so the reference can never drift from the code."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import cl_env
from agents.presets import reference_lines
from agents.registry import AGENTS, agent_class, takes_items
from memory import MEMORIES, memory_class

ROOT = Path(__file__).parents[2] / "docs" / "reference"


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _signature_options(fn, skip=("self", "spec", "budget", "kwargs", "env_id")) -> list[str]:
    out = []
    for name, p in inspect.signature(fn).parameters.items():
        if name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        default = "" if p.default is inspect.Parameter.empty else f" = `{p.default!r}`"
        out.append(f"- `{name}`{default}")
    return out


def env_page(env_id: str) -> str:
    spec = cl_env.STREAMS[env_id]
    module, fn = spec.entry_point.split(":")
    builder = getattr(importlib.import_module(module), fn)
    defaults = ", ".join(f"`{k}={v!r}`" for k, v in spec.kwargs.items()) or "none"
    for source, extra in spec.source_kwargs.items():
        defaults += f"; with `source={source!r}`: " + ", ".join(f"`{k}={v!r}`" for k, v in extra.items())
    return "\n".join([
        f"# `{env_id}`", "", spec.description, "",
        "```python", "import gymnasium as gym", "import cl_env", "",
        f'env = gym.make("{env_id}", batch_size=10)', "obs, info = env.reset(seed=0)", "```", "",
        "```bash", f"cl-env run {env_id} --agent er --budget 200 --out runs/{env_id.lower()}", "```", "",
        f"Protocol defaults: {defaults}. The stream seed {'changes' if spec.seed_dependent else 'does not change'} "
        "the benchmark instance.", "",
        f"## Builder `{spec.entry_point}`", "", _doc(builder), "",
        "Options (`--stream KEY=VALUE`, or keywords of `gym.make`):", "", *_signature_options(builder), "",
        "See [the environments guide](../environments.md) for data sources and the step protocol.", "",
    ])


def agent_page(name: str) -> str:
    entry, cls = AGENTS[name], agent_class(name)
    settings = cls.all_settings()
    mems = ", ".join(f"[`{m}`](memory-{m}.md)" for m in entry.memories) or "none"
    budget = entry.default_budget if entry.default_budget is not None else "the memory's own default"
    gen = cls.generative
    example = (f"cl-env run SeqFashionMNIST-v0 --agent {name} --out runs/{name}" if gen else
               f"cl-env run MNISTRotations-v0 --agent {name} --out runs/{name}")
    return "\n".join([
        f"# Agent `{name}`", "", entry.description + ".", "",
        "```bash", example, "```", "",
        f"- Class: `{entry.cls}`", f"- Memories it accepts: {mems}; default: "
        f"{('`' + entry.default_memory + '`') if entry.default_memory else 'none'}, default budget: {budget}",
        f"- Generative (evaluated by −ELBO and Fréchet distance, not accuracy): {'yes' if gen else 'no'}", "",
        "## What it does", "", _doc(sys.modules[cls.__module__]), "", _doc(cls) or _doc(cls.__mro__[1]), "",
        "## Settings (`--set KEY=VALUE`)", "", *[f"- `{k}` = `{v!r}`" for k, v in settings.items()], "",
        *reference_lines(name),
        "Memory options go through `--set memory.KEY=VALUE`. See [the agents guide](../agents.md) and the "
        "[measured results](../benchmarks.md).", "",
    ])


def memory_page(name: str) -> str:
    cls = memory_class(name)
    skip = ("self", "spec", "budget", "kwargs", "env_id", "capacity")  # capacity: --items N, not --set
    own = _signature_options(cls.__init__, skip)
    opts = own + [o for o in _signature_options(cls.for_budget, skip) if o not in own]
    sized = takes_items(cls)
    size = ("`--budget B` (effective real examples of storage) or `--items N` (exactly N items; the bits "
            "they cost are reported)" if sized else "`--budget B` (effective real examples of storage)")
    return "\n".join([
        f"# Memory `{name}`", "", f"Class `{cls.__module__}.{cls.__name__}`.", "",
        _doc(sys.modules[cls.__module__]), "", _doc(cls), "",
        f"Size: {size}.", "",
        "## Options (`--set memory.KEY=VALUE`)", "", *opts, "",
        "Storage is reported exactly: `storage_bits` (incremental), `overhead_bits` (sunk), `items`. "
        "See [the memories guide](../memories.md) for the accounting and the paper each module follows.", "",
    ])


def pages() -> dict[str, str]:
    out = {f"env-{e}.md": env_page(e) for e in cl_env.STREAMS}
    out.update({f"agent-{a}.md": agent_page(a) for a in AGENTS})
    out.update({f"memory-{m}.md": memory_page(m) for m in MEMORIES})
    index = ["# Reference", "", "One page per registered name, generated from the registry tables and the "
             "docstrings (`python -m agents.harness.docgen`).", ""]
    for title, prefix in (("Environments", "env-"), ("Agents", "agent-"), ("Memories", "memory-")):
        index += [f"## {title}", ""] + [f"- [`{k[len(prefix):-3]}`]({k})" for k in sorted(out) if k.startswith(prefix)] + [""]
    out["index.md"] = "\n".join(index)
    return out


def main() -> int:
    ROOT.mkdir(parents=True, exist_ok=True)
    for name, text in pages().items():
        (ROOT / name).write_text(text)
    print(f"wrote {len(pages())} pages under {ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
