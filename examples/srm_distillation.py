"""Generative knowledge distillation through Scalable Recollections (SRM, Figure 4 and Tables 8-9).

A teacher is trained on MNIST; its training images are compressed into SRM codes; a student of
the same architecture then learns only from recollections decoded from the buffer, labelled by
the teacher — sampled at random, actively (the hardest of 10 buffer samples for the student) or
actively and diversely (10 kept of 100 by MSSS first). Prints the student's test accuracy.

Usage:
    python examples/srm_distillation.py [--quick]
"""

from __future__ import annotations

import argparse

import torch
from torch.nn import functional as F

import cl_env
from agents.models import build_model
from memory import MemorySpec
from memory.srm import SRM, pretrain_vae


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny budgets of epochs and steps")
    p.add_argument("--c", type=int, default=50)
    p.add_argument("--l", type=int, default=4)
    args = p.parse_args()
    epochs, steps = (1, 50) if args.quick else (10, 1000)
    torch.manual_seed(0)
    stream = cl_env.make_stream("SplitMNIST-v0", classes_per_task=10)  # one task: all digits
    task = stream.tasks[0]
    x, y = task.train_examples()
    x = x.float() / 255
    xt, yt = stream.test_set(0)

    teacher = build_model("mlp400", stream.image_shape, 10, init="xavier")
    opt = torch.optim.SGD(teacher.parameters(), lr=0.05)
    for _ in range(epochs):
        for s in range(0, len(x), 10):
            loss = F.cross_entropy(teacher(x[s:s + 10]), y[s:s + 10])
            opt.zero_grad()
            loss.backward()
            opt.step()
    print(f"teacher test accuracy {accuracy(teacher, xt, yt):.3f}")

    spec = MemorySpec(stream.image_shape, 10, 1)
    srm = SRM(spec, c=args.c, l=args.l, capacity=len(x), seed=0)
    pretrain_vae(srm.vae, x, epochs=epochs)
    srm.add(x, 0, y)
    print(f"buffer: {srm.items} codes of {srm.item_bits} bits "
          f"({srm.storage_bits / (len(x) * 6272):.3f} of the real images' storage)")

    for mode in ("random", "active", "active+diverse"):
        torch.manual_seed(1)
        student = build_model("mlp400", stream.image_shape, 10, init="xavier")
        opt = torch.optim.SGD(student.parameters(), lr=0.05)

        def difficulty(xs, student=student):
            return F.cross_entropy(student(xs), teacher(xs).argmax(1), reduction="none")

        for _ in range(steps):
            if mode == "random":
                batch = srm.sample(10)
            else:
                batch = srm.sample_active(10, difficulty, k=10, diverse=mode == "active+diverse")
            with torch.no_grad():
                target = teacher(batch.x).argmax(1)
            loss = F.cross_entropy(student(batch.x), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"student from {mode:15s} recollections: retained accuracy {accuracy(student, xt, yt):.3f}")


if __name__ == "__main__":
    main()
