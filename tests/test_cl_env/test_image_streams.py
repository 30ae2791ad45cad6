"""The image streams on fixture files in the real formats (CIFAR pickles, SVHN .mat, Omniglot and
MiniImageNet trees): protocols, splits, shapes and the missing-data errors."""

from __future__ import annotations

import pytest
import torch

import cl_env
from cl_env.data import fixtures, load_source
from cl_env.error import CorruptDataError, DataNotFoundError


def test_inc_cifar100_fine_and_coarse(stream_kwargs):
    kw = stream_kwargs["IncCIFAR100-v0"]
    s = cl_env.make_stream("IncCIFAR100-v0", **kw)
    assert s.n_tasks == 20 and s.setting == "task" and s.image_shape == (3, 32, 32)
    assert s.task_classes(3) == (15, 16, 17, 18, 19)
    assert set(s.tasks[3].train_y.tolist()) == {15, 16, 17, 18, 19}
    assert s.tasks[3].n_train == 50 and s.tasks[3].test_x.shape[0] == 10
    c = cl_env.make_stream("IncCIFAR100-v0", grouping="coarse", **kw)
    # the fixture's superclass of fine class f is f // 5: coarse grouping equals fine blocks here
    assert [c.task_classes(t) for t in range(20)] == [s.task_classes(t) for t in range(20)]
    with pytest.raises(ValueError, match="grouping"):
        cl_env.make_stream("IncCIFAR100-v0", grouping="medium", **kw)


def test_inc_cifar100_with_a_chosen_number_of_tasks(stream_kwargs):
    kw = stream_kwargs["IncCIFAR100-v0"]
    ten = cl_env.make_stream("IncCIFAR100-v0", n_tasks=10, **kw)
    assert ten.n_tasks == 10 and ten.task_classes(3) == tuple(range(30, 40))
    assert set(ten.tasks[3].train_y.tolist()) == set(range(30, 40)) and ten.tasks[3].n_train == 100
    from cl_env.error import CLEnvError

    for bad in ({"n_tasks": 7}, {"n_tasks": 10, "grouping": "coarse"}):
        with pytest.raises(CLEnvError, match="divisor of 100"):
            cl_env.make_stream("IncCIFAR100-v0", **bad, **kw)


def test_split_cifar10_holds_out_5_percent(stream_kwargs):
    s = cl_env.make_stream("SplitCIFAR10-v0", **stream_kwargs["SplitCIFAR10-v0"])
    assert s.n_tasks == 5 and s.setting == "class"
    assert [t.n_train for t in s.tasks] == [38] * 5  # 19 of 20 per class
    assert s.metadata["validation_per_task"] == [2] * 5
    assert [t.test_x.shape[0] for t in s.tasks] == [8] * 5
    # the held-out 5 % is the stream's validation split: the last images of each class
    x, y = s.validation_set(0, as_uint8=True)
    assert len(y) == 2 and sorted(y.tolist()) == [0, 1]
    assert not set(s.tasks[0].val_index.tolist()) & set(s.tasks[0].train_index.tolist())


def test_cifar_md5_is_checked_by_default(image_root):
    with pytest.raises(CorruptDataError, match="MD5 .* expected c99cafc152244af753f735de768cd75f"):
        cl_env.make_stream("SplitCIFAR10-v0", root=str(image_root))


def test_cifar_corrupt_pickle(tmp_path):
    folder = fixtures.write_cifar(tmp_path)
    (folder / "test_batch").write_bytes(b"garbage")
    with pytest.raises(CorruptDataError, match="not a CIFAR pickle"):
        load_source("cifar10", env_id="X-v0", root=tmp_path, verify=False)


def test_omniglot_alphabets_are_tasks(stream_kwargs):
    s = cl_env.make_stream("IncOmniglot-v0", **stream_kwargs["IncOmniglot-v0"])
    assert s.n_tasks == 50 and s.n_classes == 100 and s.image_shape == (1, 28, 28)
    assert s.task_classes(0) == (0, 1) and s.task_classes(49) == (98, 99)
    assert all(t.n_train == 18 and t.test_x.shape[0] == 2 for t in s.tasks)
    x = s.tasks[0].train_x.float()
    assert x.mean() < 128, "inverted: strokes bright on a dark background, like MNIST"


def test_miniimagenet_folders_and_csv(stream_kwargs, tmp_path):
    s = cl_env.make_stream("SplitMiniImageNet-v0", **stream_kwargs["SplitMiniImageNet-v0"])
    assert s.n_tasks == 20 and s.image_shape == (3, 84, 84) and s.setting == "class"
    assert s.tasks[0].n_train == 40 and s.tasks[0].test_x.shape[0] == 10  # 8 + 2 of 10 per class
    fixtures.write_miniimagenet(tmp_path, n_classes=10, per_class=5, layout="csv")
    d = load_source("miniimagenet", env_id="X-v0", root=tmp_path)
    assert d.n_classes == 10 and d.train_x.shape == (50, 3, 84, 84)


