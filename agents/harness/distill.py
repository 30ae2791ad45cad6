"""``cl-env distill``: compress a dataset into addressable memories and measure them (Remember the
Past, Table 1) against the same storage of random real images."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from agents.harness.logger import Logger
from agents.models import build_model
from cl_env.data import load_source
from memory import addressable as A


def distill_source(source: str = "mnist5k", ipc: float = 1, n_bases: int = 16, ds: int = 2,
                   model: str = "mlp", iterations: int = 300, inner_steps: int = 30, inner_lr: float = 0.1,
                   momentum: float = 0.9, batch_per_class: int = 32, outer_lr: float = 0.1,
                   outer_momentum: float = 0.5, clip: float = 2.0, real_per_class: int = 64,
                   repeats: int = 5, eval_epochs: int = 300, eval_lr: float = 0.01, seed: int = 0,
                   root: str | None = None, device: str = "cpu", out: str | Path | None = None,
                   baselines: bool = True, log=print) -> dict:
    """Distil ``source``'s training split into ``ipc`` images per class of memories (eq. 4) and
    evaluate: ``repeats`` fresh models trained on the recalled data, and on random real images at
    the same count (the paper's "images per class") and at the same bits (8-bit pixels: 4x as many).

    Returns the summary that ``out/distill.json`` holds.
    """
    started = time.perf_counter()
    data = load_source(source, env_id="cl-env distill", root=root)
    x, y = data.train_x.float().div_(255.0).to(device), data.train_y.long().to(device)
    xt, yt = data.test_x.float().div_(255.0).to(device), data.test_y.long().to(device)
    shape, K = tuple(data.train_x.shape[1:]), data.n_classes
    rows = A.rows_per_class(ipc, shape, K, n_bases, ds)
    gen = torch.Generator().manual_seed(seed)
    init, labels = A.bases_from_data(x.cpu(), y.cpu(), n_bases, gen)
    mem = A.AddressableMemories(shape, K, n_bases, rows, ds, generator=gen, init=init, init_labels=labels).to(device)

    def model_fn():
        return build_model(model, shape, K)

    logger = Logger(out)
    unroll = A.Unroll(inner_steps, inner_lr, momentum, batch_per_class)
    outer = A.Distillation(iterations, outer_lr, outer_momentum, clip, real_per_class)

    def progress(it: int, loss: float) -> None:
        logger.scalars({"outer_loss": loss}, it, "distill/")
        if it % max(1, iterations // 10) == 0:
            log(f"iteration {it}/{iterations}: real-data loss {loss:.4f} ({time.perf_counter() - started:.0f} s)")

    losses = A.distill(mem, x, y, model_fn, unroll, outer, seed=seed, progress=progress)
    distill_s = time.perf_counter() - started
    with torch.no_grad():
        xs, ys = mem.recall_classes()
    xs = xs.clamp(0, 1)
    acc = A.evaluate_data(xs, ys, xt, yt, model_fn, repeats, eval_epochs, seed)
    bits = A.FLOAT_BITS * mem.floats
    result = {
        "source": source, "ipc": ipc, "n_bases": n_bases, "ds": ds, "rows_per_class": rows, "model": model,
        "storage_bits": bits, "storage_float_images_per_class": mem.floats / (K * int(np.prod(shape))),
        "iterations": iterations, "inner_steps": inner_steps, "inner_lr": inner_lr, "seed": seed,
        "distilled_accuracy": acc, "outer_loss_first_last": [losses[0], losses[-1]],
        "skipped_iterations": int(sum(not np.isfinite(v) for v in losses)),
        "distill_time_s": distill_s, "train_examples": len(y), "test_examples": len(yt),
    }
    if baselines:
        example_bits = int(np.prod(shape)) * 8 + max(1, int(np.ceil(np.log2(K))))
        for name, per_class in (("random_same_count", int(np.ceil(ipc))),
                                ("random_same_bits", max(1, bits // example_bits // K))):
            accs = []
            for r in range(repeats):
                g = torch.Generator().manual_seed(seed * 1000 + r)
                pick = torch.cat([torch.nonzero(y == k).flatten().cpu()[
                    torch.randperm(int((y == k).sum()), generator=g)[:per_class]] for k in range(K)]).to(device)
                accs.append(A.evaluate_data(x[pick], y[pick], xt, yt, model_fn, 1, eval_epochs, seed * 1000 + r)[0])
            result[name] = {"per_class": per_class, "accuracy": (float(np.mean(accs)), float(np.std(accs)))}
    result["wall_time_s"] = time.perf_counter() - started
    logger.images("distill/recalled_by_class", xs[:: max(1, rows // 10)][: 10 * K], 0, nrow=10)
    logger.close()
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "distill.json").write_text(json.dumps(result, indent=2))
        torch.save({"memories": mem.state_dict(), "config": {"image_shape": shape, "n_classes": K,
                    "n_bases": n_bases, "rows": rows, "ds": ds}}, Path(out) / "memories.pt")
    return result
