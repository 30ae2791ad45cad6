"""``cl-env run``: one agent on one stream (``--seeds``: several seeds of it, as a sweep's cells)."""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

import torch

from agents.harness import results
from agents.harness.cli.args import (
    DIVERGED_EXIT,
    _assignments,
    _check_options,
    _names,
    parse_assignments,
    parse_seeds,
)
from agents.harness.config import RunConfig
from agents.harness.logger import parse_formats
from agents.harness.runner import run, validate
from agents.harness.sweep import sweep
from cl_env import checks
from cl_env.error import CLEnvError


def _run_seeds(args: argparse.Namespace) -> int:
    """``cl-env run ... --seeds 0-4``: the seeds of one configuration as a sweep's cells (trained
    together where they stack, else one process per seed, threads shared out), results under OUT
    exactly as separate runs write them."""
    try:
        seeds = parse_seeds(args.seeds)
        if args.seed != 0:
            raise ValueError("--seed and --seeds exclude each other: pass the seeds as --seeds 0-4")
        if args.out is None:
            raise ValueError("--seeds needs --out DIR (each seed's run is written under it)")
        if args.resume or args.overwrite:
            raise ValueError("--seeds resumes unfinished seeds by itself and never overwrites finished ones; "
                             "drop --resume/--overwrite (or use another --out)")
        settings, stream = parse_assignments(args.set, "--set"), parse_assignments(args.stream, "--stream")
        # the configuration built and checked as one run's is (a sweep's grid would skip a
        # memory the agent cannot use, or drop a budget it has no use for, without a word)
        base = RunConfig.build(args.env_id, args.agent, args.memory, args.budget, seeds[0], args.device, settings,
                               stream, args.batch_size, args.items, args.preset)
        validate(args.agent, base.memory, base.to_dict()["settings"])
        if args.checkpoint_every is not None:
            checks.integer("checkpoint_every", args.checkpoint_every, 1, fix="--checkpoint-every 1000")
        cfg = {"out": args.out, "envs": [args.env_id], "agents": [args.agent], "memories": [args.memory],
               "budgets": [args.budget], "items": [args.items], "preset": args.preset, "seeds": seeds,
               "settings": [settings], "stream": stream, "batch_size": args.batch_size,
               "device": args.device, "stack_seeds": not args.no_stack, "log": args.log,
               "checkpoint_every": args.checkpoint_every}
        records = sweep(cfg, isolate=False)  # one group of seeds: in this process
    except (CLEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    runs, _ = results.find_results([args.out])
    group = base.group_hash  # this configuration's seeds only, not other runs under OUT
    scores = [r.data.get("retained_accuracy") for r in runs if r.seed in seeds and r.data.get("status") == "completed"
              and results.group_hash(r.config) == group]
    scores = [s for s in scores if s is not None]
    if scores:
        spread = f" ± {statistics.stdev(scores):.4f}" if len(scores) > 1 else ""
        print(f"retained accuracy over {len(scores)} seed(s): {statistics.mean(scores):.4f}{spread} "
              f"(cl-env compare {args.out} for every metric)")
    failed = [r for r in records if r["status"] == "failed"]
    diverged = [r for r in records if r["status"] == "diverged"]
    return 1 if failed else (DIVERGED_EXIT if diverged else 0)


def cmd_run(args: argparse.Namespace) -> int:
    if getattr(args, "seeds", None) is not None:
        return _run_seeds(args)
    try:  # the seed's own check first: past 2**64 torch.manual_seed raises an overflow
        _check_options(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)  # only the CLI seeds globals; the library passes generators
    warnings.filterwarnings("ignore", message=".* diverged at step", category=RuntimeWarning)  # said below
    try:
        result = run(
            args.env_id, agent=args.agent, memory=args.memory, budget=args.budget, items=args.items, seed=args.seed,
            device=args.device, out=args.out, settings=parse_assignments(args.set, "--set"),
            stream_kwargs=parse_assignments(args.stream, "--stream"), batch_size=args.batch_size,
            resume=args.resume, overwrite=args.overwrite, checkpoint_every=args.checkpoint_every,
            progress=("lines" if args.progress is None and not sys.stderr.isatty() else args.progress),
            log=args.log, preset=args.preset,
        )
    except (CLEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.status == "diverged":
        d = result.divergence
        print(f"DIVERGED: {result.agent} on {result.env} (seed {result.seed}) stopped at step {d['step']} "
              f"(task {d['task']}, {d['examples_seen']} examples): {d['reason']}; "
              f"{len(result.accuracy_matrix)} accuracy row(s) measured before it. Not a result: "
              f"compare lists it flagged and never averages it in. Try a smaller lr or regulariser weight.",
              file=sys.stderr)
        if args.out:
            print(f"wrote {Path(args.out) / 'result.json'} (status diverged)")
        return DIVERGED_EXIT
    if result.neg_test_elbo is not None:
        scores = (f"-ELBO {result.neg_test_elbo[-1]:.2f} nats, Fréchet distance "
                  f"{result.frechet_distance[-1]:.2f} (after the last task)")
    else:
        scores = (f"retained accuracy {result.retained_accuracy:.4f}, BWT {result.backward_transfer:+.4f}, "
                  f"forgetting {result.forgetting:.4f}, online accuracy {result.online_accuracy:.4f}")
    print(f"{result.agent} on {result.env} (seed {result.seed}, memory {result.memory}): {scores}, "
          f"storage {result.effective_examples:.1f} examples ({result.items} items), "
          f"{result.wall_time_s:.1f} s")
    notable = {k: v for k, v in result.counters.items() if v and k not in ("projections", "resumes")}
    if notable:
        print(f"counters: {notable} (in result.json)")
    if args.out:
        logs = {"tensorboard": f"TensorBoard events (tensorboard --logdir {args.out})",
                "csv": str(Path(args.out) / "progress.csv"), "jsonl": str(Path(args.out) / "progress.jsonl")}
        wrote = [logs[f] for f in parse_formats(args.log) if f in logs]
        print(f"wrote {Path(args.out) / 'result.json'}" + "".join(f" and {w}" for w in wrote))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="run one agent on one stream")
    r.add_argument("env_id", nargs="?", help="a registered id (cl-env list)")
    r.add_argument("--agent", default="online",
                   help=f"the learner (default online): {_names('agent')}")
    r.add_argument("--memory", default=None,
                   help=f"the agent's memory (default: the agent's own): {_names('memory')}")
    r.add_argument("--budget", type=float, default=None,
                   help="incremental storage in effective real examples (C*H*W*8 bits each)")
    r.add_argument("--items", type=int, default=None,
                   help="instead of --budget: exactly N items in a buffer memory (the papers' buffer size)")
    r.add_argument("--preset", default=None, metavar="NAME",
                   help="a preset's settings, memory and size (cl-env list presets); explicit options win")
    r.add_argument("--seed", type=int, default=0, help="seeds the model, the memory and every draw (default 0)")
    r.add_argument("--seeds", default=None, metavar="SEEDS",
                   help="several seeds of this configuration, e.g. 0-4 or 0,1,2, each seed's run under "
                        "--out as a sweep cell: trained together in one process (stacked parameters) "
                        "for the learners that declare stackable (online, er, er_ace, ewc, lwf, agem, der, derpp) "
                        "on MLPs, else one process per seed")
    r.add_argument("--no-stack", action="store_true",
                   help="with --seeds: one process per seed even where the seeds could train together")
    r.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    r.add_argument("--out", default=None, help="directory for result.json, events, checkpoint")
    _assignments(r, "--set", "set", "agent settings, memory.KEY for the memory's (repeatable)")
    _assignments(r, "--stream", "stream", "stream options, e.g. source=fashion_mnist seed=1 (repeatable)")
    r.add_argument("--batch-size", type=int, default=None,
                   help="examples per step (default 10; 1 for the sb3 agent)")
    r.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from its checkpoint.pt (same configuration only)")
    r.add_argument("--overwrite", action="store_true",
                   help="delete the run files in OUT (result, checkpoint, events) and start afresh")
    r.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS steps (a checkpoint is written at every task end)")
    r.add_argument("--log", default="tensorboard", metavar="FORMATS",
                   help="where scalars go, comma-separated: tensorboard, csv (OUT/progress.csv), "
                        "jsonl (OUT/progress.jsonl), stdout, wandb (Weights & Biases, the [wandb] extra; "
                        "WANDB_MODE=offline logs locally) (default tensorboard)")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (default: on a terminal; otherwise one line per task)")
    r.set_defaults(func=cmd_run)
