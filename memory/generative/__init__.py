"""The lifelong generative teacher (Ramapuram, Gregorova, Kalousis: *Lifelong Generative Modeling*).

Two modules: :mod:`~memory.generative.teacher` (the student-teacher memory,
:class:`GenerativeTeacher`) and :mod:`~memory.generative.terms` (the training maths as pure
functions: the ELBO's terms, consistency, information gain, the teacher-sample count, the
temperature schedule, ``-ELBO``). Every public name is importable from ``memory.generative``.
"""

from __future__ import annotations

from memory.generative.teacher import MODES, GenerativeTeacher
from memory.generative.terms import (
    anneal_tau,
    bernoulli_nll,
    categorical_kl_uniform,
    consistency_kl,
    gaussian_kl,
    info_gain,
    negative_elbo,
    teacher_count,
    vae_terms,
)

__all__ = ["MODES", "GenerativeTeacher", "anneal_tau", "bernoulli_nll", "categorical_kl_uniform", "consistency_kl",
           "gaussian_kl", "info_gain", "negative_elbo", "teacher_count", "vae_terms"]
