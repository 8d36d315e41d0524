"""Time of one training step per estimator, as ratios to DSM, measured in one run.

    python benchmarks/estimators.py [--rounds 7] [--batch 64]

Goal (issue 3): forward-mode ``ssm`` at most 2.5x ``dsm``, and faster than reverse mode
(double backprop, the original SSM implementation) on the conv net. A training step is
loss + backward + Adam step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SmallConvNet, interleaved_medians, machine, training_step  # noqa: E402

import scorekit  # noqa: E402
import scorekit.networks.mlp  # noqa: E402

CANDIDATES = {
    "dsm": ("dsm", {}),
    "ssm forward": ("ssm", {"jacobian_mode": "forward"}),
    "ssm reverse": ("ssm", {"jacobian_mode": "reverse"}),
    "ssm finite diff.": ("ssm", {"jacobian_mode": "finite_difference"}),
    "exact": ("exact", {"chunk_size": 128}),
}


def bench(label: str, make_net, x: torch.Tensor, rounds: int) -> list[str]:
    dim = x[0].numel()
    fns = {}
    for name, (est, opts) in CANDIDATES.items():
        if est == "exact" and dim > 1024:
            continue
        torch.manual_seed(0)
        fns[name] = training_step(make_net(), est, opts, x, scorekit.geometric_sigmas(1.0, 0.01, 10))
    med = interleaved_medians(fns, rounds=rounds)
    base = med["dsm"]
    cells = [f"{med[n] / base:.2f}" if n in med else "refused (D > max_dim)" for n in CANDIDATES]
    return [f"| {label} | {dim} | {base * 1e3:.1f} | " + " | ".join(cells) + " |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.manual_seed(0)
    b = args.batch
    rows = ["| network | D | dsm step (ms) | " + " | ".join(f"{n} / dsm" for n in CANDIDATES) + " |",
            "|---|---|---|" + "---|" * len(CANDIDATES)]
    for d in (2, 64, 784):
        rows += bench(f"mlp (128 hidden, softplus), batch {b}", lambda d=d: scorekit.networks.mlp.MLP(dim=d, sigmas=[1.0]),
                      torch.randn(b, d), args.rounds)
    rows += bench(f"conv net (4 x 64 ch, ELU), 3x32x32, batch {b // 4}", SmallConvNet,
                  torch.rand(b // 4, 3, 32, 32), args.rounds)
    print(f"machine: {machine()}")
    print("command: python benchmarks/estimators.py " + " ".join(sys.argv[1:]))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
