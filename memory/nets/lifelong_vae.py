"""The VAE of Lifelong Generative Modeling (Ramapuram, Gregorova, Kalousis).

Latent ``z = [z_c, z_d]``: an isotropic Gaussian ``z_c`` (14 dimensions in the paper's table of
§7.4.1) and a Gumbel-softmax categorical ``z_d`` of ``J`` categories; a Bernoulli decoder (logits
out). Two bodies, as the appendix: ``dense`` (two layers of 512 with batch norm and ELU on each
side) and ``conv`` (eq. 15). The projections into and out of the latent (``to_latent``,
``from_latent``) are the only layers whose shapes depend on ``J``; :func:`grow` rebuilds a model
with a larger ``J`` and copies every other weight.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from memory.nets.discrete_vae import gumbel_softmax

ARCHS = ("dense", "conv")


def _dense_encoder(n_in: int, hidden: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, o in ((n_in, hidden), (hidden, hidden)):
        layers += [nn.Linear(i, o)] + ([nn.BatchNorm1d(o)] if bn else []) + [nn.ELU()]
    return nn.Sequential(nn.Flatten(), *layers)


def _dense_decoder(hidden: int, n_out: int, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(hidden, hidden)] + ([nn.BatchNorm1d(hidden)] if bn else [])
    return nn.Sequential(*layers, nn.ELU(), nn.Linear(hidden, n_out))


# eq. 15, [out channels, kernel, stride]; the third decoder kernel is 4 for 28x28 images and 6 for 32x32
def _conv_encoder(c: int, bn: bool) -> nn.Sequential:
    spec = [(32, 5, 1), (64, 4, 2), (128, 4, 1), (256, 4, 2), (512, 1, 1)]
    layers: list[nn.Module] = []
    for o, k, s in spec:
        layers += [nn.Conv2d(c, o, k, s)] + ([nn.BatchNorm2d(o)] if bn else []) + [nn.ELU()]
        c = o
    return nn.Sequential(*layers, nn.Conv2d(512, 512, 1), nn.ELU(), nn.Flatten())


def _conv_decoder(c_out: int, side: int, bn: bool) -> nn.Sequential:
    k3 = {28: 4, 32: 6}[side]
    spec = [(256, 4, 1), (128, 4, 2), (64, k3, 1), (32, 4, 2)]
    layers: list[nn.Module] = [nn.Unflatten(1, (512, 1, 1))]
    c = 512
    for o, k, s in spec:
        layers += [nn.ConvTranspose2d(c, o, k, s)] + ([nn.BatchNorm2d(o)] if bn else []) + [nn.ELU()]
        c = o
    layers += [nn.Conv2d(32, 32, 5, 1, padding=2)] + ([nn.BatchNorm2d(32)] if bn else []) + [nn.ELU()]
    return nn.Sequential(*layers, nn.Conv2d(32, c_out, 1))


class LifelongVAE(nn.Module):
    """Encoder -> ``(mu, logvar)`` of ``z_c`` and logits of ``z_d``; decoder ``[z_c, z_d]`` -> pixel logits.

    Args:
        image_shape: ``(C, H, W)``; ``conv`` needs ``H = W`` in (28, 32).
        z_c: Continuous latent size.
        z_d: Categories of the discrete latent.
        arch: ``"dense"`` or ``"conv"``.
        hidden: Width of the dense body (512).
        batch_norm: Batch norm in the bodies (the paper drops it for EWC).
    """

    def __init__(self, image_shape: tuple[int, int, int], z_c: int = 14, z_d: int = 1,
                 arch: str = "dense", hidden: int = 512, batch_norm: bool = True):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
        if z_d < 1 or z_c < 1:
            raise ValueError(f"z_c and z_d must be >= 1, got z_c={z_c}, z_d={z_d}")
        c, h, w = image_shape
        if arch == "conv" and not (h == w and h in (28, 32)):
            raise ValueError(f"the conv model (eq. 15) takes 28x28 or 32x32 images, got {h}x{w}; use arch='dense'")
        self.config = {"image_shape": tuple(image_shape), "z_c": z_c, "z_d": z_d, "arch": arch,
                       "hidden": hidden, "batch_norm": batch_norm}
        self.image_shape, self.z_c, self.z_d = tuple(image_shape), z_c, z_d
        if arch == "dense":
            self.encoder = _dense_encoder(c * h * w, hidden, batch_norm)
            self.decoder = _dense_decoder(hidden, c * h * w, batch_norm)
            features, width = hidden, hidden
        else:
            self.encoder = _conv_encoder(c, batch_norm)
            self.decoder = _conv_decoder(c, h, batch_norm)
            side = {28: 3, 32: 4}[h]  # the encoder's last map: 28->24->11->8->3, 32->28->13->10->4
            features, width = 512 * side * side, 512
        self.to_latent = nn.Linear(features, 2 * z_c + z_d)
        self.from_latent = nn.Linear(z_c + z_d, width)
        self.from_latent_act = nn.ELU()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mu, logvar, logits_d)`` of ``Q(z_c | x) Q(z_d | x)``."""
        out = self.to_latent(self.encoder(x))
        return out[:, : self.z_c], out[:, self.z_c: 2 * self.z_c], out[:, 2 * self.z_c:]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`encode` (so ``torch.func.functional_call`` can run the encoder with other weights)."""
        return self.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits of the Bernoulli decoder, shaped like the images."""
        return self.decoder(self.from_latent_act(self.from_latent(z))).view(-1, *self.image_shape)

    def sample_posterior(self, mu, logvar, logits_d, tau: float, generator: torch.Generator | None = None):
        """Reparameterised ``z_c = mu + sigma * eps`` and a hard straight-through Gumbel ``z_d`` (eq. 19)."""
        eps = torch.randn(mu.shape, generator=generator, device="cpu").to(mu.device)
        z_c = mu + (0.5 * logvar).exp() * eps
        return z_c, gumbel_softmax(logits_d, tau, generator=generator, hard=True)

    def sample_prior(self, n: int, generator: torch.Generator | None = None,
                     category: int | torch.Tensor | None = None) -> torch.Tensor:
        """``z ~ N(0, I) x Cat(1/J)``; ``category`` fixes ``z_d`` (one category for all, or one per row)."""
        z_c = torch.randn((n, self.z_c), generator=generator, device="cpu")
        if category is None:
            category = torch.randint(0, self.z_d, (n,), generator=generator, device="cpu")
        elif isinstance(category, int):
            if not 0 <= category < self.z_d:
                raise ValueError(f"category must be in [0, {self.z_d}), got {category}")
            category = torch.full((n,), category, dtype=torch.long)
        z_d = F.one_hot(category.cpu(), self.z_d).float()
        return torch.cat([z_c, z_d], 1).to(self.to_latent.weight.device)

    @torch.no_grad()
    def generate(self, n: int, generator: torch.Generator | None = None,
                 category: int | torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images ``sigmoid(decode(z))``, ``z`` from the prior (eval mode: batch-norm running stats)."""
        was = self.training
        self.eval()
        x = torch.sigmoid(self.decode(self.sample_prior(n, generator, category)))
        self.train(was)
        return x


def grow(model: LifelongVAE, extra: int = 1) -> LifelongVAE:
    """A new student: ``z_d`` grown by ``extra`` categories, every weight whose shape matches copied.

    The latent projections change shape and are freshly initialised (Glorot, §7.8.2); batch-norm
    statistics start afresh (the paper resets them and the optimiser at every hand-over).
    """
    cfg = dict(model.config, z_d=model.z_d + extra)
    student = LifelongVAE(**cfg).to(model.to_latent.weight.device)
    for layer in (student.to_latent, student.from_latent):
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    src = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in student.named_parameters():
            if name in src and src[name].shape == p.shape:
                p.copy_(src[name])
    return student


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

