"""The papers' models: shapes, widths, parameter counts, and the registry's errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agents.models import MODELS, ResNet18, build_model, count_params, default_model
from cl_env.error import UnknownNameError


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_every_model_maps_images_to_logits(name, shape):
    model = build_model(name, shape, 10)
    out = model(torch.rand(4, *shape))
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_gem_sizes():
    assert count_params(build_model("mlp", (1, 28, 28), 10)) == 784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    assert count_params(build_model("mlp400", (1, 28, 28), 10)) == 784 * 400 + 400 + 400 * 400 + 400 + 4010
    reduced = ResNet18(3, 100, nf=20)
    assert reduced.linear.in_features == 160  # widths 20/40/80/160
    assert [m.conv1.out_channels for m in (reduced.layers[i][0] for i in range(4))] == [20, 40, 80, 160]
    assert ResNet18(3, 10, nf=64).linear.in_features == 512


def test_convnet_is_the_distillation_convnet():
    net = build_model("convnet", (3, 32, 32), 10)
    convs = [m for m in net.features if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in net.features if isinstance(m, torch.nn.GroupNorm)]
    assert len(convs) == 3 and all(c.out_channels == 128 and c.kernel_size == (3, 3) for c in convs)
    assert all(n.num_groups == n.num_channels == 128 for n in norms)  # instance norm
    assert net.classifier.in_features == 128 * 4 * 4


def test_defaults_and_errors():
    assert default_model((1, 28, 28)) == "mlp" and default_model((3, 32, 32)) == "reduced_resnet18"
    with pytest.raises(UnknownNameError, match="mlp400"):
        build_model("mlp40", (1, 28, 28), 10)


def test_weight_init_follows_each_papers_protocol():
    from agents.models import INITS, default_init

    # GEM's MLP: Xavier-uniform, zero biases (GEM's model/common.py)
    gem = build_model("mlp", (1, 28, 28), 10)
    first = gem.net[1]
    bound = math.sqrt(6.0 / (784 + 100))
    assert torch.equal(first.bias, torch.zeros(100)) and float(first.weight.detach().abs().max()) <= bound
    # ARM's MLP keeps PyTorch's default: uniform(+-1/sqrt(fan_in)) weights and biases
    arm = build_model("mlp400", (1, 28, 28), 10)
    assert float(arm.net[1].bias.detach().abs().max()) > 0 and float(arm.net[1].weight.detach().abs().max()) <= 1 / math.sqrt(784)
    assert default_init("mlp") == "xavier"
    assert {default_init(m) for m in ("mlp400", "reduced_resnet18", "resnet18", "convnet")} == {"torch"}
    # either init on any model, asked for by name
    xav = build_model("mlp400", (1, 28, 28), 10, init="xavier")
    assert torch.equal(xav.net[1].bias, torch.zeros(400))
    conv = build_model("convnet", (3, 32, 32), 10, init="xavier")
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in conv.modules() if isinstance(m, nn.Conv2d))
    assert set(INITS) == {"xavier", "torch"}
    with pytest.raises(UnknownNameError, match="xavier"):
        build_model("mlp", (1, 28, 28), 10, init="kaiming")


def test_agent_resolves_and_records_weight_init():
    from agents import StreamInfo, agent_class

    info = StreamInfo((1, 28, 28), 10, 2, "class", ((0, 1), (2, 3)), 20)
    online = agent_class("online")
    assert online(info).settings["weight_init"] == "xavier"  # GEM's MLP by default
    a = online(info, settings={"model": "mlp400"})
    assert a.settings["weight_init"] == "torch" and float(a.model.net[1].bias.detach().abs().max()) > 0
    b = online(info, settings={"model": "mlp400", "weight_init": "xavier"})
    assert torch.equal(b.model.net[1].bias, torch.zeros(400))
    with pytest.raises(ValueError, match="weight_init"):
        online(info, settings={"weight_init": "orthogonal"})
