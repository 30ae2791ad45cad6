"""The docs' links and the commands they show exist: relative links resolve, every ``cl-env``
command names a real subcommand, env id, agent, memory and option, every script path exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import cl_env
from agents.harness.cli import build_parser
from agents.registry import AGENTS
from memory import MEMORIES

ROOT = Path(__file__).parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]


def _commands(text: str) -> list[tuple[str, bool]]:
    """``(command, whole)``: lines of code blocks (checked whole) and inline mentions (names only)."""
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)
    lines = [(ln.strip(), True) for b in blocks for ln in b.splitlines()]
    inline = [(c, False) for c in re.findall(r"`(cl-env [^`]+)`", text)]
    return [(c.split(" #")[0].strip(), whole) for c, whole in lines + inline if c.startswith(("cl-env ", "python "))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_exist(page):
    parser = build_parser()
    subcommands = set(parser._subparsers._group_actions[0].choices)
    for cmd, whole in _commands(page.read_text()):
        cmd = re.sub(r"\$\{?\w+\}?", "0", cmd)  # shell loop variables: any value will do
        words = shlex.split(cmd.replace("\\\n", " "))
        if words[0] == "python":
            scripts = [w for w in words[1:] if w.endswith(".py")]
            for s in scripts:
                assert (ROOT / s).exists(), f"{page.name}: {cmd!r} names a missing script {s}"
            continue
        if "&&" in words:
            words = words[: words.index("&&")]
        if words[1] in ("--version", "-h", "--help"):
            continue
        assert words[1] in subcommands, f"{page.name}: unknown subcommand in {cmd!r}"
        if words[1] in ("run", "pretrain-srm") and len(words) > 2 and not words[2].startswith("-"):
            env = words[2]
            assert env in cl_env.STREAMS, f"{page.name}: unknown env {env!r} in {cmd!r}"
        for flag, table in (("--agent", AGENTS), ("--memory", MEMORIES)):
            if flag in words:
                name = words[words.index(flag) + 1]
                assert name in table, f"{page.name}: unknown {flag} {name!r} in {cmd!r}"
        if not whole:
            continue
        # the whole line parses (options and their values)
        args = [w for w in words[1:] if "..." not in w and "…" not in w]
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"{page.name}: {cmd!r} does not parse")


def test_reference_pages_are_current_and_cover_every_name():
    from agents.harness.docgen import ROOT as REF
    from agents.harness.docgen import pages

    expected = pages()
    for name in [*cl_env.STREAMS]:
        assert f"env-{name}.md" in expected
    for name in AGENTS:
        assert f"agent-{name}.md" in expected
    for name in MEMORIES:
        assert f"memory-{name}.md" in expected
    stale = [n for n, text in expected.items() if not (REF / n).exists() or (REF / n).read_text() != text]
    assert not stale, f"docs/reference is out of date for {stale}: run `python -m agents.harness.docgen`"
