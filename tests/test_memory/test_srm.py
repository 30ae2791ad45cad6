"""The Scalable Recollection Module: budget arithmetic (eq. 4-5), packed storage, policies,
Gumbel-softmax, round trips, and its use by ER (Algorithm 1) and GEM (Algorithm 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import run
from memory import MemorySpec
from memory.nets import DiscreteVAE, gumbel_softmax
from memory.srm import SRM, code_bits, latent_for_budget

MNIST = MemorySpec((1, 28, 28), 10, 20)
CIFAR = MemorySpec((3, 32, 32), 100, 20)


def test_eq4_budgets_match_the_papers_latents_up_to_the_label_bits():
    # budget 100, 3,000 items: 627,200 / 3,000 = 209 bits; minus a 4-bit label and a 5-bit task id
    # = 200 bits = 100 variables of 4 categories (the paper, which does not count labels: 104)
    assert latent_for_budget(100, MNIST, 3000, 4) == 100
    m = SRM.for_budget(100, MNIST)
    assert m.item_bits == 209 and 3000 * m.item_bits <= 100 * 6272
    # budget 200 with 8 categories: 418 - 9 = 409 bits -> 136 variables of 3 bits (paper 139)
    assert latent_for_budget(200, MNIST, 3000, 8) == 136
    # CIFAR-100, budget 10 over 5,000 items, 2 categories: 49 - 7 - 5 = 37 (paper 48, no labels)
    assert latent_for_budget(10, CIFAR, 5000, 2) == 37
    # GEM's per-task policy stores no task id: 4 more variables
    assert latent_for_budget(100, MNIST, 3000, 4, policy="task_ring") == 102
    assert code_bits(104, 4) == 208 and code_bits(139, 8) == 417


def test_eq5_counts_the_autoencoder():
    c = latent_for_budget(100, MNIST, 3000, 4, total=True)
    vae_bits = 32 * sum(p.numel() for p in DiscreteVAE((1, 28, 28), c, 4).parameters())
    assert 3000 * (2 * c + 9) + vae_bits <= 100 * 6272 and c < 100
    with pytest.raises(ValueError, match="cannot hold"):
        latent_for_budget(0.5, MNIST, 3000, 4)


def test_gumbel_softmax_is_hard_forward_soft_backward():
    logits = torch.randn(6, 5, 4, requires_grad=True)
    y = gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(y.detach().sum(-1), torch.ones(6, 5)) and set(y.detach().unique().tolist()) <= {0.0, 1.0}
    (y * torch.randn(6, 5, 4)).sum().backward()
    assert logits.grad.abs().sum() > 0
    # the Gumbel-max sample follows the softmax probabilities
    p = torch.tensor([[0.7, 0.2, 0.1]])
    draws = torch.stack([gumbel_softmax(p.log(), 1.0, torch.Generator().manual_seed(i)).argmax(-1) for i in range(2000)])
    freq = torch.bincount(draws.flatten(), minlength=3).float() / 2000
    assert torch.allclose(freq, p[0], atol=0.04)


def test_storage_is_the_packed_rows_and_codes_round_trip():
    m = SRM(MNIST, c=20, l=4, capacity=30, seed=0)
    x, y = torch.rand(25, 1, 28, 28), torch.randint(0, 10, (25,))
    m.observe(x, 3, y)
    assert m.items == 25 and m.storage_bits == 25 * (40 + 4 + 5) and m.store.nbytes == -(-30 * 49 // 8)
    fields = m.store.read(np.arange(25))
    assert np.array_equal(fields[:, 20], y.numpy()) and (fields[:, 21] == 3).all()
    rec = m._decode_rows(np.arange(25))
    codes = torch.from_numpy(fields[:, :20])
    assert torch.allclose(rec.x, m.vae.decode(codes)) and torch.equal(rec.y, y)
    assert m.tasks() == [3] and m.overhead_bits == 32 * sum(p.numel() for p in m.vae.parameters())


def test_task_ring_policy_keeps_the_most_recent_per_task():
    m = SRM(MemorySpec((1, 28, 28), 10, 2), c=8, l=4, capacity=10, policy="task_ring")
    for i in range(3):
        m.observe(torch.rand(4, 1, 28, 28), 0, torch.full((4,), i))
    assert m.task_items(0) == 5 and m.items == 5 and m.tasks() == [0]
    assert sorted(m.sample_task(0).y.tolist()) == [1, 2, 2, 2, 2]
    x, y, w = m.padded([0])
    assert x.shape == (1, 5, 1, 28, 28) and w.sum() == 5


def test_observe_trains_the_autoencoder_on_recollections_and_the_batch():
    m = SRM(MNIST, c=20, l=4, capacity=50, n_sets=3, set_size=5)
    x = torch.rand(10, 1, 28, 28)
    before = [p.detach().clone() for p in m.vae.parameters()]
    m.observe(x, 0, torch.zeros(10, dtype=torch.long))
    assert any(not torch.equal(a, b) for a, b in zip(before, m.vae.parameters(), strict=True))
    rec = m.sample(5)
    assert rec.x.shape == (5, 1, 28, 28) and m._set1 is rec  # reused as Algorithm 1's first set
    m.observe(x, 0, torch.zeros(10, dtype=torch.long))
    assert m._set1 is None and m.items == 20
    assert m.sample_codes(4).shape == (4, 1, 28, 28)


def test_state_dict_round_trip():
    a = SRM(MNIST, c=10, l=4, capacity=40, seed=1)
    for _ in range(3):
        a.observe(torch.rand(10, 1, 28, 28), 1, torch.randint(0, 10, (10,)))
    b = SRM(MNIST, c=10, l=4, capacity=40, seed=9)
    b.load_state_dict(a.state_dict())
    rows = np.arange(a.items)
    assert torch.allclose(a._decode_rows(rows).x, b._decode_rows(rows).x) and b.items == 30


@pytest.mark.parametrize("agent", ["er", "gem"])
def test_er_and_gem_run_with_recollections(agent, tiny, tmp_path):
    r = run(agent=agent, memory="srm", budget=20, out=tmp_path,
            settings={"memory.items": 1000, "memory.n_sets": 1}, **tiny)
    assert r.memory == "srm" and r.items > 0
    assert 0 < r.storage_bits <= 20 * 6272 and r.overhead_bits > 0
    assert r.retained_accuracy > 0.2


def test_memory_options_are_checked(tiny):
    from cl_env.error import UnknownNameError

    with pytest.raises(UnknownNameError, match="n_sets"):
        run(agent="er", memory="srm", budget=20, settings={"memory.n_set": 2}, **tiny)


def test_pretrain_then_transfer(mnist_root, tmp_path, tiny, capsys):
    from agents.harness.cli import main

    out = tmp_path / "vae.pt"
    c = latent_for_budget(20, MemorySpec((1, 28, 28), 10, 2), 1000, 4)  # the 2-task target stream
    code = main(["pretrain-srm", "SeqFashionMNIST-v0", "--stream", f"root={str(mnist_root)!r}", "verify=False",
                 "--c", str(c), "--out", str(out)])
    assert code == 0 and out.exists()
    assert "memory.vae_path" in capsys.readouterr().out
    from memory.srm import load_vae

    vae = load_vae(str(out))
    r = run(agent="er", memory="srm", budget=20, settings={"memory.items": 1000, "memory.vae_path": str(out)},
            **tiny)
    assert r.memory == "srm" and r.config["memory_options"]["vae_path"] == str(out)
    assert vae.c == c
    with pytest.raises(ValueError, match="the given VAE has"):
        run(agent="er", memory="srm", budget=40, settings={"memory.items": 1000, "memory.vae_path": str(out)},
            **tiny)


def test_srm_logs_recollections_and_distortion(tiny, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(agent="er", memory="srm", budget=20, out=tmp_path, settings={"memory.items": 1000}, **tiny)
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert "srm/originals_vs_recollections" in acc.Tags()["images"]
    assert "srm/test_distortion_l1" in acc.Tags()["scalars"]
    assert "eval/accuracy_matrix" in acc.Tags()["images"]


def test_msss_picks_one_point_per_cluster():
    from memory.srm import msss_select

    rng = np.random.default_rng(0)
    centres = torch.eye(4) * 10  # 4 orthogonal clusters, 25 points each
    x = torch.cat([c + 0.1 * torch.randn(25, 4, generator=torch.Generator().manual_seed(i))
                   for i, c in enumerate(centres)])
    for seed in range(20):
        # two random starts (maybe one cluster), then each pick is orthogonal to all picked so far:
        # a new cluster while one is left, so 5 picks always cover the 4 clusters
        picked = msss_select(x, 5, 1.0, np.random.default_rng(seed))
        assert len(set((picked // 25).tolist())) == 4
    assert len(set(msss_select(x, 10, 0.5, rng).tolist())) == 10


def test_active_sampling_keeps_the_hardest_candidate():
    m = SRM(MNIST, c=10, l=4, capacity=50)
    m.observe(torch.rand(40, 1, 28, 28), 0, torch.randint(0, 10, (40,)))
    brightness = lambda x: x.flatten(1).mean(1)  # noqa: E731 - "difficulty" = mean pixel
    act = m.sample_active(8, brightness, k=10)
    rnd = m.sample(200)
    assert act.x.shape == (8, 1, 28, 28)
    assert brightness(act.x).mean() > brightness(rnd.x).mean()
    div = m.sample_active(4, brightness, k=5, diverse=True, pool=4)
    assert div.x.shape == (4, 1, 28, 28)


def _label_codes(m):
    """Make the encoder deterministic and label-tagged: every code field holds the image's label
    (the first pixel's value), so a code and its label can be checked against each other."""
    def encode(x, generator=None):
        lab = (x.reshape(len(x), -1)[:, 0] * 255).round().long() % m.l
        return lab[:, None].expand(len(x), m.c).clone()
    m.vae.encode = encode


def _batch(labels, t):
    y = torch.tensor(labels)
    x = torch.zeros(len(y), 1, 28, 28)
    x.reshape(len(y), -1)[:, 0] = y.float() / 255
    return x, y


def test_srm_past_capacity_keeps_each_label_with_its_code_and_task():
    m = SRM(MNIST, c=6, l=4, capacity=12, seed=0)
    _label_codes(m)
    rng = np.random.default_rng(0)
    for step in range(30):  # 300 examples into 12 slots: many overwrites
        t = step // 10
        x, y = _batch(rng.integers(0, 4, 10).tolist(), t)
        m._write(x, t, y)
    fields = m.store.read(np.arange(12))
    codes, labels, tasks = fields[:, :6], fields[:, 6], fields[:, 7]
    assert (codes == labels[:, None]).all(), "a label drifted from its code"
    assert set(tasks.tolist()) <= {0, 1, 2} and 2 in tasks
    assert m.items == 12 and m.n_seen == 300


def test_srm_task_ring_reads_each_task_with_its_own_id_across_task_starts():
    m = SRM(MemorySpec((1, 28, 28), 10, 3), c=6, l=4, capacity=12, policy="task_ring", seed=0)
    _label_codes(m)
    for t in range(3):
        for _ in range(3):  # 30 examples per task into 4 slots: the ring wraps
            x, y = _batch([(t + k) % 4 for k in range(10)], t)
            m._write(x, t, y)
    assert m.tasks() == [0, 1, 2]
    for t in range(3):
        batch = m.sample_task(t)
        assert len(batch.y) == 4 and (batch.t == t).all(), (t, batch.t)  # row offsets[t] included
        rows = m.offsets[t] + np.arange(4)
        fields = m.store.read(rows)
        assert (fields[:, :6] == fields[:, 6:7]).all()
        # the last 4 written of task t's last batch: labels (t + 6..9) % 4
        assert sorted(fields[:, 6].tolist()) == sorted([(t + k) % 4 for k in range(6, 10)])


def test_vae_parameters_is_the_built_networks_count():
    from memory.nets.discrete_vae import vae_parameters

    for shape in ((1, 28, 28), (3, 32, 32)):
        for c, l in ((1, 2), (3, 2), (4, 2), (5, 4), (10, 3), (37, 2), (50, 8), (67, 2), (74, 2)):  # noqa: E741
            built = sum(p.numel() for p in DiscreteVAE(shape, c, l).parameters())
            assert vae_parameters(shape, c, l) == built, (shape, c, l)


@pytest.mark.parametrize("spec,budget,items,l", [(CIFAR, 200, 3000, 2), (MNIST, 100, 3000, 4), (MNIST, 200, 3000, 8),
                                                 (CIFAR, 50, 5000, 3)])
def test_eq5_is_solved_exactly_the_largest_c_that_fits(spec, budget, items, l):  # noqa: E741
    """Eq. 5: no larger c up to eq. 4's bound fits with its autoencoder, and c itself does
    (CIFAR-100, budget 200, l = 2: 74; the old 10 % steps stopped at 67)."""
    from memory.base import budget_bits

    bits, extra = budget_bits(budget, spec), spec.label_bits + spec.task_bits
    per_var = code_bits(1, l)

    from memory.nets.discrete_vae import vae_parameters

    def fits(c, built=False):
        vae = (sum(p.numel() for p in DiscreteVAE(spec.image_shape, c, l).parameters()) if built
               else vae_parameters(spec.image_shape, c, l))
        return items * (c * per_var + extra) + 32 * vae <= bits

    c = latent_for_budget(budget, spec, items, l, total=True)
    bound = latent_for_budget(budget, spec, items, l)
    assert fits(c, built=True) and c <= bound
    assert not any(fits(k, built=True) for k in range(c + 1, min(bound, c + 3) + 1))  # built networks
    assert not any(fits(k) for k in range(c + 1, bound + 1))  # every larger c, by the exact count
    if spec is CIFAR and budget == 200 and l == 2:
        assert c == 74


def _msss_reference(x, m, gamma, rng):
    """Algorithm 3 written plainly: every candidate's sum of squared similarities recomputed
    from scratch (the module keeps a running sum), drawing from ``rng`` in the same order."""
    n = len(x)
    flat = x.reshape(n, -1).double()
    picked = [int(i) for i in rng.choice(n, size=min(2, m), replace=False)]
    while len(picked) < m:
        rest = np.setdiff1d(np.arange(n), picked)
        cand = rng.choice(rest, size=max(1, int(np.ceil(gamma * len(rest)))), replace=False)
        scores = [sum(float(flat[i] @ flat[j]) ** 2 for j in picked) for i in cand]
        picked.append(int(cand[int(np.argmin(scores))]))
    return picked


@pytest.mark.parametrize("gamma", [0.1, 0.5, 1.0])
def test_msss_matches_algorithm_3_written_plainly(gamma):
    from memory.srm import msss_select

    g = torch.Generator().manual_seed(0)
    for seed in range(8):
        x = torch.randn(12, 1, 2, 3, generator=g)  # signed entries: squared and cubed sims differ
        got = msss_select(x, 6, gamma, np.random.default_rng(seed)).tolist()
        assert got == _msss_reference(x, 6, gamma, np.random.default_rng(seed)), (gamma, seed)
        assert len(set(got)) == 6
    for seed in range(40):  # the two random starting rows are distinct
        two = msss_select(torch.randn(3, 2, generator=g), 2, 1.0, np.random.default_rng(seed))
        assert len(set(two.tolist())) == 2


def test_one_item_is_a_valid_memory_size():
    from memory.base import budget_bits

    # one item may take the whole budget: (bits - label and task bits) / 2 bits per 4-category variable
    assert latent_for_budget(1, MNIST, 1, 4) == (budget_bits(1, MNIST) - MNIST.label_bits - MNIST.task_bits) // 2
    with pytest.raises(ValueError, match="items must be >= 1"):
        latent_for_budget(1, MNIST, 0, 4)


def test_two_category_codes_take_one_bit_per_variable():
    m = SRM(MNIST, c=20, l=2, capacity=30, seed=0)
    m.observe(torch.rand(7, 1, 28, 28), 0, torch.randint(0, 10, (7,)))
    assert m.storage_bits == 7 * (20 * 1 + 4 + 5)


def test_eq4_and_eq5_edges():
    from memory.base import budget_bits

    # the per-task policy stores no task id: exactly (bits // items - label bits) // bits per variable
    for budget, items in ((100, 3000), (57, 1000), (200, 2999)):
        bits = budget_bits(budget, MNIST)
        assert latent_for_budget(budget, MNIST, items, 4, policy="task_ring") == (bits // items - 4) // 2
        assert latent_for_budget(budget, MNIST, items, 4) == (bits // items - 9) // 2
    assert latent_for_budget(2, MNIST, 1000, 4) == 1  # 12 bits per item: one 2-bit variable fits
    # eq. 5 when even one variable with its autoencoder does not fit: an error, not c = 1
    with pytest.raises(ValueError, match="cannot hold"):
        latent_for_budget(0.75, MNIST, 1, 4, total=True)  # 4,704 bits; c = 1 with its autoencoder needs 5,003
    # an odd number of bits left for codes (c not a whole number before flooring) still gives the
    # largest whole c that fits with its autoencoder
    from memory.nets.discrete_vae import vae_parameters

    for budget in (3, 5, 7):
        bits = budget_bits(budget, MNIST)
        c = latent_for_budget(budget, MNIST, 10, 4, total=True)
        assert isinstance(c, int)
        fits = [k for k in range(1, (bits // 10 - 9) // 2 + 1)
                if 10 * (2 * k + 9) + 32 * vae_parameters(MNIST.image_shape, k, 4) <= bits]
        assert c == max(fits)


def test_gem_rereads_recollections_after_the_decoder_changes():
    """GEM caches padded past memories only for memories whose items never change: SRM's
    recollections change with the decoder, so GEM decodes them again."""
    from agents import StreamInfo, agent_class

    info = StreamInfo((1, 28, 28), 10, 2, "domain", (tuple(range(10)),) * 2, 40)
    mem = SRM(info.memory_spec("cpu"), c=8, l=4, capacity=20, policy="task_ring", seed=0)
    agent = agent_class("gem")(info, memory=mem, seed=0)
    x, y = torch.rand(10, 1, 28, 28), torch.randint(0, 10, (10,))
    mem.observe(x, 0, y, ctx=agent)
    first = agent._past_memories([0])[0].clone()
    with torch.no_grad():
        for p in mem.vae.decoder.parameters():
            p.add_(0.5)
    assert not torch.allclose(agent._past_memories([0])[0], first)


def test_per_task_rings_hold_each_tasks_own_rows():
    spec = MemorySpec((1, 28, 28), 10, 3)
    m = SRM(spec, c=6, l=4, capacity=10, policy="task_ring", seed=0)
    assert m.caps.tolist() == [4, 3, 3] and m.offsets.tolist() == [0, 4, 7]  # the first takes the remainder
    for t in range(3):
        for k in range(2):  # 2 x 3 examples per task: rings of 3 wrap, the ring of 4 wraps too
            m.observe(torch.rand(3, 1, 28, 28), t, torch.full((3,), 3 * t + k))
    fields = m.store.read(np.arange(10))
    labels = fields[:, 6].tolist()
    assert sorted(labels[0:4]) == [0, 1, 1, 1]  # task 0's ring: 6 written into 4 slots
    assert sorted(labels[4:7]) == [4, 4, 4] and sorted(labels[7:10]) == [7, 7, 7]
    rec = m._decode_rows(np.arange(10))
    assert rec.t.tolist() == [0] * 4 + [1] * 3 + [2] * 3


def test_a_task_free_stream_is_written_as_task_0():
    m = SRM(MNIST, c=6, l=4, capacity=10, seed=0)
    m.observe(torch.rand(4, 1, 28, 28), None, torch.arange(4))
    assert (m.store.read(np.arange(4))[:, 7] == 0).all() and m.tasks() == [0]


def test_active_sampling_defaults_are_the_papers_10_candidates_and_10x_pool():
    m = SRM(MNIST, c=6, l=4, capacity=200, seed=0)
    m.observe(torch.rand(150, 1, 28, 28), 0, torch.randint(0, 10, (150,)))
    sizes = []

    def hardness(x):
        sizes.append(len(x))
        return x.flatten(1).mean(1)

    import memory.srm.recollection as srm  # the module whose SRM looks msss_select up

    pools = []
    real = srm.msss_select

    def spy(x, k, gamma, rng):
        pools.append((len(x), k, gamma))
        return real(x, k, gamma, rng)

    srm.msss_select = spy
    try:
        out = m.sample_active(3, hardness)
        assert sizes == [10, 10, 10] and len(out.y) == 3 and pools == []  # not diverse by default
        sizes.clear()
        m.sample_active(2, hardness, diverse=True)
    finally:
        srm.msss_select = real
    assert pools == [(100, 10, 0.5)] * 2 and sizes == [10, 10]
    # every stored row can be drawn, the first included; one stored row is enough
    two = SRM(MNIST, c=6, l=4, capacity=5, seed=0)
    two.observe(torch.rand(1, 1, 28, 28), 0, torch.tensor([3]))
    assert two.sample_active(1, hardness).y.tolist() == [3]
    two.observe(torch.rand(1, 1, 28, 28), 0, torch.tensor([8]))
    drawn = {int(v) for _ in range(10) for v in two.sample_active(4, hardness, k=1).y}
    assert drawn == {3, 8}
    # code sampling draws every category, 0 included
    codes = []
    real_decode = m.vae.decode
    m.vae.decode = lambda z: codes.append(z) or real_decode(z)
    m.sample_codes(200, generator=torch.Generator().manual_seed(0))
    m.vae.decode = real_decode
    assert set(torch.cat(codes).flatten().tolist()) == {0, 1, 2, 3}


def test_a_single_stored_item_is_visible():
    m = SRM(MNIST, c=6, l=4, capacity=10, seed=0)
    assert m.tasks() == [] and m.sample(3) is None
    m.observe(torch.rand(1, 1, 28, 28), 4, torch.tensor([7]))
    assert m.tasks() == [4] and m.items == 1
    ring = SRM(MemorySpec((1, 28, 28), 10, 2), c=6, l=4, capacity=10, policy="task_ring", seed=0)
    assert ring.sample_task(1) is None
    ring.observe(torch.rand(1, 1, 28, 28), 1, torch.tensor([3]))
    one = ring.sample_task(1)
    assert one.y.tolist() == [3] and one.t.tolist() == [1] and ring.tasks() == [1]


def test_srm_padding_visuals_report_and_pretraining_helpers(tmp_path):
    import copy

    from memory.srm import load_vae, pretrain_vae

    spec = MemorySpec((1, 28, 28), 10, 3)
    ring = SRM(spec, c=6, l=4, capacity=10, policy="task_ring", seed=0)  # caps 4, 3, 3
    for t, n in ((0, 4), (1, 2)):
        ring.observe(torch.rand(n, 1, 28, 28), t, torch.full((n,), t))
    x, y, w = ring.padded([1, 0])
    assert x.shape == (2, 4, 1, 28, 28) and w.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    # visuals: at most 10 originals above their recollections
    m = SRM(MNIST, c=6, l=4, capacity=30, seed=0)
    m.observe(torch.rand(25, 1, 28, 28), 0, torch.randint(0, 10, (25,)))
    assert m.visuals()["srm/originals_vs_recollections"].shape[0] == 20
    m.observe(torch.rand(3, 1, 28, 28), 0, torch.randint(0, 10, (3,)))
    assert m.visuals()["srm/originals_vs_recollections"].shape[0] == 6
    # report: mean absolute error of one encode/decode, pixels in [0, 1]
    probe = torch.rand(5, 1, 28, 28)
    state = m.generator.get_state()
    expected = float((m.reconstruct(probe) - probe).abs().mean())
    m.generator.set_state(state)
    assert m.report(probe)["srm/test_distortion_l1"] == pytest.approx(expected, rel=1e-6)
    # a weights-only file that is a dict without the autoencoder's keys is refused by name
    torch.save({"c": 6, "l": 4}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="not a cl-env SRM autoencoder"):
        load_vae(str(tmp_path / "partial.pt"))
    # pretraining defaults: one epoch, batches of 64, Adam at 1e-3, seed 0
    vae = DiscreteVAE((1, 28, 28), 6, 4)
    a, b = copy.deepcopy(vae), copy.deepcopy(vae)
    imgs = torch.rand(130, 1, 28, 28)
    assert pretrain_vae(a, imgs) == pretrain_vae(b, imgs, epochs=1, batch_size=64, lr=1e-3, seed=0)
    assert len(pretrain_vae(copy.deepcopy(vae), imgs)) == 1
    assert pretrain_vae(copy.deepcopy(vae), imgs) != pretrain_vae(copy.deepcopy(vae), imgs, batch_size=65)
    assert pretrain_vae(copy.deepcopy(vae), imgs) != pretrain_vae(copy.deepcopy(vae), imgs, seed=1)


def test_pretraining_history_is_the_mean_loss_and_uint8_is_scaled():
    import copy

    from memory.srm import pretrain_vae

    vae = DiscreteVAE((1, 28, 28), 6, 4)
    imgs = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8)
    ref = copy.deepcopy(vae)
    g = torch.Generator().manual_seed(3)
    order = torch.randperm(40, generator=g)
    ref.train()
    expected = float(ref.loss(imgs.float().div(255.0)[order], g).detach())  # one batch: the loss before its step
    assert pretrain_vae(copy.deepcopy(vae), imgs, batch_size=40, seed=3) == pytest.approx([expected], rel=1e-6)
    assert pretrain_vae(copy.deepcopy(vae), imgs, batch_size=16, seed=3) == \
        pretrain_vae(copy.deepcopy(vae), imgs.float() / 255.0, batch_size=16, seed=3)


def test_eq5_admits_a_budget_met_exactly():
    from memory.base import budget_bits
    from memory.nets.discrete_vae import vae_parameters

    needed = 1 * (2 * 5 + 9) + 32 * vae_parameters(MNIST.image_shape, 5, 4)  # c = 5, one item
    budget = (needed + 0.5) / MNIST.example_bits
    assert budget_bits(budget, MNIST) == needed
    assert latent_for_budget(budget, MNIST, 1, 4, total=True) == 5  # fits with no bit to spare


def test_srm_rows_ids_and_draws_at_their_edges():
    # the reservoir row's task id field is read back as the task
    m = SRM(MNIST, c=6, l=4, capacity=10, seed=0)
    m.observe(torch.rand(3, 1, 28, 28), 3, torch.tensor([1, 2, 5]))
    assert m._decode_rows(np.arange(3)).t.tolist() == [3, 3, 3]
    # buffer sampling reaches every row, the first included
    drawn = {int(v) for _ in range(20) for v in m.sample(5).y}
    assert drawn == {1, 2, 5}
    # a ring of one slot keeps its task's latest item
    ring = SRM(MemorySpec((1, 28, 28), 10, 3), c=6, l=4, capacity=4, policy="task_ring", seed=0)
    assert ring.caps.tolist() == [2, 1, 1]
    ring.observe(torch.rand(2, 1, 28, 28), 2, torch.tensor([6, 7]))
    assert ring.task_items(2) == 1 and ring.sample_task(2).y.tolist() == [7]
    # within a ring, a batch that wraps overwrites the oldest slots first
    one = SRM(MemorySpec((1, 28, 28), 10, 1), c=6, l=4, capacity=3, policy="task_ring", seed=0)
    for labels in ([1], [2], [3, 4]):
        one.observe(torch.rand(len(labels), 1, 28, 28), 0, torch.tensor(labels))
    assert sorted(one.sample_task(0).y.tolist()) == [2, 3, 4]
    # the default memory is the paper's MNIST-Rotations one: budget 100 over 3,000 items
    assert SRM.default(MNIST).c == latent_for_budget(100, MNIST, 3000, 4) and SRM.default(MNIST).capacity == 3000


def test_padded_decodes_every_past_code_in_one_batch_and_decode_per_task_subsamples():
    spec = MemorySpec((1, 28, 28), 10, 3)
    ring = SRM(spec, c=6, l=4, capacity=30, policy="task_ring", seed=0)  # 10 per task
    for t in range(3):
        ring.add(torch.rand(10, 1, 28, 28), t, torch.randint(0, 10, (10,)))
    x, y, w = ring.padded([0, 2])
    for i, t in enumerate((0, 2)):  # the same images and labels as decoding each task on its own
        own = ring.sample_task(t)
        assert torch.equal(x[i], own.x) and torch.equal(y[i], own.y) and w[i].sum() == 10
    ring.decode_per_task = 4
    xs, ys, ws = ring.padded([0, 1, 2])
    assert xs.shape[:2] == (3, 4) and ws.sum() == 12
    own = ring.sample_task(1)
    for img in xs[1]:  # each subsampled image is one of task 1's recollections
        assert any(torch.equal(img, o) for o in own.x)
    with pytest.raises(ValueError, match="decode_per_task"):
        SRM(spec, c=6, l=4, capacity=30, policy="task_ring", decode_per_task=0)


def test_the_visual_recollection_is_decoded_lazily_with_the_noise_of_its_write():
    from memory.nets.discrete_vae import uniform_noise

    m = SRM(MNIST, c=6, l=4, capacity=30, seed=0)
    x = torch.rand(12, 1, 28, 28)
    m.observe(x, 0, torch.randint(0, 10, (12,)))
    state = m.generator.get_state()
    # the noise was drawn at write time: the generator already moved past it
    g = torch.Generator()
    g.set_state(state)
    after = torch.rand(3, generator=g)
    assert m._visual is None                                          # nothing decoded yet
    eager = m.vae.decode(m.vae.encode(x[:10], u=m._visual_noise))
    assert torch.equal(m.last_recollections, eager)
    assert torch.equal(torch.rand(3, generator=m.generator), after)   # reading it drew nothing
    assert m._visual_noise.shape == (10, 6, 4) and torch.equal(uniform_noise((2,), torch.Generator().manual_seed(1)),
                                                               torch.rand(2, generator=torch.Generator().manual_seed(1)))
