"""The discrete (categorical) autoencoder of Scalable Recollections.

Three 5x5 convolutions in the encoder and three 5x5 transposed convolutions in the decoder, each
with ``c * l / 4`` filters, so the last encoder map (``c * l / 4`` channels on 2x2) holds exactly
the ``c * l`` logits of ``c`` categorical variables of ``l`` categories (the paper's appendix:
"the number of filters in each layer is equal to cl/4"). Samples use the Gumbel-softmax
straight-through estimator: a hard one-hot forward (eq. 1) and the softmax's gradient (eq. 2).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# (kernel, stride, padding) of the three encoder convolutions taking each side length to 2, and
# the output paddings of the mirrored decoder
LAYOUTS = {
    28: ([(5, 2, 0), (5, 2, 0), (5, 1, 1)], [0, 1, 1]),   # 28 -> 12 -> 4 -> 2
    32: ([(5, 2, 1), (5, 2, 1), (5, 2, 0)], [0, 0, 1]),   # 32 -> 15 -> 7 -> 2
}


def gumbel_softmax(logits: torch.Tensor, tau: float = 1.0, generator: torch.Generator | None = None,
                   hard: bool = True, u: torch.Tensor | None = None) -> torch.Tensor:
    """Gumbel-softmax samples over the last axis (SRM eq. 1-2; Jang et al. 2017).

    ``g = -log(-log u)``, ``u ~ U(0, 1)``; ``y = softmax((logits + g) / tau)``. With ``hard``, the
    forward value is ``one_hot(argmax(logits + g))`` and the gradient is the softmax's. ``u``, when
    given, is the uniform noise (drawn earlier from ``generator`` with :func:`uniform_noise`).
    """
    if u is None:
        u = uniform_noise(logits.shape, generator)
    u = u.to(logits.device)
    g = -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-10)))
    soft = ((logits + g) / tau).softmax(-1)
    if not hard:
        return soft
    index = soft.argmax(-1, keepdim=True)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)
    return one_hot - soft.detach() + soft


def uniform_noise(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None) -> torch.Tensor:
    """The ``U(0, 1)`` draws :func:`gumbel_softmax` makes (on the CPU generator, so a run's
    random stream is the same on every device)."""
    return torch.rand(shape, generator=generator, device="cpu")


def vae_parameters(image_shape: tuple[int, int, int], c: int, l: int) -> int:  # noqa: E741
    """The number of parameters of ``DiscreteVAE(image_shape, c, l)``, by arithmetic (eq. 5's
    ``|theta|(c, l)`` without building the network; a test checks it against built ones)."""
    ch, h, _ = image_shape
    f = -(-c * l // 4)
    convs, _ = LAYOUTS[h]
    enc = sum(a * b * k * k + b for (k, _, _), a, b in zip(convs, [ch, f, f], [f, f, f], strict=True))
    dec = sum(a * b * k * k + b for (k, _, _), a, b in zip(reversed(convs), [f, f, f], [f, f, ch], strict=True))
    linear = c * l * 4 * f + 4 * f if c * l != 4 * f else 0
    return enc + dec + linear


class DiscreteVAE(nn.Module):
    """Categorical autoencoder with ``c`` variables of ``l`` categories (``c * l`` divisible by 4).

    Args:
        image_shape: ``(C, H, W)`` with ``H = W`` in {28, 32}.
        c: Number of categorical variables.
        l: Categories per variable.
        tau: Gumbel-softmax temperature (1.0, fixed, as the paper).
    """

    def __init__(self, image_shape: tuple[int, int, int], c: int, l: int, tau: float = 1.0):  # noqa: E741
        super().__init__()
        ch, h, w = image_shape
        if h != w or h not in LAYOUTS:
            raise ValueError(f"the discrete VAE takes square 28x28 or 32x32 images, got {image_shape}")
        if c < 1 or l < 2:
            raise ValueError(f"need c >= 1 variables of l >= 2 categories, got c={c}, l={l}")
        self.image_shape, self.c, self.l, self.tau = tuple(image_shape), c, l, tau
        f = -(-c * l // 4)  # filters; the 2x2 map holds 4f >= c*l logits (exactly c*l when divisible)
        self.filters = f
        convs, out_pads = LAYOUTS[h]
        enc: list[nn.Module] = []
        chans = [ch, f, f, f]
        for i, (k, s, p) in enumerate(convs):
            enc.append(nn.Conv2d(chans[i], chans[i + 1], k, s, p))
            if i < 2:
                enc.append(nn.ReLU())
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Linear(c * l, 4 * f), nn.Unflatten(1, (f, 2, 2))] if c * l != 4 * f else [nn.Unflatten(1, (f, 2, 2))]
        back = list(reversed(convs))
        dchans = [f, f, f, ch]
        for i, ((k, s, p), op) in enumerate(zip(back, out_pads, strict=True)):
            dec.append(nn.ConvTranspose2d(dchans[i], dchans[i + 1], k, s, p, output_padding=op))
            if i < 2:
                dec.append(nn.ReLU())
        self.decoder = nn.Sequential(*dec)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder logits, ``(N, c, l)``."""
        return self.encoder(x).flatten(1)[:, : self.c * self.l].reshape(len(x), self.c, self.l)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None,
               u: torch.Tensor | None = None) -> torch.Tensor:
        """Codes to store: a Gumbel-max sample per variable, ``(N, c)`` int64 in [0, l) (``u``: the
        noise, drawn earlier, else drawn from ``generator`` now)."""
        with torch.no_grad():
            return gumbel_softmax(self.logits(x), self.tau, generator, u=u).argmax(-1)

    def decode_onehot(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from (relaxed) one-hot codes ``(N, c, l)``."""
        out = self.decoder(z.flatten(1))
        return torch.sigmoid(out)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from integer codes ``(N, c)``."""
        return self.decode_onehot(F.one_hot(codes, self.l).float())

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruction through a straight-through Gumbel-softmax sample (logits of the pixels)."""
        z = gumbel_softmax(self.logits(x), self.tau, generator)
        return self.decoder(z.flatten(1))

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary cross-entropy reconstruction loss (the paper's l_REC), mean over pixels."""
        return F.binary_cross_entropy_with_logits(self(x, generator), x)
