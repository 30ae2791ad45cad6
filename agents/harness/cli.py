"""The ``cl-env`` command line: ``run``, ``compare``, ``list``, ``distill``, ``pretrain-srm``, thin fronts over the library."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from agents.harness import datacmd

# re-exported: tests, benchmarks and scripts import them from here
from agents.harness.cliargs import DIVERGED_EXIT, parse_assignments, parse_seeds  # noqa: F401

ENVIRONMENT_EXIT = 74  # the machine failed a write or read (disk full, quota, file-size limit, I/O error): EX_IOERR
# operating-system errors that are the machine's, not a path the user can fix
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.ENOMEM, errno.EMFILE,
                      errno.ENFILE, errno.ENOLCK}
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space there or write elsewhere (--out)",
    errno.EDQUOT: "the disk quota is used up: free space there or write elsewhere (--out)",
    errno.EFBIG: "the file outgrew a file-size limit (ulimit -f) or the filesystem's",
    errno.EIO: "an I/O error of the device: check the disk",
    errno.EROFS: "the filesystem is read-only: choose a writable directory",
    errno.EACCES: "permission denied: choose a directory you can write",
    errno.EPERM: "not permitted: choose a directory you can write",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "a file is in the way where a directory is needed",
    errno.EISDIR: "it is a directory where a file is needed",
    errno.ENAMETOOLONG: "the name is too long for the filesystem: choose a shorter path",
    errno.ENOENT: "no such file or directory: create the directory first or fix the path",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an operating-system error: the path(s), the cause and what to do."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None) or "a file"
    cause = exc.strerror or str(exc) or type(exc).__name__
    hint = _OS_HINTS.get(exc.errno)
    return f"{paths}: {cause}" + (f" ({hint})" if hint and hint.split(":")[0].lower() != cause.lower() else "")


def os_error_exit(exc: OSError) -> int:
    """Print :func:`describe_os_error` on stderr; the exit code: :data:`ENVIRONMENT_EXIT` for the
    machine's failures (disk full, quota, file-size limit, I/O), 2 for a path the user can fix."""
    print(f"error: {describe_os_error(exc)}", file=sys.stderr)
    return ENVIRONMENT_EXIT if exc.errno in ENVIRONMENT_ERRNOS else 2


def _check_options(args: argparse.Namespace, positive: tuple = (), counts: tuple = ()) -> None:
    """Numeric options of a subcommand: one clear error naming the option (exit code 2)."""
    from cl_env import checks

    for name in positive:
        checks.number(f"--{name.replace('_', '-')}", getattr(args, name), 0.0, strict_minimum=True)
    for name in counts:
        checks.integer(f"--{name.replace('_', '-')}", getattr(args, name), 1)
    if hasattr(args, "seed"):
        checks.integer("--seed", args.seed, 0, 2**32 - 1, fix="--seed 0")
    if hasattr(args, "device"):
        checks.device("--device", args.device)


