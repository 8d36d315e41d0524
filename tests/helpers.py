"""Small analytic networks used across the tests."""

from __future__ import annotations

import torch
from torch import nn


class LinearScore(nn.Module):
    """``s(x) = A x`` applied to flattened examples (an exact Jacobian: A)."""

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return (x.flatten(1) @ self.A.T).reshape(x.shape)


class OptimalGaussianScore(nn.Module):
    """The exact score of N(0, I) data perturbed with N(0, sigma^2 I): ``-x / (1 + sigma^2)``."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
        return -x / (1 + s2) + 0 * self.dummy


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Sample mean and its standard error."""
    v = values.detach().double()
    return v.mean().item(), (v.std() / v.numel() ** 0.5).item()
