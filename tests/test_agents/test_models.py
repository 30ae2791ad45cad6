"""The papers' models: shapes, widths, parameter counts, and the registry's errors."""

from __future__ import annotations

import pytest
import torch

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
