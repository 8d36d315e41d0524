"""Analytic networks and data with known answers, the ground truth of the contract checks."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from scorekit.score import append_dims


class LinearScore(nn.Module):
    """A learnable linear score on flattened examples: ``s(x, sigma_k) = A_k x + b_k``.

    With ``levels`` (the composition's sigmas) each noise level has its own ``(A_k, b_k)``,
    chosen by the nearest level in log scale, so the exact score of a Gaussian perturbed at
    any level, ``-(Sigma + sigma_k^2 I)^-1 (x - mu)``, is representable; without, one pair
    serves every call. Every score-matching loss of a Gaussian is a convex quadratic in
    the parameters, so a correct estimator's loss goes down when they are trained on it.
    """

    def __init__(self, dim: int, *, levels: Sequence[float] | None = None, init_scale: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        n = 1 if levels is None else len(levels)
        noise = torch.randn(n, dim, dim, generator=generator) * init_scale / dim**0.5
        self.A = nn.Parameter(-init_scale * torch.eye(dim) + noise)
        self.b = nn.Parameter(torch.zeros(n, dim))
        log_levels = torch.zeros(1) if levels is None else torch.tensor([math.log(s) for s in levels])
        self.register_buffer("log_levels", log_levels, persistent=False)
        self.conditional = levels is not None

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        if self.conditional and sigma is not None:
            k = (sigma.log().unsqueeze(1) - self.log_levels.to(sigma)).abs().argmin(dim=1)
        else:
            k = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        flat = torch.einsum("bij,bj->bi", self.A[k], x.flatten(1)) + self.b[k]
        return flat.reshape(x.shape)


class StandardGaussianScore(nn.Module):
    """The exact score of N(0, I) data perturbed by N(0, sigma^2 I): ``-x / (1 + sigma^2)``.

    ``sigma=None`` gives the score of N(0, I) itself. ``energy`` is the matching
    potential ``||x||^2 / (2 (1 + sigma^2))``, so Metropolis-adjusted samplers work too.
    """

    def _variance(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor | float:
        return 1.0 if sigma is None else append_dims(1.0 + sigma.to(x.dtype) ** 2, x.ndim)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return -x / self._variance(x, sigma)

    def energy(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return (0.5 * x.pow(2) / self._variance(x, sigma)).flatten(1).sum(1)


class CorrelatedGaussian:
    """N(mu, Sigma) in ``dim`` dimensions with a non-diagonal covariance ``Sigma = L L^T``, and its exact
    score after perturbation by N(0, sigma^2 I): ``-(Sigma + sigma^2 I)^-1 (x - mu)``."""

    def __init__(self, dim: int) -> None:
        self.mean = torch.linspace(-1.0, 1.0, dim)
        self.chol = torch.diag(torch.linspace(0.6, 1.4, dim)) + 0.3 * torch.diag(torch.ones(dim - 1), -1)

    def sample(self, n: int, generator: torch.Generator, sigma: float = 0.0) -> torch.Tensor:
        """``n`` draws, perturbed by N(0, sigma^2 I)."""
        z = torch.randn(n, self.mean.numel(), generator=generator)
        x = self.mean + z @ self.chol.T
        return x + sigma * torch.randn(x.shape, generator=generator) if sigma else x

    def score(self, x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """The exact score of the data perturbed by N(0, sigma^2 I), at ``x`` ([B, dim])."""
        cov = self.chol @ self.chol.T + sigma**2 * torch.eye(self.mean.numel())
        return -torch.linalg.solve(cov, (x - self.mean).T).T
