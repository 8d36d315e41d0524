"""Primal and tangent through one convolution call, against two calls (issue 16, goal 3).

    python benchmarks/conv_batching.py [--rounds 11] [--threads 2]

Forward-mode sliced score matching convolves the primal maps and the tangent maps with the same weights, and its
backward runs both convolutions' backward passes. This times, at the feature-map shapes of the three networks of
``ssm_modes.py`` (batch 16), forward + backward of the two convolutions as two calls against one call on the
concatenated batch (split afterwards), medians of interleaved repetitions. A ratio below 1 would be the most that
merging the calls inside the NCSN node could save on its convolutions (``torch.func.jvp`` runs the primal
forward before the tangent, so the node cannot merge them without a transform of its own).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved_medians, machine  # noqa: E402

#: (maps shape, output channels, dilation), at the networks' widths
SHAPES = {
    "conv net / cond_resnet: 16 x 64 x 32 x 32": ((16, 64, 32, 32), 64, 1),
    "cond_resnet dilated: 16 x 64 x 32 x 32, dilation 4": ((16, 64, 32, 32), 64, 4),
    "ncsn ngf 32, stage 1: 16 x 32 x 32 x 32": ((16, 32, 32, 32), 32, 1),
    "ncsn ngf 32, stages 2-4: 16 x 64 x 16 x 16, dilation 2": ((16, 64, 16, 16), 64, 2),
}


def candidates(shape, out_channels: int, dilation: int):
    gen = torch.Generator().manual_seed(0)
    y, dy = (torch.randn(shape, generator=gen).requires_grad_() for _ in range(2))
    weight = torch.randn(out_channels, shape[1], 3, 3, generator=gen).mul_(0.05).requires_grad_()
    g, dg = (torch.randn(shape[0], out_channels, *shape[2:], generator=gen) for _ in range(2))

    def conv(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, weight, padding=dilation, dilation=dilation)

    def two_calls() -> None:
        torch.autograd.backward([conv(y), conv(dy)], [g, dg])

    def one_call() -> None:
        out, tangent = conv(torch.cat([y, dy])).chunk(2)
        torch.autograd.backward([out, tangent], [g, dg])

    return {"two calls": two_calls, "one call": one_call}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    print("command: python benchmarks/conv_batching.py " + " ".join(sys.argv[1:]))
    print("| maps | two calls (ms) | one call (ms) | one / two |")
    print("|---|---|---|---|")
    for name, (shape, out_channels, dilation) in SHAPES.items():
        med = interleaved_medians(candidates(shape, out_channels, dilation), rounds=args.rounds, warmup=2)
        print(f"| {name} | {med['two calls'] * 1e3:.1f} | {med['one call'] * 1e3:.1f} | "
              f"{med['one call'] / med['two calls']:.2f} |")


if __name__ == "__main__":
    main()
