"""The lifelong generative teacher (Ramapuram, Gregorova, Kalousis: *Lifelong Generative Modeling*).

A student VAE learns the current distribution from real data mixed with samples of a frozen
teacher (the previous student), under eq. 6:

``E_Q[log P(x | z_d, z_c)] - KL[Q(z_d, z_c | x) || P(z_c, z_d)]``            (approximate ELBO)
``- KL[Q_student(z_d | x^) || Q_teacher(z_d | x^)]``                          (consistency, teacher samples x^)
``- lambda * L_I(z_c; x^)``                                                   (information gain, eq. 14)

At every task end the student becomes the teacher and a new student starts from its weights with
``z_d`` grown by one category (:func:`memory.nets.lifelong_vae.grow`). Each training batch holds the
real batch and ``k`` times as many teacher samples after ``k`` distributions, so a fraction
``k / (k + 1)`` is generated (§4, ``pi = k / (k + 1)``).

The same module runs the paper's baselines (``mode``): ``vanilla`` (one VAE trained on the stream,
no teacher) and ``ewc`` (teacher samples plus ``gamma/2 (xi - Xi)^T F (xi - Xi)`` with the diagonal
Fisher of the ELBO, §5). As a replay source for a classifier (``er --memory teacher``, the "GEN"
baseline of the ARM tables) its samples are labelled with soft targets from a frozen copy of the
previous classifier.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from memory.base import Memory, MemorySpec, ReplayBatch
from memory.generative.terms import anneal_tau, consistency_kl, info_gain, teacher_count, vae_terms
from memory.nets.lifelong_vae import LifelongVAE, grow, n_params

MODES = ("lifelong", "ewc", "vanilla")


class GenerativeTeacher(Memory):
    """Student-teacher lifelong VAE (and its vanilla / EWC baselines) as a memory.

    Args:
        spec: The stream's shapes.
        mode: ``"lifelong"`` (eq. 6, ``z_d`` grows from ``z_d`` = 1), ``"ewc"`` (teacher samples +
            EWC, fixed ``z_d``), ``"vanilla"`` (no teacher, fixed ``z_d``).
        arch: ``"dense"`` (2 x 512, ELU, batch norm) or ``"conv"`` (eq. 15).
        z_c: Continuous latent size (14).
        z_d: Initial categories (lifelong: 1; the baselines: the number of tasks, so they hold the
            final size from the start, as in the paper's table).
        lr: Adam learning rate (1e-3).
        lam: Information-gain weight lambda (0.01).
        consistency: Weight of the consistency regulariser (1).
        gamma: EWC strength (``mode="ewc"``; 100, the best of 100, 1e3, 1e4 by final -ELBO on
            the MNIST digits, seed 0).
        fisher_samples: Real examples of a task kept until its end for the Fisher (EWC).
        tau, tau_min, anneal: Gumbel temperature ``max(tau_min, tau * exp(-anneal * step))``.
        batch_norm: Batch norm in the bodies (default off; the paper uses it except for EWC). With
            batches of 10 real images and up to 90 teacher samples, the running statistics did not
            fit real test images: eval-mode -ELBO reached 10^5 nats against ~300 in train mode.
        steps: Gradient steps per incoming batch (each with fresh teacher samples).
        clip: Gradient-norm clip (10; 0 = off). The reference trains with normalised-gradient Adam;
            without a clip the information term's ``1 / sigma^2`` made a run diverge to NaN.
        seed: Seeds the VAE initialisation and every sample.
    """

    name = "teacher"
    static_items = False

    def __init__(self, spec: MemorySpec, mode: str = "lifelong", arch: str = "dense", z_c: int = 14,
                 z_d: int | None = None, lr: float = 1e-3, lam: float = 0.01, consistency: float = 1.0,
                 gamma: float = 100.0, fisher_samples: int = 500, tau: float = 1.0, tau_min: float = 0.5,
                 anneal: float = 3e-5, batch_norm: bool = False, steps: int = 1, clip: float = 10.0,
                 seed: int = 0):
        super().__init__(spec)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.seed, self.clip = seed, float(clip)
        self.mode, self.lr, self.lam, self.consistency = mode, float(lr), float(lam), float(consistency)
        self.gamma, self.fisher_samples, self.steps = float(gamma), int(fisher_samples), int(steps)
        self.tau0, self.tau_min, self.anneal = float(tau), float(tau_min), float(anneal)
        z_d = z_d if z_d is not None else (1 if mode == "lifelong" else max(spec.n_tasks, 1))
        bn = bool(batch_norm)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.student = LifelongVAE(spec.image_shape, z_c, z_d, arch, batch_norm=bn).to(spec.device)
        self.teacher: LifelongVAE | None = None
        self.classifier: nn.Module | None = None  # frozen previous classifier (GEN replay labels)
        self.optimizer = self._optimizer()
        self.generator = torch.Generator().manual_seed(seed + 7)
        self.k = 0            # distributions handed over to the teacher
        self.k_seen = 0       # task ends seen (= k except for the vanilla mode)
        self.step = 0
        self.fisher: dict[str, torch.Tensor] | None = None
        self.anchor: dict[str, torch.Tensor] | None = None
        self.recent: list[torch.Tensor] = []  # uint8, the last fisher_samples real examples (EWC)
        self.last_losses: dict[str, torch.Tensor] = {}
        self.handed_over = False  # True between a hand-over and the next training step
        self.consistency_history: list[float | None] = []

    def _optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.student.parameters(), lr=self.lr)

    @classmethod
    def for_budget(cls, budget: float, spec: MemorySpec, **kwargs) -> GenerativeTeacher:
        """The teacher stores no example: any budget (even 0) is met; the model is overhead."""
        if budget < 0:
            raise ValueError(f"budget must be >= 0 effective examples, got {budget}")
        return cls(spec, **kwargs)

    @classmethod
    def default(cls, spec: MemorySpec, **kwargs) -> GenerativeTeacher:
        return cls(spec, **kwargs)

    # ----------------------------------------------------------------- training
    @property
    def tau(self) -> float:
        return anneal_tau(self.step, self.tau0, self.tau_min, self.anneal)

    def fit(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``steps`` updates of the student on the real batch ``x`` (+ ``extra`` real examples, for the
        upper bounds) mixed with teacher samples; returns the last step's terms (detached)."""
        for _ in range(self.steps):
            self.last_losses = self._step(x, extra)
        return self.last_losses

    def _step(self, x: torch.Tensor, extra: torch.Tensor | None) -> dict[str, torch.Tensor]:
        self.handed_over = False
        real = x if extra is None else torch.cat([x, extra])
        n_gen = teacher_count(len(x), self.k) if self.teacher is not None and self.mode != "vanilla" else 0
        if n_gen:
            x_gen = self.teacher.generate(n_gen, self.generator)
            batch = torch.cat([real, x_gen])
        else:
            batch = real
        self.student.train()
        terms = vae_terms(self.student, batch, self.tau, self.generator)
        elbo_loss = (terms["nll"] + terms["kl"]).mean()
        loss = elbo_loss
        out = {"neg_elbo": elbo_loss.detach(), "tau": torch.tensor(self.tau)}
        if self.mode == "lifelong":
            if n_gen:
                with torch.no_grad():
                    self.teacher.eval()
                    _, _, t_logits = self.teacher.encode(x_gen)
                cons = consistency_kl(terms["logits_d"][len(real):], t_logits).sum() / len(batch)
                loss = loss + self.consistency * cons
                out["consistency"] = cons.detach()
            if self.lam:
                # the re-encoding acts as a fixed estimator Q (its weights detached): the bound moves
                # the decoder (and, through the sampled z_c, the encoder's posterior), never Q's
                # weights; through Q it is unbounded below (a far-off mu_hat or a huge variance
                # makes log Q -> -inf), which diverged a run
                frozen = {n: p.detach() for n, p in self.student.named_parameters()}
                # copies of the buffers: re-encoding reconstructions must not move batch-norm running stats
                frozen.update({n: b.clone() for n, b in self.student.named_buffers()})
                mu_hat, lv_hat, _ = torch.func.functional_call(self.student, frozen, (torch.sigmoid(terms["recon"]),))
                info = info_gain(terms["z_c"], mu_hat, lv_hat).mean()
                loss = loss + self.lam * info
                out["info_gain"] = info.detach()
        elif self.mode == "ewc" and self.fisher is not None:
            pen = sum((self.fisher[n] * (p - self.anchor[n]).pow(2)).sum()
                      for n, p in self.student.named_parameters())
            loss = loss + 0.5 * self.gamma * pen
            out["ewc"] = pen.detach()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.clip)
        self.optimizer.step()
        self.step += 1
        return out

    def observe(self, x: torch.Tensor, t: int | None, y: torch.Tensor, ctx: Any = None,
                extra: torch.Tensor | None = None) -> None:
        """Train on the batch (:meth:`fit`); EWC also keeps the task's last real examples."""
        self.fit(x, extra)
        if self.mode == "ewc":
            self.recent.append((x.detach() * 255).round().to(torch.uint8))
            while sum(len(r) for r in self.recent) - len(self.recent[0]) >= self.fisher_samples:
                self.recent.pop(0)

    # ----------------------------------------------------------------- hand-over
    def elbo_fisher(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Diagonal Fisher of the ELBO at the current student: mean over ``x`` of the squared
        per-example gradient of ``log P(x, z) - log Q(z | x)`` (one posterior sample each)."""
        fisher = {n: torch.zeros_like(p) for n, p in self.student.named_parameters()}
        params = dict(self.student.named_parameters())
        self.student.eval()
        for i in range(len(x)):
            terms = vae_terms(self.student, x[i:i + 1], self.tau, self.generator)
            grads = torch.autograd.grad((terms["nll"] + terms["kl"]).sum(), list(params.values()))
            for n, g in zip(params, grads, strict=True):
                fisher[n] += g.pow(2)
        self.student.train()
        return {n: f / max(len(x), 1) for n, f in fisher.items()}

    @torch.no_grad()
    def zd_consistency(self, n: int = 1000) -> float | None:
        """Fraction of teacher samples on which the student's and the teacher's most likely ``z_d``
        agree (None before the first hand-over)."""
        if self.teacher is None:
            return None
        x = self.teacher.generate(n, torch.Generator().manual_seed(0))
        self.student.eval()
        self.teacher.eval()
        agree = self.student.encode(x)[2].argmax(1) == self.teacher.encode(x)[2].argmax(1)
        self.student.train()
        return float(agree.float().mean())

    def end_task(self, t: int, ctx: Any = None) -> None:
        """The student becomes the teacher; a new student starts from it (``z_d`` + 1 when lifelong),
        with fresh batch-norm statistics and optimiser state. Keeps a frozen copy of a classifier
        learner's model to label replayed samples."""
        self.consistency_history.append(self.zd_consistency())
        self.k_seen += 1
        if self.mode == "vanilla":
            self._keep_classifier(ctx)
            return
        if self.mode == "ewc" and self.recent:
            x = torch.cat(self.recent)[-self.fisher_samples:].float().div_(255.0)
            self.fisher = self.elbo_fisher(x)
            self.anchor = {n: p.detach().clone() for n, p in self.student.named_parameters()}
            self.recent = []
        self.teacher = copy.deepcopy(self.student).eval().requires_grad_(False)
        # EWC keeps its z_d: grow(.., 0) copies every weight, latent projections included
        with torch.random.fork_rng(devices=[]):  # the re-initialised projections, seeded
            torch.manual_seed(self.seed * 1009 + self.k + 1)
            self.student = grow(self.teacher, 1 if self.mode == "lifelong" else 0).requires_grad_(True)
        self.optimizer = self._optimizer()
        self.k += 1
        self.handed_over = True
        self._keep_classifier(ctx)

    def _keep_classifier(self, ctx: Any) -> None:
        model = getattr(ctx, "model", None)
        if model is not None and not getattr(ctx, "generative", False):
            self.classifier = copy.deepcopy(model).eval().requires_grad_(False)

    # ----------------------------------------------------------------- replay
    @property
    def model(self) -> LifelongVAE:
        """The model holding everything learned so far: right after a hand-over that is the teacher
        (the new student's latent projections are untrained); otherwise the student."""
        return self.teacher if self.teacher is not None and self.handed_over else self.student

    def generate(self, n: int, category: int | None = None, generator: torch.Generator | None = None,
                 model: str = "current") -> torch.Tensor:
        """``n`` samples of :attr:`model` (or the ``student`` / ``teacher``), optionally of one ``z_d`` category."""
        m = {"current": self.model, "student": self.student, "teacher": self.teacher}[model]
        if m is None:
            raise ValueError("no teacher yet: it exists after the first task end")
        return m.generate(n, generator if generator is not None else self.generator, category)

    @torch.no_grad()
    def sample(self, n: int, ctx: Any = None, generator: torch.Generator | None = None) -> ReplayBatch | None:
        """``n`` teacher samples labelled by the previous classifier's softmax (soft targets);
        None before the first task end. Task ids are 0: use single-head streams."""
        if self.teacher is None or self.classifier is None:
            return None
        x = self.teacher.generate(n, generator if generator is not None else self.generator)
        y = self.classifier(x).softmax(1)
        return ReplayBatch(x, torch.zeros(n, dtype=torch.long, device=x.device), y)

    def visuals(self) -> dict[str, torch.Tensor]:
        """Eight student samples per ``z_d`` category, a row each (generation of a chosen distribution)."""
        gen = torch.Generator().manual_seed(0)
        rows = [self.model.generate(8, gen, c) for c in range(self.model.z_d)]
        return {"teacher/samples_by_zd": torch.cat(rows)}

    # ----------------------------------------------------------------- accounting
    @property
    def storage_bits(self) -> int:
        return 0

    @property
    def items(self) -> int:
        return 0

    @property
    def overhead_bits(self) -> int:
        """Student, teacher, a kept classifier and the Fisher (+ anchor), at 32 bits a parameter."""
        n = n_params(self.student) + (n_params(self.teacher) if self.teacher is not None else 0)
        n += n_params(self.classifier) if self.classifier is not None else 0
        n += 2 * sum(f.numel() for f in self.fisher.values()) if self.fisher is not None else 0
        return 32 * n

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Tensors and plain containers only: each VAE as its config and weights, the kept
        classifier (a copy of the learner's model) as its weights."""
        def vae(m):
            return None if m is None else {"config": {**m.config, "image_shape": list(m.config["image_shape"])},
                                           "state": {k: v.clone() for k, v in m.state_dict().items()}}

        return copy.deepcopy({
            "student": vae(self.student), "teacher": vae(self.teacher),
            "classifier": None if self.classifier is None else dict(self.classifier.state_dict()),
            "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
            "k": self.k, "k_seen": self.k_seen, "handed_over": self.handed_over, "step": self.step, "fisher": self.fisher, "anchor": self.anchor,
            "recent": self.recent, "consistency_history": self.consistency_history,
        })

    def load_state_dict(self, state: dict, ctx: Any = None) -> None:
        state = copy.deepcopy(state)
        device = self.spec.device

        def vae(d, trainable: bool):
            if d is None:
                return None
            m = LifelongVAE(**{**d["config"], "image_shape": tuple(d["config"]["image_shape"])}).to(device)
            m.load_state_dict(d["state"])
            return m.requires_grad_(trainable) if trainable else m.eval().requires_grad_(False)

        self.student, self.teacher = vae(state["student"], True), vae(state["teacher"], False)
        self.classifier = None
        if state["classifier"] is not None:
            model = getattr(ctx, "model", None)
            if model is None:
                raise ValueError("teacher.load_state_dict needs ctx (the learner) to rebuild its classifier")
            self.classifier = copy.deepcopy(model).eval().requires_grad_(False)
            self.classifier.load_state_dict(state["classifier"])
        self.optimizer = self._optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.k, self.k_seen, self.step = state["k"], state["k_seen"], state["step"]
        self.fisher, self.anchor, self.recent = state["fisher"], state["anchor"], state["recent"]
        self.consistency_history = state["consistency_history"]
        self.handed_over = state["handed_over"]
