"""The lifelong generative teacher's training maths, pure functions (Ramapuram, Gregorova,
Kalousis: *Lifelong Generative Modeling*, eq. 6, eq. 9, eq. 14).

The approximate ELBO's terms (a Bernoulli decoder's negative log-likelihood, the Gaussian and the
uniform-categorical KL), the consistency regulariser between student and teacher posteriors over
``z_d``, the information gain of ``z_c``, the teacher-sample count (``pi = k / (k + 1)``), the
Gumbel temperature schedule, and the model's ``-ELBO`` on data.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from memory.nets.lifelong_vae import LifelongVAE


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``-log P(x | z)`` of a Bernoulli decoder, summed over pixels: one value per example (nats)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL[N(mu, diag(exp logvar)) || N(0, I)]`` per example."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def categorical_kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """``KL[Cat(softmax(logits)) || Cat(1/J)] = sum_j q_j (log q_j + log J)`` per example."""
    logq = logits.log_softmax(1)
    return (logq.exp() * (logq + math.log(logits.shape[1]))).sum(1)


def consistency_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                   floor: float = 1e-6) -> torch.Tensor:
    """``KL[Q_student(z_d | x^) || Q_teacher(z_d | x^)]`` per example (eq. 6; eq. 9 of the appendix).

    The categoricals differ in size after ``z_d`` grows: the teacher's is zero-padded (§7.8.2) --
    it gives no mass to the student's new category -- with the zero floored at ``floor`` so the
    divergence stays finite: mass the student puts on a new category for a *teacher* sample costs
    ``q (log q - log floor)``. (The reference code pads the teacher's *log*-probabilities with 0,
    i.e. probability 1, which rewards sending every teacher sample to the new category: with it
    the student and teacher agreed on 0 % of teacher samples after three distributions.)
    """
    ls, lt = student_logits.log_softmax(1), teacher_logits.log_softmax(1)
    j = max(ls.shape[1], lt.shape[1])
    log_floor = math.log(floor)
    ls_p = F.pad(ls, (0, j - ls.shape[1]), value=log_floor)
    lt_p = F.pad(lt, (0, j - lt.shape[1]), value=log_floor)
    return (ls_p.exp() * (ls_p - lt_p)).sum(1)


def info_gain(z_c: torch.Tensor, mu_hat: torch.Tensor, logvar_hat: torch.Tensor) -> torch.Tensor:
    """``L_I(z_c; x^) = log Q(z_c | x^) + H(z_c)`` per example (eq. 14, InfoGAN's bound, eq. 12).

    ``x^`` is the reconstruction decoded from ``z = [z_c, z_d]``; ``(mu_hat, logvar_hat)`` is its
    re-encoding. ``H(z_c)`` is the entropy of the ``N(0, I)`` prior, a constant (as in InfoGAN).
    Minimising ``lambda * L_I`` makes ``z_c`` hard to recover from the generation, so the decoder
    carries the distribution's identity in ``z_d``. Minimising a log-density is unbounded below
    (the decoder finds images the encoder gives a vanishing variance: a run reached
    ``logvar = -33`` then NaN), so ``logvar_hat`` is clamped to [-6, 2], the range the reference
    code's ``hardtanh`` option uses; with a fixed encoder and images in [0, 1] the term is bounded.
    """
    d = z_c.shape[1]
    logvar_hat = logvar_hat.clamp(-6.0, 2.0)
    log_q = -0.5 * (((z_c - mu_hat).pow(2) / logvar_hat.exp()) + logvar_hat + math.log(2 * math.pi)).sum(1)
    return log_q + 0.5 * d * (1.0 + math.log(2 * math.pi))


def teacher_count(batch: int, k: int) -> int:
    """Teacher samples joined to a real batch of ``batch`` after ``k`` distributions: ``k * batch``,
    so that a fraction ``pi = k / (k + 1)`` of the mixed batch is generated."""
    if batch < 0 or k < 0:
        raise ValueError(f"batch and k must be >= 0, got {batch}, {k}")
    return k * batch


def anneal_tau(step: int, tau0: float, tau_min: float, rate: float) -> float:
    """``max(tau_min, tau0 * exp(-rate * step))``, the Gumbel temperature schedule."""
    return max(tau_min, tau0 * math.exp(-rate * step))


def vae_terms(model: LifelongVAE, x: torch.Tensor, tau: float, generator: torch.Generator | None = None
              ) -> dict[str, torch.Tensor]:
    """One posterior sample through the model: per-example ``nll``, ``kl`` and what the regularisers use."""
    mu, logvar, logits_d = model.encode(x)
    z_c, z_d = model.sample_posterior(mu, logvar, logits_d, tau, generator)
    recon = model.decode(torch.cat([z_c, z_d], 1))
    return {"nll": bernoulli_nll(recon, x), "kl": gaussian_kl(mu, logvar) + categorical_kl_uniform(logits_d),
            "logits_d": logits_d, "z_c": z_c, "recon": recon}


@torch.no_grad()
def negative_elbo(model: LifelongVAE, x: torch.Tensor, seed: int = 0, chunk: int = 1000) -> float:
    """Mean ``-ELBO`` (nats per image) of ``x`` in [0, 1], one posterior sample each (hard ``z_d``, tau 0.5),
    in eval mode, with a fixed noise seed so repeated evaluations agree."""
    gen = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    total = 0.0
    for s in range(0, len(x), chunk):
        terms = vae_terms(model, x[s:s + chunk], 0.5, gen)
        total += float((terms["nll"] + terms["kl"]).sum())
    model.train(was)
    return total / max(len(x), 1)
