"""A Gaussian with full covariance, exact and perturbed by N(0, sigma^2 I).

Data are ``[B, ...]`` with ``D`` entries per example (flattened for the algebra, so
image-shaped data works too). Parameters are kept in float64; results come in the dtype
and on the device of ``x``. The covariance is diagonalised once, ``cov = Q diag(lam) Q^T``,
so the perturbed covariance ``cov + sigma^2 I = Q diag(lam + sigma^2) Q^T`` costs no
new factorisation, for any per-example sigma.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from scorekit import rng

SigmaLike = torch.Tensor | float | None


def as_float64(value: Any, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float64).detach().clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{what} must be numbers, got {value!r}") from exc


def flat(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` as ``[B, D]``; the entries of each example must number ``dim``."""
    if x.ndim < 1 or math.prod(x.shape[1:]) != dim:
        raise ValueError(f"expected examples of {dim} entries ([B, ...]), got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], dim)


def sigma_sq(sigma: SigmaLike, x: torch.Tensor) -> torch.Tensor | float:
    """sigma^2 as a float or a ``[B, 1]`` tensor for ``[B, D]`` data."""
    if sigma is None:
        return 0.0
    if isinstance(sigma, torch.Tensor):
        s = sigma.to(dtype=x.dtype, device=x.device)
        return (s * s).reshape(-1, 1) if s.ndim else float(s) ** 2
    return float(sigma) ** 2


class GaussianTerms:
    """``log N(x; mean, Q diag(lam) Q^T + s2 I)`` and its gradient, for ``[B, D]`` data."""

    def __init__(self, mean: torch.Tensor, evecs: torch.Tensor, evals: torch.Tensor) -> None:
        self.mean, self.evecs, self.evals = mean, evecs, evals

    def __call__(self, x: torch.Tensor, s2: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean.to(x)
        q = self.evecs.to(x)
        var = self.evals.to(x) + s2  # [D] or [B, D]
        c = (x - mean) @ q  # coordinates in the eigenbasis, [B, D]
        log_prob = -0.5 * ((c * c / var) + torch.log(2 * math.pi * var)).sum(dim=-1)
        score = -(c / var) @ q.T
        return log_prob, score


class Gaussian:
    """``N(mean, cov)`` in D dimensions; ``log_prob``/``score`` take ``sigma`` for the
    perturbed density ``N(mean, cov + sigma^2 I)`` (sigma: ``[B]`` tensor, float or None)."""

    def __init__(self, mean: Sequence[float] | torch.Tensor, cov: Sequence[Sequence[float]] | torch.Tensor) -> None:
        self.mean = as_float64(mean, "mean").reshape(-1)
        self.cov = as_float64(cov, "cov")
        d = self.mean.numel()
        if self.cov.shape != (d, d):
            raise ValueError(f"cov must be [{d}, {d}] for a mean of {d} entries, got {tuple(self.cov.shape)}")
        if not torch.allclose(self.cov, self.cov.T):
            raise ValueError("cov must be symmetric")
        evals, evecs = torch.linalg.eigh(self.cov)
        if not bool((evals > 0).all()):
            raise ValueError(f"cov must be positive definite, its eigenvalues are {evals.tolist()}")
        self.evals, self.evecs = evals, evecs
        self.terms = GaussianTerms(self.mean, evecs, evals)

    @property
    def dim(self) -> int:
        return self.mean.numel()

    def log_prob(self, x: torch.Tensor, sigma: SigmaLike = None) -> torch.Tensor:
        """``log p_sigma(x)`` per example, ``[B]``."""
        xf = flat(x, self.dim)
        return self.terms(xf, sigma_sq(sigma, xf))[0]

    def score(self, x: torch.Tensor, sigma: SigmaLike = None) -> torch.Tensor:
        """``grad_x log p_sigma(x) = -(cov + sigma^2 I)^-1 (x - mean)``, shaped like ``x``."""
        xf = flat(x, self.dim)
        return self.terms(xf, sigma_sq(sigma, xf))[1].reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``n`` exact draws, ``[n, D]``."""
        dtype = dtype or torch.get_default_dtype()
        z = rng.randn_like(torch.empty(n, self.dim, dtype=torch.float64), generator)
        return (self.mean + (z * self.evals.sqrt()) @ self.evecs.T).to(dtype)

    def conditional(self, x: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The law of the unknown entries given the known ones (``known``: bool ``[D]``, or
        shaped like one example).

        Returns ``(mean, cov)``: ``mean`` shaped like ``x``, equal to ``x`` on known entries
        and to ``mu_u + S_uk S_kk^-1 (x_k - mu_k)`` on the others; ``cov`` is the ``[U, U]``
        conditional covariance ``S_uu - S_uk S_kk^-1 S_ku``.
        """
        xf = flat(x, self.dim).to(torch.float64)
        k = torch.as_tensor(known, dtype=torch.bool).reshape(-1)
        if k.numel() != self.dim:
            raise ValueError(f"known must have {self.dim} entries, got {k.numel()}")
        u = ~k
        s = self.cov
        gain = torch.linalg.solve(s[k][:, k], s[k][:, u]).T  # S_uk S_kk^-1, [U, K]
        mean = xf.clone()
        mean[:, u] = self.mean[u] + (xf[:, k] - self.mean[k]) @ gain.T
        cov = s[u][:, u] - gain @ s[k][:, u]
        return mean.to(x.dtype).reshape(x.shape), cov


class CorrelatedGaussian(Gaussian):
    """A fixed :class:`Gaussian` with a non-diagonal covariance in ``dim`` (>= 2) dimensions:
    ``mean = linspace(-1, 1, dim)``, ``cov = L L^T`` with ``L`` lower bidiagonal (diagonal
    ``linspace(0.6, 1.4, dim)``, sub-diagonal 0.3). The estimator contract's learning check fits it.

    ``sample`` draws through the Cholesky factor ``chol`` (``L``) in the default dtype, and takes the
    perturbation ``sigma`` as its third argument: ``n`` draws of the data perturbed by N(0, sigma^2 I).
    """

    def __init__(self, dim: int) -> None:
        chol = torch.diag(torch.linspace(0.6, 1.4, dim)) + 0.3 * torch.diag(torch.ones(dim - 1), -1)
        super().__init__(torch.linspace(-1.0, 1.0, dim), chol.double() @ chol.double().T)  # float32 values, exact
        self.chol = chol

    def sample(self, n: int, generator: torch.Generator | None = None, sigma: float = 0.0,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        """``n`` draws, ``[n, D]``, perturbed by N(0, sigma^2 I) (``sigma=0``: exact draws)."""
        z = torch.randn(n, self.dim, generator=generator)
        x = self.mean.to(z.dtype) + z @ self.chol.T
        x = x + sigma * torch.randn(x.shape, generator=generator) if sigma else x
        return x if dtype is None else x.to(dtype)
