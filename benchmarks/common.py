"""Shared pieces of the benchmarks: a small conv score net, one training step and an interleaved timer.

The machine is shared and noisy, so benchmarks report ratios measured in one run, with
the candidates interleaved round by round and the median taken per candidate.
"""

from __future__ import annotations

import platform
import statistics
import time
from typing import Callable

import torch
from torch import nn


class SmallConvNet(nn.Module):
    """A plain noise-conditional conv net (4 convs, ELU, output divided by sigma)."""

    def __init__(self, channels: int = 3, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ELU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ELU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        out = self.body(x)
        return out if sigma is None else out / sigma.reshape(-1, 1, 1, 1)


def training_step(network: nn.Module | str, estimator: str, options: dict, x: torch.Tensor, sigmas: torch.Tensor,
                  network_options: dict | None = None, *, compile: bool = False) -> Callable[[], None]:
    """One training step (loss + backward + Adam step) of ``estimator`` on ``network`` with a fixed batch ``x``;
    ``compile`` runs the network through ``torch.compile``, as ``train.compile`` does."""
    import scorekit

    model = scorekit.compose(network=network, estimator=estimator, sampler=None, estimator_options=options,
                             network_options=network_options, sigmas=sigmas)
    model.materialize(x)  # any lazy layer is sized before the optimizer sees the parameters
    run = model.with_network(torch.compile(model.network)) if compile else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        run.loss(x, generator=gen).backward()
        opt.step()

    return step


def interleaved_medians(candidates: dict[str, Callable[[], object]], rounds: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each candidate, measured round-robin."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def machine() -> str:
    """One line naming the machine the figures came from."""
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
