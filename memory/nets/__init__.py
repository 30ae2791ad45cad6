"""Encoder/decoder blocks shared by the VAE memories."""

from memory.nets.discrete_vae import DiscreteVAE, gumbel_softmax

__all__ = ["DiscreteVAE", "gumbel_softmax"]
