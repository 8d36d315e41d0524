"""Analytic targets as score networks, so samplers can run on ground-truth scores."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class Target(Protocol):
    """What a target provides: exact (optionally perturbed) log density and score."""

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor: ...

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor: ...


class TargetScoreNetwork(nn.Module):
    """``network(x, sigma) = target.score(x, sigma)``: the exact score of the target
    perturbed by N(0, sigma^2 I) (``sigma=None``: unperturbed). Score only: samplers see
    no energy (as for a score network trained by score matching)."""

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return self.target.score(x, sigma)

    def extra_repr(self) -> str:
        return type(self.target).__name__


class TargetEnergyNetwork(TargetScoreNetwork):
    """:class:`TargetScoreNetwork` that also has ``energy(x, sigma) = -log p_sigma(x)``
    (``[B]``), for samplers with a Metropolis test (HMC)."""

    def energy(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return -self.target.log_prob(x, sigma)
