"""Models used by the papers: GEM's MLP and reduced ResNet-18, the dataset-distillation ConvNet,
ResNet-18. Built by name through :data:`MODELS`."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cl_env.error import UnknownNameError

INITS = {
    "xavier": "Xavier-uniform weights, zero biases on every linear and conv layer (GEM's model/common.py)",
    "torch": "PyTorch's default initialisation (ARM's, Remember the Past's and GEM's ResNet reference code)",
}


def default_init(model: str) -> str:
    """The initialisation each paper's protocol uses for its model: GEM's MLP (``mlp``) is
    Xavier-initialised by GEM's code; ARM's MLP (``mlp400``), the ResNets (GEM's ``ResNet18`` has
    no Xavier) and the dataset-distillation ConvNet keep PyTorch's defaults."""
    return "xavier" if model == "mlp" else "torch"


def initialise(model: nn.Module, init: str) -> nn.Module:
    """Apply ``init`` (a key of :data:`INITS`) to ``model`` in place; ``"torch"`` leaves it as built."""
    if init not in INITS:
        raise UnknownNameError("weight_init", init, INITS)
    if init == "xavier":
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    return model


class MLP(nn.Module):
    """Fully connected ReLU network on flattened images (GEM: 784-100-100-10, ARM: 784-400-400-10).

    Built with PyTorch's default initialisation; :func:`build_model` applies the protocol's
    (``weight_init``: Xavier for GEM's ``mlp``, PyTorch's default for ARM's ``mlp400``).
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


def build_model(name: str, image_shape: tuple[int, int, int], n_classes: int,
                init: str | None = None) -> nn.Module:
    """Build the model ``name`` for images of ``image_shape`` and ``n_classes`` outputs.

    Args:
        init: A key of :data:`INITS`; None takes the protocol's (:func:`default_init`).
    """
    c, h, w = image_shape
    if name == "mlp":
        model: nn.Module = MLP(c * h * w, n_classes, (100, 100))
    elif name == "mlp400":
        model = MLP(c * h * w, n_classes, (400, 400))
    elif name == "reduced_resnet18":
        model = ResNet18(c, n_classes, nf=20)
    elif name == "resnet18":
        model = ResNet18(c, n_classes, nf=64)
    elif name == "convnet":
        model = ConvNet(c, n_classes, h)
    else:
        raise UnknownNameError("model", name, MODELS)
    return initialise(model, init or default_init(name))


def default_model(image_shape: tuple[int, int, int]) -> str:
    """GEM's choice: the MLP for single-channel images, the reduced ResNet-18 for colour."""
    return "mlp" if image_shape[0] == 1 else "reduced_resnet18"


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def param_bits(model: nn.Module) -> int:
    """Model memory at 32 bits per parameter (ARM's "+Model mem." accounting)."""
    return 32 * count_params(model)




def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the model's last linear layer (its feature vector ``phi(x)``, as iCaRL's
    nearest-mean classifier and herding read it), from one forward pass."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    captured: dict[str, torch.Tensor] = {}
    handle = last.register_forward_pre_hook(lambda _m, inp: captured.setdefault("z", inp[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return captured["z"]


# ----------------------------------------------------------------- cut points (latent replay, REMIND)
def model_stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model as named consecutive stages whose composition is its forward pass.

    The stages share the model's modules (no copy). A cut point is the output of every stage but
    the last: for :class:`MLP` after each hidden layer's ReLU (``hidden1``, ``hidden2``, …); for
    :class:`ResNet18` after the stem (``stem``) and after each residual stage (``stage1`` …
    ``stage4``); for :class:`ConvNet` after each conv block (``block1`` …). A user's model exposes
    its own by defining ``stages() -> list[(name, module)]`` with the same meaning.

    Raises:
        TypeError: The model declares no stages.
    """
    if isinstance(model, MLP):
        mods, stages, current, k = list(model.net), [], [], 0
        for m in mods:
            current.append(m)
            if isinstance(m, nn.ReLU):
                k += 1
                stages.append((f"hidden{k}", nn.Sequential(*current)))
                current = []
        return [*stages, ("logits", nn.Sequential(*current))]
    if isinstance(model, ResNet18):
        stem = nn.Sequential(model.conv1, model.bn1, nn.ReLU())
        stages = [(f"stage{i + 1}", layer) for i, layer in enumerate(model.layers)]
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), model.linear)
        return [("stem", stem), *stages, ("head", head)]
    if isinstance(model, ConvNet):
        feats = list(model.features)
        blocks = [(f"block{i // 4 + 1}", nn.Sequential(*feats[i:i + 4])) for i in range(0, len(feats), 4)]
        return [*blocks, ("head", nn.Sequential(nn.Flatten(), model.classifier))]
    stages_fn = getattr(model, "stages", None)
    if callable(stages_fn):
        return list(stages_fn())
    raise TypeError(f"model {type(model).__name__} exposes no cut points: use mlp, mlp400, reduced_resnet18, "
                    "resnet18 or convnet, or define stages() -> [(name, module), ...] on it")


def cut_points(model: nn.Module) -> list[str]:
    """Names of the places ``model`` can be split (every stage's output but the last's)."""
    return [name for name, _ in model_stages(model)[:-1]]


def split_model(model: nn.Module, layer: str) -> tuple[nn.Module, nn.Module]:
    """``(lower, upper)`` with ``upper(lower(x)) == model(x)``, cut after stage ``layer``.

    Both share the model's parameters (training either trains the model).

    Raises:
        ValueError: ``layer`` is not one of :func:`cut_points` (they are listed).
    """
    stages = model_stages(model)
    names = [name for name, _ in stages[:-1]]
    if layer not in names:
        raise ValueError(f"layer {layer!r} is not a cut point of {type(model).__name__}; its cut points: "
                         f"{', '.join(names)} (--set memory.layer=NAME)")
    i = names.index(layer) + 1
    return nn.Sequential(*[m for _, m in stages[:i]]), nn.Sequential(*[m for _, m in stages[i:]])
