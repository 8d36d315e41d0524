"""torch.compile of the network inside the score-matching losses: compile time, step time, what compiles.

    python benchmarks/ssm_compile.py [--rounds 5] [--threads 2] [--batch 16]

For ``dsm`` and sliced score matching in reverse (double backprop) and forward (``torch.func.jvp``) mode on the
plain conv net of ``ssm_modes.py`` (4 x 64 channels, ELU, 3 x 32 x 32): one training step (loss + backward +
Adam) eager and with the network through ``torch.compile`` (how ``train.compile`` runs it). Prints each
candidate's first call (the compilation) and the medians of interleaved steps; a candidate that cannot be
compiled is reported with torch's reason.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SmallConvNet, interleaved_medians, machine, training_step  # noqa: E402

import scorekit  # noqa: E402

SIGMAS = scorekit.geometric_sigmas(1.0, 0.01, 10)
CANDIDATES = {"dsm": ("dsm", {}), "ssm reverse k=1": ("ssm", {"jacobian_mode": "reverse"}),
              "ssm forward k=1": ("ssm", {"jacobian_mode": "forward"})}


def step_fn(estimator: str, options: dict, x: torch.Tensor, compiled: bool) -> Callable[[], None]:
    """One training step of a fresh network (the same initial weights for every candidate)."""
    torch.manual_seed(0)
    return training_step(SmallConvNet(3, 64, 4), estimator, options, x, SIGMAS, compile=compiled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"command: python benchmarks/ssm_compile.py {' '.join(sys.argv[1:])}\nmachine: {machine()}\n")
    x = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    steps = {}
    for label, (estimator, options) in CANDIDATES.items():
        for compiled in (False, True):
            name = f"{label}, {'compiled' if compiled else 'eager'}"
            step = step_fn(estimator, options, x, compiled)
            start = time.perf_counter()
            try:
                step()
            except Exception as exc:  # torch's own limits, reported rather than hidden
                print(f"{name}: cannot be compiled ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})")
                continue
            print(f"{name}: first call {time.perf_counter() - start:.1f} s")
            steps[name] = step
    print("\n| candidate | ms per step (median) |\n|---|---|")
    for name, seconds in interleaved_medians(steps, rounds=args.rounds, warmup=1).items():
        print(f"| {name} | {1000 * seconds:.1f} |")


if __name__ == "__main__":
    main()
