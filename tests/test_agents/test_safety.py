"""Nothing cl-env loads can execute code (issue 15): crafted payloads on every path that loads a
user file are refused with one clear line, and the payload never runs."""

from __future__ import annotations

import os
import pickle
import shutil

import pytest
import torch

from agents.harness.cli import main
from agents.harness.run import checkpoint
from agents.harness.runner import run


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: if the marker exists, code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _stream(mnist_root) -> dict:
    return {"source": "mnist", "verify": False, "root": str(mnist_root), "n_tasks": 2, "train_per_task": 100}


def _cli_stream(mnist_root) -> list[str]:
    return ["--stream", "source=mnist", "verify=False", f"root={str(mnist_root)!r}", "n_tasks=2",
            "train_per_task=100"]


def test_the_payload_really_runs_under_a_plain_load(tmp_path):
    """The control: the same file loaded the unsafe way does run code."""
    torch.save({"agent": _Payload(tmp_path / "ran")}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert (tmp_path / "ran").exists()


def _interrupted_run(mnist_root, out):
    with pytest.raises(KeyboardInterrupt):
        run("MNISTRotations-v0", agent="er", budget=20, stream_kwargs=_stream(mnist_root), out=out,
            stop_after_task=0)


def test_resume_refuses_a_crafted_checkpoint_without_running_it(mnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    _interrupted_run(mnist_root, out)  # config.json of this very configuration: the check passes
    torch.save({"agent": _Payload(tmp_path / "ran"), "config_hash": "x"}, out / "checkpoint.pt")
    code = main(["run", "MNISTRotations-v0", "--agent", "er", "--budget", "20", *_cli_stream(mnist_root),
                 "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "ran").exists()
    assert "refused without running them" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a torch file at all"])
def test_truncated_or_empty_checkpoints_are_one_clear_line(mnist_root, tmp_path, capsys, content):
    out = tmp_path / "run"
    _interrupted_run(mnist_root, out)
    good = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(content if content else b"")
    if content.startswith(b"PK"):
        (out / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    code = main(["run", "MNISTRotations-v0", "--agent", "er", "--budget", "20", *_cli_stream(mnist_root),
                 "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "--overwrite" in err
    assert ("empty (0 bytes)" in err) if not content else ("cannot be read as a torch file" in err)


def test_a_sweep_never_runs_a_crafted_checkpoint_in_a_cell(mnist_root, tmp_path):
    from agents.harness.sweep import expand, sweep

    cfg = {"out": str(tmp_path / "s"), "envs": ["MNISTRotations-v0"], "agents": ["er"], "budgets": [20],
           "seeds": [0], "stream": _stream(mnist_root), "retries": 0}
    [cell], _ = expand(cfg)
    cell_dir = cell.directory(tmp_path / "s")
    _interrupted_run(mnist_root, cell_dir)
    torch.save({"agent": _Payload(tmp_path / "ran")}, cell_dir / "checkpoint.pt")
    [rec] = sweep(cfg, workers=1, log=lambda *_: None)
    assert rec["status"] == "failed" and "refused without running them" in rec["error"]
    assert not (tmp_path / "ran").exists()


def test_vae_path_refuses_a_crafted_file(mnist_root, tmp_path, capsys):
    torch.save({"state": _Payload(tmp_path / "ran")}, tmp_path / "vae.pt")
    code = main(["run", "MNISTRotations-v0", "--agent", "er", "--memory", "srm", "--budget", "20",
                 *_cli_stream(mnist_root), "--set", f"memory.vae_path={str(tmp_path / 'vae.pt')!r}"])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "ran").exists()
    assert "memory.vae_path" in err and "refused without running them" in err and "Traceback" not in err


def test_vae_path_round_trip_still_works(tmp_path):
    from memory.nets import DiscreteVAE
    from memory.srm import load_vae, save_vae

    vae = DiscreteVAE((1, 28, 28), 16, 4)
    save_vae(vae, tmp_path / "v.pt")
    back = load_vae(tmp_path / "v.pt")
    assert all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), back.state_dict().values(),
                                                 strict=True))


def test_cifar_batches_go_through_a_restricted_unpickler(image_root, tmp_path):
    import cl_env
    from cl_env.error import CorruptDataError

    root = tmp_path / "images"
    shutil.copytree(image_root / "cifar-10-batches-py", root / "cifar-10-batches-py")
    with open(root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": _Payload(tmp_path / "ran"), b"labels": [0]}, f, protocol=2)
    with pytest.raises(CorruptDataError, match="refused to load posix.mkdir|refused to load os.mkdir"):
        cl_env.make_stream("SplitCIFAR10-v0", root=str(root), verify=False)
    assert not (tmp_path / "ran").exists()
    # the real layout still loads through it
    stream = cl_env.make_stream("SplitCIFAR10-v0", root=str(image_root), verify=False)
    assert stream.n_tasks == 5


def test_compare_and_report_only_read_json_and_event_files(mnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    run("MNISTRotations-v0", agent="online", stream_kwargs=_stream(mnist_root), out=out)
    torch.save({"agent": _Payload(tmp_path / "ran")}, out / "checkpoint.pt")
    with open(out / "result.pkl", "wb") as f:
        pickle.dump(_Payload(tmp_path / "ran2"), f)
    assert main(["compare", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path)]) == 0
    assert not (tmp_path / "ran").exists() and not (tmp_path / "ran2").exists()


def test_checkpoint_encoding_round_trips_numpy_and_refuses_objects(tmp_path):
    import numpy as np

    state = {"R": np.arange(6.0).reshape(2, 3), "n": np.int64(3), "rng": np.random.RandomState(0).get_state(),
             "t": torch.ones(2), "nested": [{"a": (1, 2.5, None, "x")}]}
    checkpoint.save(state, tmp_path / "c.pt")
    back = checkpoint.load(tmp_path / "c.pt")
    assert np.array_equal(back["R"], state["R"]) and back["R"].dtype == np.float64
    assert back["n"] == 3 and isinstance(back["n"], np.int64)
    assert np.array_equal(back["rng"][1], state["rng"][1]) and back["rng"][0] == "MT19937"
    assert back["nested"] == [{"a": (1, 2.5, None, "x")}]
    with pytest.raises(TypeError, match=r"state\.obj: .*cannot be checkpointed safely"):
        checkpoint.save({"obj": object()}, tmp_path / "d.pt")
    assert not (tmp_path / "d.pt").exists()
