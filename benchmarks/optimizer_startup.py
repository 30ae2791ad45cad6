"""What ``PlainSGD`` saves against ``torch.optim.SGD`` in whole ``cl-env run`` processes.

``torch.optim.SGD``'s first ``add_param_group`` imports ``torch._dynamo`` (its
``torch._disable_dynamo`` wrappers); ``PlainSGD`` (a ``torch.optim.Optimizer`` with the same
update) does not. This times ``cl-env run ENV --agent A`` as fresh processes, alternating the
built-in agent (``PlainSGD``) and the same agent with ``make_optimizer`` returning
``torch.optim.SGD(lr)`` (a plugin class written to a temporary directory), and prints medians.
Agents whose learners use ``torch.func`` (GEM, A-GEM, EWC) import ``torch._dynamo`` anyway and
save nothing.

Usage:
    python benchmarks/optimizer_startup.py [--agents online er lwf] [--repeats 5] [--env MNISTRotations-v0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PLUGIN = textwrap.dedent('''
    import torch
    from agents.registry import agent_class


    def _with_sgd(name):
        base = agent_class(name)
        return type(f"{base.__name__}TorchSGD", (base,), {
            "MEMORIES": () if name in ("online", "lwf") else ("reservoir",),
            "make_optimizer": lambda self: torch.optim.SGD(self.model.parameters(), lr=self.settings["lr"]),
        })


    online, er, lwf = _with_sgd("online"), _with_sgd("er"), _with_sgd("lwf")
''')


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", nargs="+", default=["online", "er", "lwf"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--env", default="MNISTRotations-v0")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "torch_sgd_agents.py").write_text(PLUGIN)
        env = dict(os.environ, PYTHONPATH=tmp + os.pathsep + os.environ.get("PYTHONPATH", ""))
        base = [sys.executable, "-m", "agents.harness.cli", "run", args.env, "--out", str(Path(tmp, "out")),
                "--overwrite", "--log", "jsonl"]
        print(f"{args.env}, torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}, "
              f"medians of {args.repeats} fresh processes")
        print("| agent | PlainSGD (s) | torch.optim.SGD (s) | saved (s) | saved (%) |")
        print("|---|---|---|---|---|")
        for name in args.agents:
            plain, torch_sgd = [], []
            mem = ["--memory", "reservoir", "--budget", "100"] if name == "er" else []
            for _ in range(args.repeats):
                plain.append(timed([*base, "--agent", name, *mem], env))
                torch_sgd.append(timed([*base, "--agent", f"torch_sgd_agents:{name}", *mem], env))
            p, q = statistics.median(plain), statistics.median(torch_sgd)
            print(f"| {name} | {p:.2f} | {q:.2f} | {q - p:.2f} | {100 * (q - p) / q:.0f} |", flush=True)


if __name__ == "__main__":
    main()
