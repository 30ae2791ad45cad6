"""``cl-env report``: a self-contained HTML report that renders in headless Chromium; ``compare --plot``."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import pytest

from agents.harness.cli import main
from agents.harness.runner import run


@pytest.fixture(scope="module")
def runs_dir(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    for agent, memory, budget, seeds in [("online", None, None, (0, 1)), ("er", None, 20, (0, 1)),
                                         ("er", "srm", 20, (0,))]:
        for seed in seeds:
            run(agent=agent, memory=memory, budget=budget, seed=seed, out=root / f"{agent}-{memory}-{seed}",
                settings={"memory.items": 200, "memory.n_sets": 1} if memory == "srm" else None, **tiny)
    return root


def test_report_is_self_contained_with_every_section(runs_dir, capsys):
    assert main(["report", str(runs_dir)]) == 0
    page = (runs_dir / "report.html").read_text()
    assert "<h2>Comparison</h2>" in page and "Retention against incremental storage" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # per run: heatmap and per-task curves; plus the plot; plus SRM's recollection grids from TensorBoard
    assert len(images) >= 2 * 5 + 1 + 1
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert "srm/originals_vs_recollections" in page
    assert "src=\"http" not in page and "<script" not in page  # nothing fetched from anywhere


def test_report_renders_in_headless_chromium(runs_dir, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium) to render the report")
    main(["report", str(runs_dir), "--out", str(tmp_path / "r.html")])
    flags = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--dump-dom", (tmp_path / "r.html").as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert "Retention against incremental storage" in dom.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", (tmp_path / "r.html").as_uri()],
                   capture_output=True, timeout=120)
    from PIL import Image

    img = Image.open(shot).convert("L")
    assert img.size == (1200, 1600)
    assert len(set(img.getdata())) > 50  # drawn figures, not a blank page


def test_compare_plot(runs_dir, tmp_path, capsys):
    assert main(["compare", str(runs_dir), "--plot", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no readable result.json" in capsys.readouterr().err


def _edited(src, dst, edit):
    """A copy of ``src``'s result.json under ``dst``, changed by ``edit(data)`` (its hash kept
    valid where the edit leaves the configuration's identity alone)."""
    import json

    data = json.loads((src / "result.json").read_text())
    edit(data)
    dst.mkdir(parents=True)
    (dst / "result.json").write_text(json.dumps(data))
    return dst


def _set(path, value):
    def edit(d):
        *keys, last = path
        for k in keys:
            d = d[k]
        if value is KeyError:
            d.pop(last, None)
        else:
            d[last] = value
    return edit


# hand-edited results that carry no identity change: each is refused with a reason (compare and
# report go on without it) or shown with "-" where a value is missing, never a traceback
EDITS = {
    "runtime not a mapping": _set(["config", "runtime"], 5),
    "versions not a mapping": _set(["config", "runtime", "versions"], "x"),
    "derived not a mapping": _set(["config", "derived"], 5),
    "storage_bits missing": _set(["storage_bits"], KeyError),
    "storage_bits null": _set(["storage_bits"], None),
    "backward_transfer null": _set(["backward_transfer"], None),
    "effective_examples null": _set(["effective_examples"], None),
    "effective_examples missing": _set(["effective_examples"], KeyError),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_compare_and_report_survive_a_hand_edited_result(name, runs_dir, tmp_path, capsys):
    src = next(p for p in sorted(runs_dir.iterdir()) if p.name.startswith("er-None-0"))
    shutil.copytree(src, tmp_path / "good")
    _edited(src, tmp_path / "bad", EDITS[name])
    for argv in (["compare", str(tmp_path)], ["compare", str(tmp_path), "--plot", str(tmp_path / "p.png")],
                 ["report", str(tmp_path)]):
        assert main(argv) == 0, argv
        assert "Traceback" not in capsys.readouterr().err


def test_report_survives_odd_but_valid_results(runs_dir, tmp_path, capsys):
    """A diverged run stopped before its first evaluation (matrix ``[[]]``), a completed generative
    run with empty metric lists (refused: nothing to show), a path that is not UTF-8."""
    src = next(p for p in sorted(runs_dir.iterdir()) if p.name.startswith("er-None-0"))

    def diverged(d):
        d.update(status="diverged", accuracy_matrix=[[]], retained_accuracy=None, backward_transfer=None,
                 forgetting=None, divergence={"step": 3, "task": 0, "reason": "nan loss"})

    _edited(src, tmp_path / "diverged", diverged)
    _edited(src, tmp_path / "gen", lambda d: d.update(retained_accuracy=None, neg_test_elbo=[], frechet_distance=[]))
    odd = tmp_path / "zz\udcff"  # the name a non-UTF-8 byte gets (surrogate escape)
    shutil.copytree(src, odd)
    assert main(["report", str(tmp_path)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    page = (tmp_path / "report.html").read_text()
    assert "empty neg_test_elbo" in page  # the empty generative result left out, and why
    assert "Diverged at step 3" in page and "zz\ufffd" in page
