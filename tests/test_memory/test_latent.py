"""Latent replay: bit accounting, quantisation, the frozen/slowed lower layers, bad input, er/derpp."""

from __future__ import annotations

import pytest
import torch

from agents import run
from agents.models import build_model, cut_points, split_model
from memory.base import MemorySpec
from memory.latent import LatentReplay, dequantise, latent_item_bits, quantise

SPEC = MemorySpec(image_shape=(1, 28, 28), n_classes=10, n_tasks=2)


@pytest.mark.parametrize("name", ["mlp", "mlp400", "reduced_resnet18", "convnet"])
def test_split_model_composes_to_the_model(name):
    shape = (1, 28, 28) if name.startswith("mlp") else (3, 32, 32)
    model = build_model(name, shape, 10).eval()
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(0))
    for cut in cut_points(model):
        lower, upper = split_model(model, cut)
        assert torch.equal(upper(lower(x)), model(x)), cut


def test_unknown_cut_point_lists_the_cut_points():
    with pytest.raises(ValueError, match="hidden1, hidden2"):
        split_model(build_model("mlp", (1, 28, 28), 10), "conv3")


@pytest.mark.parametrize("bits", [8, 4])
def test_quantise_round_trip_within_half_a_step(bits):
    z = torch.rand(5, 33, generator=torch.Generator().manual_seed(1)) * 3
    codes, ranges = quantise(z, bits)
    assert codes.dtype == torch.uint8 and codes.shape == (5, -(-33 * bits // 8))
    back = dequantise(codes, ranges, bits, 33)
    step = (ranges[:, 1].float() - ranges[:, 0].float()) / (2**bits - 1)
    # float16 rounding of the range adds at most its own relative error
    assert ((back - z).abs() <= step[:, None] / 2 + 3 * 2e-3).all()


def test_item_bits_are_exact():
    assert latent_item_bits(100, 16, SPEC) == 1600 + 4 + 1
    assert latent_item_bits(100, 8, SPEC) == 800 + 32 + 4 + 1
    assert latent_item_bits(100, 4, SPEC, logits=True) == 400 + 32 + 4 + 1 + 320
    with pytest.raises(ValueError, match="bits must be one of"):
        latent_item_bits(100, 3, SPEC)


@pytest.mark.parametrize("bits", [16, 8, 4])
def test_storage_counts_every_item_and_fits_the_budget(bits, tiny, tmp_path):
    r = run(agent="er", memory="latent", budget=5, out=tmp_path, settings={"memory.bits": bits}, **tiny)
    per_item = latent_item_bits(100, bits, SPEC)
    assert r.storage_bits == r.items * per_item
    assert r.items == min(400, 5 * 784 * 8 // per_item) and r.storage_bits <= 5 * 784 * 8
    assert r.items >= 4 * (5 * 784 * 8 // (784 * 8 + 5))  # >= 4x the images a reservoir holds


def drive(agent_name: str, memory: str, budget: float, tiny: dict, options: dict | None = None,
          settings: dict | None = None):
    """Build ``agent_name`` on the tiny stream and train it task by task; yields ``(agent, t)``
    after each task end (the runner's own loop is tested elsewhere)."""
    from agents import StreamInfo, agent_class
    from agents.registry import build_memory
    from cl_env import make_stream

    stream = make_stream(tiny["env_id"], **tiny["stream_kwargs"])
    info = StreamInfo.from_stream(stream)
    mem = build_memory(agent_name, memory, budget, info.memory_spec("cpu"), options=options)
    agent = agent_class(agent_name)(info, mem, settings)
    for b in stream.train_batches(10, seed=0):
        obs = {"x": b.x, "t": b.t}
        agent.act(obs)
        agent.observe(obs, b.y)
        if b.task_end:
            agent.end_task(b.t)
            yield agent, b.t


def snapshot(model_part) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model_part.parameters()] + [b.clone() for b in model_part.buffers()]


def test_frozen_lower_layers_stay_bit_equal(tiny):
    seen = {t: (snapshot(a.split("hidden1")[0]), snapshot(a.split("hidden1")[1])) for a, t in
            drive("er", "latent", 5, tiny)}
    (lo0, up0), (lo1, up1) = seen[0], seen[1]
    assert all(torch.equal(a, b) for a, b in zip(lo0, lo1, strict=True))  # frozen after task 0
    assert any(not torch.equal(a, b) for a, b in zip(up0, up1, strict=True))  # the upper part learnt


def test_slowed_lower_layers_learn_at_the_factor(tiny):
    from agents import StreamInfo, agent_class
    from agents.registry import build_memory
    from cl_env import make_stream

    stream = make_stream(tiny["env_id"], **tiny["stream_kwargs"])
    info = StreamInfo.from_stream(stream)
    mem = build_memory("er", "latent", 5, info.memory_spec("cpu"), options={"lower_lr": 0.1})
    agent = agent_class("er")(info, mem, {"lr": 0.05})
    mem.end_task(0, agent)
    lrs = sorted(g["lr"] for g in agent.optimizer.param_groups)
    assert lrs == pytest.approx([0.005, 0.05]) and agent.lower == ("hidden1", 0.1)
    assert all(p.requires_grad for p in agent.model.parameters())


def test_bad_options_are_one_clear_line():
    with pytest.raises(ValueError, match="lower_lr"):
        LatentReplay(SPEC, 1000, lower_lr=-1)
    with pytest.raises(ValueError, match="bits"):
        LatentReplay(SPEC, 1000, bits=2)


@pytest.mark.parametrize("args", [["--set", "memory.layer=conv9"], ["--set", "memory.bits=3"]])
def test_cli_refuses_bad_input_with_exit_2(args, mnist_root, tmp_path, capsys):
    from agents.harness.cli import main

    rc = main(["run", "MNISTRotations-v0", "--agent", "er", "--memory", "latent", "--budget", "5",
               "--stream", "source=mnist", "--stream", f"root={mnist_root}", "--stream", "verify=False",
               "--stream", "n_tasks=2", "--stream", "train_per_task=200", "--out", str(tmp_path / "r"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert ("hidden1, hidden2" in err[0]) if "layer" in args[1] else ("(16, 8, 4)" in err[0])


@pytest.mark.parametrize("agent", ["er", "derpp"])
def test_er_and_derpp_learn_with_latent_replay(agent, tiny, tmp_path):
    r = run(agent=agent, memory="latent", budget=5, out=tmp_path, **tiny)
    assert r.retained_accuracy > 0.3 and r.items > 0
    assert r.storage_bits <= 5 * 784 * 8


@pytest.mark.parametrize("lower_lr", [0.0, 0.1])
def test_checkpoint_round_trip_keeps_the_lower_part_and_the_store(lower_lr, tiny):
    from agents import agent_class
    from agents.registry import build_memory

    agent = next(a for a, _ in drive("er", "latent", 5, tiny, options={"lower_lr": lower_lr}))
    fresh = agent_class("er")(agent.info, build_memory("er", "latent", 5, agent.info.memory_spec("cpu"),
                                                         options={"lower_lr": lower_lr}))
    fresh.load_state_dict(agent.state_dict())
    assert fresh.lower == agent.lower == ("hidden1", lower_lr)
    assert [g["lr"] for g in fresh.optimizer.param_groups] == [g["lr"] for g in agent.optimizer.param_groups]
    assert fresh.memory.items == agent.memory.items > 0
    gen = torch.Generator().manual_seed(0)
    a, b = agent.memory.sample(8, generator=gen), fresh.memory.sample(8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.x, b.x) and a.layer == b.layer == "hidden1"
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(agent.predict(x), fresh.predict(x))