def _run_seeds(args: argparse.Namespace) -> int:
    """``cl-env run ... --seeds 0-4``: the seeds of one configuration as a sweep's cells (trained
    together where they stack, else one process per seed, threads shared out), results under OUT
    exactly as separate runs write them."""
    from agents.harness.sweep import sweep
    from cl_env.error import CLEnvError

    try:
        seeds = parse_seeds(args.seeds)
        if args.seed != 0:
            raise ValueError("--seed and --seeds exclude each other: pass the seeds as --seeds 0-4")
        if args.out is None:
            raise ValueError("--seeds needs --out DIR (each seed's run is written under it)")
        if args.resume or args.overwrite:
            raise ValueError("--seeds resumes unfinished seeds by itself and never overwrites finished ones; "
                             "drop --resume/--overwrite (or use another --out)")
        cfg = {"out": args.out, "envs": [args.env_id], "agents": [args.agent], "memories": [args.memory],
               "budgets": [args.budget], "items": [args.items], "preset": args.preset, "seeds": seeds, "settings": [parse_assignments(args.set, "--set")],
               "stream": parse_assignments(args.stream, "--stream"), "batch_size": args.batch_size,
               "device": args.device, "stack_seeds": not args.no_stack,
               **({"checkpoint_every": args.checkpoint_every} if args.checkpoint_every else {})}
        records = sweep(cfg, isolate=False)  # one group of seeds: in this process
    except (CLEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from agents.harness import results

    runs, _ = results.find_results([args.out])
    scores = [r.data.get("retained_accuracy") for r in runs if r.seed in seeds and r.data.get("status") == "completed"]
    scores = [s for s in scores if s is not None]
    if scores:
        import statistics

        spread = f" ± {statistics.stdev(scores):.4f}" if len(scores) > 1 else ""
        print(f"retained accuracy over {len(scores)} seed(s): {statistics.mean(scores):.4f}{spread} "
              f"(cl-env compare {args.out} for every metric)")
    failed = [r for r in records if r["status"] == "failed"]
    diverged = [r for r in records if r["status"] == "diverged"]
    return 1 if failed else (DIVERGED_EXIT if diverged else 0)


def cmd_run(args: argparse.Namespace) -> int:
    if getattr(args, "seeds", None) is not None:
        return _run_seeds(args)
    import torch

    from agents.harness.runner import run
    from cl_env.error import CLEnvError

    torch.manual_seed(args.seed)  # only the CLI seeds globals; the library passes generators
    import warnings

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
        print(f"wrote {Path(args.out) / 'result.json'} and TensorBoard events "
              f"(tensorboard --logdir {args.out})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from agents.harness import results

    runs, skipped = results.find_results(args.dirs)
    for note in skipped:
        print(f"skipped: {note}", file=sys.stderr)
    if not runs:
        print(f"error: no readable result.json found under {args.dirs}", file=sys.stderr)
        return 2
    tables = results.comparison_tables(runs)
    if args.format == "csv":
        sys.stdout.write(results.to_csv(tables))
    elif args.format == "json":
        sys.stdout.write(results.to_json(tables, results.group_runs(runs), skipped))
    else:
        sys.stdout.write(results.to_markdown(tables))
    if args.csv:
        results.write_text_atomic(args.csv, results.to_csv(tables))
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.plot:
        import io

        import matplotlib.pyplot as plt

        from agents.harness.report import retention_vs_storage

        fig, buf = retention_vs_storage(runs), io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        results.write_bytes_atomic(args.plot, buf.getvalue())  # never half a PNG
        print(f"wrote {args.plot} (retained accuracy against incremental storage)", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import cl_env
    from agents.presets import format_presets
    from agents.registry import agent_class, agent_entry, agent_names
    from memory import memory_names

    if getattr(args, "what", None) == "presets":
        sys.stdout.write(format_presets())
        return 0
    print("Environments:")
    for env_id, spec in cl_env.STREAMS.items():
        print(f"  {env_id:24s} {spec.description}")
    print("\nAgents (memories it accepts; settings with defaults; plugins from installed packages too):")
    for name in agent_names():
        entry = agent_entry(name)
        mems = ", ".join(entry.memories) or "none"
        sets = ", ".join(f"{k}={v}" for k, v in agent_class(name).all_settings().items())
        print(f"  {name:8s} {entry.description}\n           memories: {mems}; settings: {sets}")
    print("\nMemories:")
    for name, path in memory_names().items():
        print(f"  {name:12s} {path}")
    print("\nPresets: cl-env list presets")
    return 0


def cmd_pretrain_srm(args: argparse.Namespace) -> int:
    """Pretrain SRM's discrete VAE on one stream's training images, for transfer to another."""
    import torch

    import cl_env
    from agents.base import StreamInfo
    from cl_env import checks
    from cl_env.error import CLEnvError
    from memory.nets import DiscreteVAE
    from memory.srm import latent_for_budget, pretrain_vae, save_vae

    torch.manual_seed(args.seed)
    try:
        _check_options(args, positive=("budget",), counts=("items", "epochs"))
        if args.c is not None:
            checks.integer("--c", args.c, 1, fix="--c 200")
        checks.integer("--l", args.l, 2, fix="--l 4")
        source = cl_env.make_stream(args.env_id, **parse_assignments(args.stream, "--stream"))
        if args.c is None:
            target = cl_env.make_stream(args.for_env) if args.for_env else source
            spec = StreamInfo.from_stream(target).memory_spec("cpu")
            c = latent_for_budget(args.budget, spec, args.items, args.l, args.policy)
        else:
            c = args.c
        vae = DiscreteVAE(source.image_shape, c, args.l)
    except (CLEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    px, _, index, _ = source.pools()
    history = pretrain_vae(vae, px[index], epochs=args.epochs, seed=args.seed)
    save_vae(vae, args.out)
    print(f"pretrained a discrete VAE (c={c}, l={args.l}) on {len(index)} images of {args.env_id}: "
          f"loss per epoch {[round(h, 4) for h in history]}; wrote {args.out}\n"
          f"use it with: --memory srm --set memory.vae_path={args.out!r}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    """Distil a dataset into addressable memories and measure them (Remember the Past, Table 1)."""
    import torch

    from agents.harness.distill import distill_source
    from cl_env.error import CLEnvError

    torch.manual_seed(args.seed)
    try:
        _check_options(args, positive=("ipc", "inner_lr"), counts=("bases", "ds", "iterations", "inner_steps",
                                                                  "repeats", "eval_epochs"))
        r = distill_source(args.source, ipc=args.ipc, n_bases=args.bases, ds=args.ds, model=args.model,
                           iterations=args.iterations, inner_steps=args.inner_steps, inner_lr=args.inner_lr,
                           repeats=args.repeats, eval_epochs=args.eval_epochs, seed=args.seed,
                           root=args.root, device=args.device, out=args.out)
    except (CLEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m, s = r["distilled_accuracy"]
    print(f"{args.source}, {args.ipc} image(s) per class of storage ({r['storage_bits']} bits; "
          f"{args.bases} bases + {r['rows_per_class']} addressing rows per class): "
          f"distilled {100 * m:.2f} ± {100 * s:.2f} %", end="")
    for key in ("random_same_count", "random_same_bits"):
        if key in r:
            bm, bs = r[key]["accuracy"]
            print(f"; {r[key]['per_class']} random real per class {100 * bm:.2f} ± {100 * bs:.2f} %", end="")
    print(f" ({r['wall_time_s']:.0f} s)")
    if args.out:
        print(f"wrote {Path(args.out) / 'distill.json'}, memories.pt and TensorBoard events")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run a grid of cells from a YAML/TOML config on local processes or Ray."""
    from agents.harness.sweep import expand, load_config, sweep
    from cl_env.error import CLEnvError

    try:
        cfg = load_config(args.config)
        if args.out:
            cfg["out"] = args.out
        if args.storage:
            cfg["storage"] = args.storage
        if args.dry_run:
            cells, skipped = expand(cfg)
            for note in skipped:
                print(f"skipped: {note}")
            root = Path(cfg.get("out", "runs/sweep"))
            for c in cells:
                print(f"{c.describe()} -> {c.directory(root)} ({c.config_hash()})")
            print(f"{len(cells)} cells")
            return 0
        records = sweep(cfg, workers=args.workers, backend=args.backend, address=args.address)
    except (CLEnvError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in records if r["status"] == "failed"]
    diverged = [r for r in records if r["status"] == "diverged"]
    print(f"ran {len(records)} cells ({len(failed)} failed, {len(diverged)} diverged); compare with: "
          f"cl-env compare {cfg.get('out', 'runs/sweep')}")
    return 1 if failed else (DIVERGED_EXIT if diverged else 0)


def cmd_report(args: argparse.Namespace) -> int:
    """A self-contained HTML report of a run or sweep directory."""
    from agents.harness.report import build_report

    try:
        path = build_report(args.dir, args.out)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cl-env")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def _names(kind: str) -> str:
    """The registered names, for help texts (computed when the parser is built)."""
    from agents.registry import agent_names
    from memory import memory_names

    return ", ".join(agent_names() if kind == "agent" else memory_names())


def _assignments(parser: argparse.ArgumentParser, flag: str, dest: str, help: str) -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]``, repeatable; values without ``=`` are given back to the
    positional argument by :func:`_restore_positional` (so ``--set lr=0.05 ENV`` works)."""
    parser.add_argument(flag, dest=dest, action="extend", nargs="+", metavar="KEY=VALUE", default=None, help=help)


def _restore_positional(parser: argparse.ArgumentParser, args: argparse.Namespace, positional: str,
                        flags: dict[str, str]) -> None:
    """Give the positional back the word a ``--set``-style option took (``--set lr=0.05 ENV``)."""
    if getattr(args, positional) is None:
        taken = [(dest, v) for dest in flags for v in (getattr(args, dest) or []) if "=" not in v]
        if len(taken) == 1:  # exactly one word that is not KEY=VALUE: the positional
            dest, word = taken[0]
            rest = [v for v in getattr(args, dest) if v != word]
            setattr(args, dest, rest or None)
            setattr(args, positional, word)
    # any other word without "=" is reported by parse_assignments, in one line
    if getattr(args, positional) is None:
        parser.error(f"the following arguments are required: {positional}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cl-env", description="Continual-learning benchmarks")
    p.add_argument("--version", action="version", version=f"cl-env {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

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
                        "for online, er, ewc, lwf, agem on MLPs, else one process per seed")
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

    c = sub.add_parser("compare", help="table of results, runs grouped by configuration (seeds aggregated)")
    c.add_argument("dirs", nargs="+", help="run or sweep directories (every result.json under them)")
    c.add_argument("--format", default="markdown", choices=["markdown", "csv", "json"],
                   help="markdown (mean ± std text), csv (numeric mean/std/n columns) or json")
    c.add_argument("--csv", default=None, help="also write the CSV to this file")
    c.add_argument("--plot", default=None, help="write a retention-vs-storage plot (PNG) here")
    c.set_defaults(func=cmd_compare)

    ls = sub.add_parser("list", help="registered envs, agents and memories; `list presets`: the presets")
    ls.add_argument("what", nargs="?", choices=["presets"], help="presets: every preset with its source")
    ls.set_defaults(func=cmd_list)
    datacmd.add_parser(sub)

    rp = sub.add_parser("report", help="self-contained HTML report of a run or sweep directory")
    rp.add_argument("dir")
    rp.add_argument("--out", default=None, help="the HTML file (default: DIR/report.html)")
    rp.set_defaults(func=cmd_report)

    from agents.harness import sweep as sweep_module

    sw = sub.add_parser("sweep", help="a grid of runs from a YAML/TOML config (local processes or Ray)",
                        description=sweep_module.__doc__.replace("``", "`"),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("config", help=f"a .yaml/.yml/.toml file with the keys {', '.join(sorted(sweep_module.KEYS))}")
    sw.add_argument("--workers", type=int, default=None,
                    help="processes (default: the cores of this process's affinity / OMP_NUM_THREADS)")
    sw.add_argument("--backend", default="local", choices=["local", "ray"])
    sw.add_argument("--address", default=None, help="Ray cluster address (ray.init(address=...))")
    sw.add_argument("--out", default=None, help="override the config's out directory")
    sw.add_argument("--storage", default=None,
                    help="Ray: where cells' checkpoints go, a path or fsspec URI every node can reach "
                         "(overrides the config's storage; default OUT/.storage)")
    sw.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    sw.set_defaults(func=cmd_sweep)

    from agents.harness.frontier_cli import add_frontier_parser

    add_frontier_parser(sub)

    d = sub.add_parser("distill", help="distil a dataset into addressable memories (Remember the Past)")
    d.add_argument("source", help="a data source: mnist5k, mnist, fashion_mnist, cifar10, cifar100, svhn")
    d.add_argument("--ipc", type=float, default=1, help="storage budget in float images per class (eq. 4)")
    d.add_argument("--bases", type=int, default=16)
    d.add_argument("--ds", type=int, default=2, help="bases stored at 1/ds resolution")
    d.add_argument("--model", default="mlp", help="inner and evaluation model (paper: convnet, on a GPU)")
    d.add_argument("--iterations", type=int, default=300, help="outer iterations (paper: 50,000)")
    d.add_argument("--inner-steps", type=int, default=30, help="unrolled SGD steps (paper: 150)")
    d.add_argument("--inner-lr", type=float, default=0.1, help="inner SGD lr (paper, ConvNet: 0.01)")
    d.add_argument("--repeats", type=int, default=5, help="fresh models per evaluation")
    d.add_argument("--eval-epochs", type=int, default=300)
    d.add_argument("--root", default=None)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="cpu")
    d.add_argument("--out", default=None)
    d.set_defaults(func=cmd_distill)

    pre = sub.add_parser("pretrain-srm", help="pretrain SRM's autoencoder on a stream (transfer)")
    pre.add_argument("env_id", nargs="?", help="the stream whose training images it learns")
    pre.add_argument("--out", required=True, help="file to write (then --set memory.vae_path=FILE)")
    pre.add_argument("--c", type=int, default=None, help="variables (default: from --budget)")
    pre.add_argument("--l", type=int, default=4, help="categories per variable")
    pre.add_argument("--budget", type=float, default=100, help="size c for this budget (eq. 4)")
    pre.add_argument("--items", type=int, default=3000)
    pre.add_argument("--policy", default="reservoir", choices=["reservoir", "task_ring"])
    pre.add_argument("--for-env", default=None, help="the stream the memory will serve (sizes c)")
    _assignments(pre, "--stream", "stream", "stream options of ENV_ID (repeatable)")
    pre.add_argument("--epochs", type=int, default=1)
    pre.add_argument("--seed", type=int, default=0)
    pre.set_defaults(func=cmd_pretrain_srm)
    return p


def main(argv: list[str] | None = None) -> int:
    from cl_env.error import CLEnvError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        _restore_positional(parser, args, "env_id", {"set": "--set", "stream": "--stream"})
    elif args.command == "pretrain-srm":
        _restore_positional(parser, args, "env_id", {"stream": "--stream"})
    try:
        return args.func(args)
    except BrokenPipeError:  # `cl-env compare runs | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except CLEnvError as exc:  # a user error raised where no subcommand caught it: still one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be written or read, a full disk: one line, no traceback
        return os_error_exit(exc)
    except KeyboardInterrupt:
        print("interrupted (a run's last checkpoint is kept: continue it with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
