"""Sliced score matching's three Jacobian modes against each other and against DSM, on three image networks.

    python benchmarks/ssm_modes.py [--rounds 11] [--batch 16] [--threads 2] [--profile NETWORK]

A training step is loss + backward + Adam step at 3 x 32 x 32, one level per example. Goals (issue 16):
one projection, forward mode at most 1.0x reverse mode and 2.2x DSM; four projections, forward mode at most
0.6x reverse mode. All figures are ratios of medians of interleaved repetitions in one run (the machine is
shared). ``--profile NETWORK`` prints torch.profiler's table of the most expensive operators of one step of
each mode instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SmallConvNet, interleaved_medians, machine, training_step  # noqa: E402

import scorekit  # noqa: E402

SIGMAS = scorekit.geometric_sigmas(1.0, 0.01, 10)

#: name -> (registered network or a module factory, network options)
NETWORKS = {
    "conv net (4 x 64 ch, ELU)": (lambda: SmallConvNet(3, 64, 4), {}),
    "cond_resnet (ngf 64, 4 blocks)": ("cond_resnet", {"channels": 3, "image_size": 32, "ngf": 64, "n_blocks": 4}),
    "ncsn (ngf 32)": ("ncsn", {"channels": 3, "image_size": 32, "ngf": 32}),
}

#: name -> (estimator, options)
CANDIDATES = {
    "dsm": ("dsm", {}),
    "forward k=1": ("ssm", {"jacobian_mode": "forward"}),
    "reverse k=1": ("ssm", {"jacobian_mode": "reverse"}),
    "fd k=1": ("ssm", {"jacobian_mode": "finite_difference"}),
    "forward k=4": ("ssm", {"jacobian_mode": "forward", "n_projections": 4}),
    "reverse k=4": ("ssm", {"jacobian_mode": "reverse", "n_projections": 4}),
    "fd k=4": ("ssm", {"jacobian_mode": "finite_difference", "n_projections": 4}),
}


def step_fn(network_spec, estimator: str, options: dict, x: torch.Tensor):
    """One training step of a fresh network (the same initial weights for every candidate)."""
    torch.manual_seed(0)
    spec, net_options = network_spec
    network = spec() if callable(spec) else spec
    return training_step(network, estimator, options, x, SIGMAS, net_options if isinstance(network, str) else None)


def profile(name: str, x: torch.Tensor) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for label in ("forward k=1", "reverse k=1"):
        step = step_fn(NETWORKS[name], *CANDIDATES[label], x)
        step()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        print(f"\n### {name}, {label}\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile", choices=sorted(NETWORKS), help="profile one network instead of timing")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    if args.profile:
        profile(args.profile, x)
        return
    print(f"machine: {machine()}")
    print("command: python benchmarks/ssm_modes.py " + " ".join(sys.argv[1:]))
    print(f"batch {args.batch}, 3 x 32 x 32, medians of {args.rounds} interleaved rounds; ratios of step times\n")
    print("| network | dsm step (ms) | forward / reverse, k=1 | forward / dsm, k=1 | reverse / dsm, k=1 "
          "| fd / reverse, k=1 | forward / reverse, k=4 | fd / reverse, k=4 | forward: each extra projection / dsm |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, spec in NETWORKS.items():
        med = interleaved_medians({c: step_fn(spec, est, opts, x) for c, (est, opts) in CANDIDATES.items()},
                                  rounds=args.rounds)
        per_extra = (med["forward k=4"] - med["forward k=1"]) / 3
        print(f"| {name} | {med['dsm'] * 1e3:.0f} | {med['forward k=1'] / med['reverse k=1']:.2f} "
              f"| {med['forward k=1'] / med['dsm']:.2f} | {med['reverse k=1'] / med['dsm']:.2f} "
              f"| {med['fd k=1'] / med['reverse k=1']:.2f} | {med['forward k=4'] / med['reverse k=4']:.2f} "
              f"| {med['fd k=4'] / med['reverse k=4']:.2f} | {per_extra / med['dsm']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