def test_miniimagenet_has_no_download_and_says_where_to_put_it(tmp_path):
    with pytest.raises(DataNotFoundError, match="no download: put the 100 class folders"):
        cl_env.make_stream("SplitMiniImageNet-v0", root=str(tmp_path))


def test_svhn_to_mnist_shares_one_shape(stream_kwargs):
    s = cl_env.make_stream("SVHNToMNIST-v0", **stream_kwargs["SVHNToMNIST-v0"])
    assert s.n_tasks == 2 and s.image_shape == (1, 32, 32)
    assert s.tasks[0].name == "SVHN" and s.tasks[1].train_x.shape[1:] == (1, 32, 32)
    assert s.tasks[1].n_train == 4000  # the embedded MNIST, zero-padded to 32x32
    assert (s.tasks[1].train_x[:, :, :2] == 0).all()
    assert 0 in s.tasks[0].train_y.tolist(), "SVHN's label 10 is the digit 0"
    rgb = cl_env.make_stream("SVHNToMNIST-v0", channels=3, **stream_kwargs["SVHNToMNIST-v0"])
    assert rgb.image_shape == (3, 32, 32)


def test_svhn_luma_matches_pil():
    import numpy as np
    from PIL import Image

    from cl_env.streams.images import _to_shape

    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    ours = _to_shape(x, 1, 32)
    for i in range(2):
        pil = torch.from_numpy(np.array(Image.fromarray(x[i].permute(1, 2, 0).numpy()).convert("L")))
        assert (ours[i, 0].int() - pil.int()).abs().max() <= 1


def test_seq_fashion_and_permuted_gen(stream_kwargs):
    s = cl_env.make_stream("SeqFashionMNIST-v0", **stream_kwargs["SeqFashionMNIST-v0"])
    assert s.n_tasks == 10 and [s.task_classes(t) for t in range(3)] == [(0,), (1,), (2,)]
    assert sum(t.n_train for t in s.tasks) == 300
    p = cl_env.make_stream("PermutedMNISTGen-v0")
    assert p.n_tasks == 5 and p.tasks[0].name == "identity"
    assert all(t.n_train == 4000 for t in p.tasks)  # whole splits


@pytest.mark.parametrize(("env_id", "needle"), [
    ("IncCIFAR100-v0", "cifar-100-python"),
    ("SplitCIFAR10-v0", "cifar-10-batches-py"),
    ("SVHNToMNIST-v0", "train_32x32.mat"),
    ("IncOmniglot-v0", "images_background"),
])
def test_missing_files_name_env_path_and_fix(env_id, needle, tmp_path):
    with pytest.raises(DataNotFoundError) as exc:
        cl_env.make_stream(env_id, root=str(tmp_path))
    msg = str(exc.value)
    assert env_id in msg and needle in msg and "download=True" in msg


def test_long_term_phase_is_indices_into_one_copy(stream_kwargs):
    kw = stream_kwargs["IncCIFAR100LongTerm-v0"]
    s = cl_env.make_stream("IncCIFAR100LongTerm-v0", **kw)
    assert s.n_tasks == 21 and s.n_classes == 110
    phase = s.tasks[20]
    assert phase.n_train == 450 and phase.train_x.shape[0] == 200  # 2.25 passes over 200 images
    assert s.task_classes(20) == tuple(range(100, 110))
    idx = phase.train_index
    assert sorted(idx[:200].tolist()) == list(range(200)) and sorted(idx[200:400].tolist()) == list(range(200))
    px, _, _, _ = s.pools()
    assert px.shape[0] == 1000 + 200, "each pool once: CIFAR-100's and CIFAR-10's pixels"
    big = cl_env.make_stream("IncCIFAR100LongTerm-v0", **{**kw, "cifar10_examples": 1_000_000})
    assert big.tasks[20].n_train == 1_000_000 and big.tasks[20].train_x.shape[0] == 200


def test_env_prepares_chunks_and_still_emits_everything_once(stream_kwargs):
    import numpy as np

    s = cl_env.make_stream("IncCIFAR100LongTerm-v0", **stream_kwargs["IncCIFAR100LongTerm-v0"])
    small = cl_env.ContinualEnv(s, batch_size=10, chunk_bytes=10 * 3 * 32 * 32 * 4 * 7)  # 7 batches
    whole = cl_env.ContinualEnv(s, batch_size=10)
    assert small.chunk_batches == 7 and whole.chunk_batches >= whole.n_batches
    for env in (small, whole):
        env.reset(seed=1)
    a, b = small._obs(0), whole._obs(0)
    assert np.array_equal(a["x"], b["x"])
    done = False
    while not done:
        act = np.zeros(10, dtype=np.int64)
        oa, _, done, _, ia = small.step(act)
        ob, _, _, _, ib = whole.step(act)
        assert np.array_equal(oa["x"], ob["x"]) and np.array_equal(ia["y"], ib["y"])
    batches = list(s.train_batches(10, seed=1, chunk_bytes=10 * 3 * 32 * 32 * 4 * 3))
    assert len(batches) == whole.n_batches
