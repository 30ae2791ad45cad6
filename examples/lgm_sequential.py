"""Lifelong Generative Modeling §5.1 / §7.7: vanilla, EWC and lifelong VAEs over the 10 classes of
Fashion-MNIST (Debian's files) or the 10 digits of the embedded MNIST as sequential distributions;
-ELBO and Fréchet distance after each stage, 3 seeds (docs/benchmarks.md).

Usage:
    python examples/lgm_sequential.py [--source fashion_mnist|mnist5k] [--quick] [--out runs/lgm]
"""

from __future__ import annotations

import argparse

from agents import run
from agents.harness import results

CONFIGS = [("vae", {}), ("ewc_vae", {"memory.gamma": 100}), ("lvae", {})]
BOUNDS = [("vae", {"bound": "upto"}), ("vae", {"bound": "full"})]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="fashion_mnist", help="fashion_mnist (SeqFashionMNIST-v0) or mnist5k")
    p.add_argument("--steps", type=int, default=1, help="VAE updates per incoming batch (memory.steps)")
    p.add_argument("--quick", action="store_true", help="one seed, 3 distributions of the embedded MNIST")
    p.add_argument("--out", default="runs/lgm")
    args = p.parse_args()
    stream = {"source": "mnist5k", "classes": (0, 1, 2)} if args.quick else {"source": args.source}
    seeds = [0] if args.quick else [0, 1, 2]
    for seed in seeds:
        for agent, settings in CONFIGS + (BOUNDS if seed == 0 and not args.quick else []):
            settings = {**settings, "memory.steps": args.steps}
            tag = f"{agent}{'-' + settings['bound'] if 'bound' in settings else ''}-{seed}"
            r = run("SeqFashionMNIST-v0", agent=agent, seed=seed, settings=settings, stream_kwargs=stream,
                    out=f"{args.out}/{tag}", overwrite=True)
            print(f"{tag:12s} -ELBO {r.neg_test_elbo[-1]:.1f}  Fréchet {r.frechet_distance[-1]:.1f}")
    print("\n" + results.to_markdown(results.comparison_tables(results.find_results([args.out])[0])))


if __name__ == "__main__":
    main()
