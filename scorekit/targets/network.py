"""Score networks with known answers: analytic targets as networks, so samplers run on ground-truth
scores, the exact score of N(0, I) for any data shape, and a learnable linear score whose family holds
every Gaussian's exact score (and whose Jacobian is its matrix)."""

from __future__ import annotations

import math
from typing import Protocol, Sequence

import torch
from torch import nn

from scorekit.score import append_dims


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


class StandardGaussianScore(nn.Module):
    """The exact score of N(0, I) data perturbed by N(0, sigma^2 I): ``-x / (1 + sigma^2)``, for data
    of any shape (``sigma=None``: the score of N(0, I) itself, ``-x``). ``energy`` is the matching
    potential ``||x||^2 / (2 (1 + sigma^2))`` (``[B]``), so Metropolis-adjusted samplers work too."""

    def _variance(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor | float:
        return 1.0 if sigma is None else append_dims(1.0 + sigma.to(x.dtype) ** 2, x.ndim)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return -x / self._variance(x, sigma)

    def energy(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return (0.5 * x.pow(2) / self._variance(x, sigma)).flatten(1).sum(1)


class LinearScore(nn.Module):
    """A learnable linear score on flattened examples: ``s(x, sigma_k) = A_k x + b_k``.

    With ``levels`` (the composition's sigmas) each noise level has its own ``(A_k, b_k)``,
    chosen by the nearest level in log scale, so the exact score of a Gaussian perturbed at
    any level, ``-(Sigma + sigma_k^2 I)^-1 (x - mu)``, is representable; without, one pair
    serves every call. Every score-matching loss of a Gaussian is a convex quadratic in
    the parameters, so a correct estimator's loss goes down when they are trained on it.

    ``A`` starts at ``-init_scale I`` plus ``init_scale / sqrt(dim)`` times standard normal noise
    drawn from ``generator``, or at ``matrix`` (``[dim, dim]``, every level) when given; ``b`` at 0.
    With ``matrix`` and no bias the score is ``s(x) = A x``, whose Jacobian is exactly ``A``.
    """

    def __init__(self, dim: int, *, levels: Sequence[float] | None = None, init_scale: float = 0.0,
                 generator: torch.Generator | None = None, matrix: torch.Tensor | None = None) -> None:
        super().__init__()
        n = 1 if levels is None else len(levels)
        if matrix is None:
            noise = torch.randn(n, dim, dim, generator=generator) * init_scale / dim**0.5
            start = -init_scale * torch.eye(dim) + noise
        else:
            if tuple(matrix.shape) != (dim, dim):
                raise ValueError(f"matrix must be [{dim}, {dim}], got {tuple(matrix.shape)}")
            start = matrix.detach().clone().expand(n, dim, dim).clone()
        self.A = nn.Parameter(start)
        self.b = nn.Parameter(torch.zeros(n, dim, dtype=start.dtype))
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
