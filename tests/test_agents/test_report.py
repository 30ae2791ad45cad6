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
