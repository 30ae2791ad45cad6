"""The Scalable Recollection Module (Riemer et al., *Scalable Recollections for Continual Lifelong
Learning*): a discrete VAE plus an index buffer of bit-packed codes.

One module per part: :mod:`~memory.srm.recollection` (the :class:`SRM` memory, Algorithms 1-2),
:mod:`~memory.srm.budget` (code size and the latent size a budget allows, eq. 4 / 5),
:mod:`~memory.srm.msss` (diverse sampling, Algorithm 3) and :mod:`~memory.srm.vae_io` (pretraining,
saving and loading the autoencoder for transfer). Every public name is importable from
``memory.srm``.
"""

from __future__ import annotations

from memory.srm.budget import code_bits, latent_for_budget
from memory.srm.msss import msss_select
from memory.srm.recollection import POLICIES, SRM
from memory.srm.vae_io import load_vae, pretrain_vae, save_vae

__all__ = ["POLICIES", "SRM", "code_bits", "latent_for_budget", "load_vae", "msss_select", "pretrain_vae",
           "save_vae"]
