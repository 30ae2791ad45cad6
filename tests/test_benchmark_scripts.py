"""The benchmark scripts run: ``gpu_check.py --device cpu`` (what CI can run without a GPU) finds
every pair deterministic, and ``speed.py`` writes its table between the docs' markers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.expensive
def test_gpu_check_passes_on_the_cpu():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--steps", "40",
                          "--agents", "online", "er", "gem", "agem", "ewc", "lwf", "der", "icarl",
                          "--memories", "reservoir", "task_ring", "logit_reservoir", "herding"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    pairs_table, seeds_table = out.stdout.split("seeds stacked on cpu")
    rows = [line for line in pairs_table.splitlines() if line.startswith("| ") and "agent" not in line]
    assert len(rows) == 10 and all(r.endswith("| yes | ok |") for r in rows), out.stdout
    # five seeds stacked equal the same seeds one after another, bit for bit at one thread
    rows = [line for line in seeds_table.splitlines() if line.startswith("| ") and "agent" not in line]
    assert len(rows) == 6 and all("| 0.0000 (must be 0) |" in r and r.endswith("| ok |") for r in rows), out.stdout
    assert "0 failed" in out.stdout


def test_gpu_check_without_cuda_says_so_in_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cuda"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "--device cpu" in out.stderr


def test_speed_table_is_written_between_the_markers(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import speed
    finally:
        sys.path.pop(0)
    m = {"env": "E", "n_tasks": 2, "n_examples": 2000, "repeats": 3, "device": "cpu", "budget": None, "bare_s": 0.5,
         "threads": 1, "rows": [{"agent": "er", "memory": "reservoir", "effective": 199.2, "wall_s": 1.0,
                                 "examples_per_s": 2000.0, "ratio": 2.0, "retained": 0.5, "status": "completed"}]}
    page = tmp_path / "p.md"
    page.write_text(f"head\n{speed.START}\nold\n{speed.END}\ntail\n")
    speed.update_docs(page, speed.table(m))
    text = page.read_text()
    assert "old" not in text and text.startswith("head\n") and text.endswith("tail\n")
    assert "| er | reservoir | 199 | 1.00 | 2,000 | 2.0 | 50.0 % |" in text


def test_codec_quality_volume_is_the_dpp_l_ensemble_log_determinant():
    """MRDC's rule (benchmarks/codec_quality.py) reads log det(I + Phi Phi^T) over the samples
    through its d x d form (Sylvester's identity); a copy of the samples adds volume, a shrunk
    feature set loses it."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import codec_quality
    finally:
        sys.path.pop(0)
    phi = torch.randn(30, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    unit = torch.nn.functional.normalize(phi, dim=1)
    direct = float(torch.logdet(torch.eye(30, dtype=torch.float64) + unit @ unit.T))
    assert codec_quality.feature_volume(phi) == pytest.approx(direct, rel=1e-9)
    assert codec_quality.feature_volume(phi[:10]) < codec_quality.feature_volume(phi)
    same_direction = phi[:1].repeat(30, 1)  # no diversity: the volume of one point, repeated
    assert codec_quality.feature_volume(same_direction) < codec_quality.feature_volume(phi)


def test_seqmnist_table_reads_both_scenarios_and_sets_the_papers_mean_beside(mnist_root, tmp_path):
    """``seqmnist_table.py`` on two seeds of a preset run: our Class-IL and Task-IL means over the
    seeds, the paper's row beside them, a verdict by the stated rule."""
    import importlib.util
    import statistics

    from agents.harness.runner import run

    stream = {"source": "mnist", "verify": False, "root": str(mnist_root)}
    res = [run("SplitMNIST-v0", agent="er", preset="er-seqmnist-200", seed=s, stream_kwargs=stream,
               out=tmp_path / "runs" / f"s{s}") for s in (0, 1)]
    spec = importlib.util.spec_from_file_location("seqmnist_table", ROOT / "benchmarks" / "seqmnist_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    [row] = table.rows([str(tmp_path / "runs")])
    cil = [100 * r.retained_accuracy for r in res]
    til = [100 * r.task_il_retained_accuracy for r in res]
    assert (row["method"], row["buffer"], row["seeds"], row["paper_cil"], row["paper_til"]) == (
        "ER", "200", "0,1", "80.43", "97.86")
    assert row["ours_cil"] == f"{statistics.mean(cil):.2f} ± {statistics.stdev(cil):.2f}"
    assert row["ours_til"] == f"{statistics.mean(til):.2f} ± {statistics.stdev(til):.2f}"
    spread = max(statistics.stdev(cil), 1.0)
    assert row["verdict"] == ("reproduced" if abs(statistics.mean(cil) - 80.43) <= spread else "not reproduced")
    assert "| ER | 200 | 0,1 |" in table.markdown([row])


def test_env_throughput_times_the_env_the_bare_loop_and_the_null_env_floor(mnist_root):
    """benchmarks/env_throughput.py: the null env (the floor of any Gymnasium env) rewards as the
    env does, and a measurement returns every column."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import env_throughput
    finally:
        sys.path.pop(0)
    x, y = np.zeros((4, 3, 1, 2, 2), dtype=np.float32), np.array([[0, 1, 2]] * 4)
    null = env_throughput.NullEnv(x, y, 3)
    null.reset()
    _, reward, done, _, info = null.step(np.array([0, 1, 0]))
    assert reward == pytest.approx(2 / 3) and not done and info["examples_seen"] == 3
    stream = {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 40}
    r = env_throughput.measure("MNISTRotations-v0", 10, 1, stream)
    assert r["steps"] == 8 and all(r[k] > 0 for k in ("env_s", "bare_s", "null_s", "ratio", "null_ratio"))


def test_srm_recollection_gap_reads_a_run_back_from_its_checkpoint(mnist_root, tmp_path):
    """benchmarks/srm_recollection_gap.py rebuilds an SRM run from its directory: per task, its
    items and three accuracies, the real test images' matching the run's own last accuracy row."""
    from agents import run

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import srm_recollection_gap
    finally:
        sys.path.pop(0)
    kw = {"source": "mnist", "verify": False, "root": str(mnist_root), "train_per_class": 20}
    r = run("SplitMNIST-v0", agent="er", memory="srm", budget=5, stream_kwargs=kw, out=tmp_path / "srm",
            settings={"memory.items": 60, "memory.n_sets": 1}, progress=False)
    rows = srm_recollection_gap.gap(tmp_path / "srm")
    assert [row["task"] for row in rows] == list(range(5)) and sum(row["items"] for row in rows) == r.items
    assert [row["test"] for row in rows] == pytest.approx(r.accuracy_matrix[-1])
    assert all(0 <= row[k] <= 1 for row in rows for k in ("recollections", "test through the autoencoder"))


def test_srm_entropy_seeds_sets_the_two_srm_stores_side_by_side_with_tests(mnist_root, tmp_path, capsys):
    """benchmarks/srm_entropy_seeds.py reads bit-packed and entropy-coded SRM runs back by budget
    and store, per seed, and tests their difference over the seeds."""
    pytest.importorskip("constriction")
    from agents import run

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import srm_entropy_seeds
    finally:
        sys.path.pop(0)
    kw = {"source": "mnist", "verify": False, "root": str(mnist_root), "train_per_class": 10}
    acc = {}
    for coded in (False, True):
        for seed in (0, 1):
            r = run("SplitMNIST-v0", agent="er", memory="srm", budget=0.5, stream_kwargs=kw, seed=seed,
                    settings={"memory.items": 40, "memory.n_sets": 1, "memory.entropy_coding": coded},
                    out=tmp_path / "grid" / f"{int(coded)}-{seed}", progress=False)
            acc[(coded, seed)] = (100 * r.retained_accuracy, r.items)
    data = srm_entropy_seeds.collect(str(tmp_path / "grid"))
    assert data == {(0.5, False): {0: acc[(False, 0)], 1: acc[(False, 1)]},
                    (0.5, True): {0: acc[(True, 0)], 1: acc[(True, 1)]}}
    assert srm_entropy_seeds.main([str(tmp_path / "grid")]) == 0
    out = capsys.readouterr().out
    assert "| 0.5 | srm (bit-packed) | 0-1 (2) |" in out and "| 0.5 | srm + entropy_coding | 0-1 (2) |" in out
    assert "budget 0.5: entropy-coded minus packed" in out and "Welch t" in out
    assert srm_entropy_seeds.main([str(tmp_path / "empty")]) == 2
