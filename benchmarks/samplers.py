"""Sampler overhead: time per sampler step / time of one bare network forward.

A small conv net (4 conv layers, 64 channels, ELU) on 32x32x3 data, batch 16, on CPU.
HMC (unadjusted, as the net has no energy) is informational, per score call.
Each round times the bare forward and every sampler back to back (in a rotating
order); the ratio is taken within a round and the median over rounds is reported,
because a shared machine is noisy. Goal: <= 1.05 for the Langevin family (the update,
the noise draw and the divergence check cost nothing next to the network).

    python benchmarks/samplers.py [--rounds 30] [--steps 6] [--threads 1]

Many short rounds (a few network calls each) rather than a few long ones, and one
thread by default: on a shared 2-core machine a second OpenMP thread makes every
timing hostage to the neighbours.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from scorekit.samplers import HMC, AnnealedLangevin, Langevin
from scorekit.score import ScoreFunction

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SmallConvNet  # noqa: E402


class Free(nn.Module):
    """A network that costs nothing: returns a fixed tensor (measures the sampler's own work)."""

    def __init__(self, like: torch.Tensor) -> None:
        super().__init__()
        self.out = torch.zeros_like(like)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return self.out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=6, help="network calls per timing")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = SmallConvNet().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    score = ScoreFunction(net)
    x = torch.rand(args.batch, 3, 32, 32)
    n = args.steps
    levels = 2
    sigmas = torch.logspace(0, -2, levels)
    g = torch.Generator().manual_seed(0)
    sigma = torch.full((args.batch,), 0.01)
    leapfrog = 3

    def forward() -> None:
        with torch.no_grad():
            for _ in range(n):
                net(x, sigma)

    def samplers(fn: ScoreFunction, steps: int) -> dict[str, Callable[[], float]]:
        """name -> a function that runs the sampler and returns seconds per step."""
        transitions = max(1, steps // leapfrog)
        return {
            "langevin": lambda: timed(lambda: Langevin(n_steps=steps)(fn, x, sigmas=sigmas, generator=g)) / steps,
            "langevin + callback": lambda: timed(
                lambda: Langevin(n_steps=steps)(fn, x, sigmas=sigmas, generator=g, callback=lambda info: None)
            ) / steps,
            "annealed_langevin": lambda: timed(
                lambda: AnnealedLangevin(steps_per_level=steps // levels)(fn, x, sigmas=sigmas, generator=g)
            ) / (levels * (steps // levels)),
            # unadjusted (the net has no energy): per score call, i.e. per leapfrog step plus the
            # one call at the start of a run
            "hmc (per score call)": lambda: timed(
                lambda: HMC(metropolis=False, n_warmup=0, n_steps=transitions, n_leapfrog=leapfrog, step_size=1e-3)(
                    fn, x, sigmas=sigmas, generator=g)
            ) / (transitions * leapfrog + 1),
        }

    per_step = samplers(score, n)
    # the sampler's own cost per step, with a network that costs nothing: far less noisy than
    # a difference of two noisy timings, and it gives the ratio as 1 + overhead / forward
    free = samplers(ScoreFunction(Free(x)), 200)
    overhead = {name: statistics.median(run() for _ in range(7)) for name, run in free.items()}
    forward()  # warm-up (allocator, oneDNN kernels)
    for run in per_step.values():
        run()

    ratios: dict[str, list[float]] = {name: [] for name in per_step}
    forwards: list[float] = []
    names = list(per_step)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        f_before = timed(forward) / n
        times = {name: per_step[name]() for name in order}
        f_after = timed(forward) / n
        f = (f_before + f_after) / 2
        forwards.append(f)
        for name, t in times.items():
            ratios[name].append(t / f)

    print(f"command: {' '.join([sys.executable.rsplit('/', 1)[-1], 'benchmarks/samplers.py'] + (argv or sys.argv[1:]))}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}x3x32x32, "
          f"conv net 4x64 ch, {args.rounds} rounds x {n} steps; bare forward median "
          f"{statistics.median(forwards) * 1e3:.2f} ms\n")

    f = statistics.median(forwards)
    print("| sampler | step / forward (median) | min | max | own work per step | 1 + own work / forward |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, rs in ratios.items():
        print(f"| {name} | {statistics.median(rs):.3f} | {min(rs):.3f} | {max(rs):.3f} "
              f"| {overhead[name] * 1e6:.0f} us | {1 + overhead[name] / f:.4f} |")


if __name__ == "__main__":
    main()
