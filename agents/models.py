"""Models used by the papers: GEM's MLP and reduced ResNet-18, the dataset-distillation ConvNet,
ResNet-18. Built by name through :data:`MODELS`."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
    """Fully connected ReLU network on flattened images (GEM: 784-100-100-10, ARM: 784-400-400-10).

    Xavier-uniform weights and zero biases, as GEM's ``model/common.py``.
    """

    def __init__(self, in_features: int, n_classes: int, hidden: tuple[int, ...] = (100, 100)):
        super().__init__()
        sizes = [in_features, *hidden, n_classes]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for small images (3x3 stem, stride 1), width ``nf``.

    ``nf=20`` is GEM's reduced ResNet-18 (widths 20/40/80/160); ``nf=64`` the full one.
    The final average pool covers whatever spatial size remains, so 28x28, 32x32 and 84x84 work.
    """

    def __init__(self, in_channels: int, n_classes: int, nf: int = 20):
        super().__init__()
        self.in_planes = nf
        self.conv1 = nn.Conv2d(in_channels, nf, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(nf)
        self.layers = nn.Sequential(*[self._layer(nf * 2**i, 2, 1 if i == 0 else 2) for i in range(4)])
        self.linear = nn.Linear(nf * 8, n_classes)

    def _layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        mods = []
        for s in [stride] + [1] * (blocks - 1):
            mods.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


class ConvNet(nn.Module):
    """The ConvNet of dataset distillation (Wang et al. 2018; Remember the Past §5).

    ``depth`` blocks of 3x3 conv (``width`` channels), instance norm (affine group norm with one
    group per channel), ReLU, 2x2 average pooling; then a linear classifier.
    """

    def __init__(self, in_channels: int, n_classes: int, image_size: int, width: int = 128, depth: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        c, s = in_channels, image_size
        for _ in range(depth):
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.GroupNorm(width, width, affine=True),
                       nn.ReLU(), nn.AvgPool2d(2)]
            c, s = width, s // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * s * s, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


MODELS = {
    "mlp": "MLP 784-100-100 (GEM)",
    "mlp400": "MLP 784-400-400 (ARM)",
    "reduced_resnet18": "ResNet-18 with nf=20 (GEM's CIFAR model)",
    "resnet18": "ResNet-18 with nf=64",
    "convnet": "ConvNet width 128, depth 3, instance norm, avg-pool (dataset distillation)",
}


def build_model(name: str, image_shape: tuple[int, int, int], n_classes: int) -> nn.Module:
    """Build the model ``name`` for images of ``image_shape`` and ``n_classes`` outputs."""
    from cl_env.error import UnknownNameError

    c, h, w = image_shape
    if name == "mlp":
        return MLP(c * h * w, n_classes, (100, 100))
    if name == "mlp400":
        return MLP(c * h * w, n_classes, (400, 400))
    if name == "reduced_resnet18":
        return ResNet18(c, n_classes, nf=20)
    if name == "resnet18":
        return ResNet18(c, n_classes, nf=64)
    if name == "convnet":
        return ConvNet(c, n_classes, h)
    raise UnknownNameError("model", name, MODELS)


def default_model(image_shape: tuple[int, int, int]) -> str:
    """GEM's choice: the MLP for single-channel images, the reduced ResNet-18 for colour."""
    return "mlp" if image_shape[0] == 1 else "reduced_resnet18"


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_bits(model: nn.Module) -> int:
    """Model memory at 32 bits per parameter (ARM's "+Model mem." accounting)."""
    return 32 * count_params(model)


