"""Gaussian mixtures, exact and perturbed by N(0, sigma^2 I), and the paper's toy mixture."""

from __future__ import annotations

from typing import Sequence

import torch

from scorekit import rng
from scorekit.targets.gaussian import Gaussian, SigmaLike, as_float64, flat, sigma_sq


class GaussianMixture:
    """``sum_k w_k N(mean_k, cov_k)``; ``log_prob``/``score`` take ``sigma`` for the
    perturbed mixture ``sum_k w_k N(mean_k, cov_k + sigma^2 I)``.

    ``covs`` is ``[K, D, D]`` covariances, or ``stds``: one standard deviation per
    component (``[K]``) or one for all (a float), for isotropic components.
    """

    def __init__(
        self,
        weights: Sequence[float] | torch.Tensor,
        means: Sequence[Sequence[float]] | torch.Tensor,
        covs: torch.Tensor | Sequence | None = None,
        *,
        stds: float | Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        w = as_float64(weights, "weights").reshape(-1)
        m = as_float64(means, "means")
        if m.ndim != 2 or m.shape[0] != w.numel():
            raise ValueError(f"means must be [K, D] with K = {w.numel()} weights, got {tuple(m.shape)}")
        if (w < 0).any() or not torch.isclose(w.sum(), torch.tensor(1.0, dtype=torch.float64)):
            raise ValueError(f"weights must be non-negative and sum to 1, got {w.tolist()}")
        k, d = m.shape
        if (covs is None) == (stds is None):
            raise ValueError("give exactly one of covs ([K, D, D]) and stds (float or [K])")
        if covs is None:
            s = as_float64(stds, "stds").reshape(-1).expand(k)
            c = s.reshape(k, 1, 1) ** 2 * torch.eye(d, dtype=torch.float64)
        else:
            c = as_float64(covs, "covs")
        if c.shape != (k, d, d):
            raise ValueError(f"covs must be [K, D, D] = [{k}, {d}, {d}], got {tuple(c.shape)}")
        self.weights = w
        self.components = [Gaussian(m[i], c[i]) for i in range(k)]

    @property
    def dim(self) -> int:
        return self.components[0].dim

    @property
    def means(self) -> torch.Tensor:
        return torch.stack([g.mean for g in self.components])

    def _terms(self, x: torch.Tensor, sigma: SigmaLike) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-component ``log w_k + log N_k`` ``[B, K]`` and scores ``[B, K, D]``."""
        s2 = sigma_sq(sigma, x)
        parts = [g.terms(x, s2) for g in self.components]
        log_w = self.weights.to(x).log()
        log_joint = torch.stack([lp for lp, _ in parts], dim=1) + log_w
        return log_joint, torch.stack([sc for _, sc in parts], dim=1)

    def log_prob(self, x: torch.Tensor, sigma: SigmaLike = None) -> torch.Tensor:
        """``log p_sigma(x)`` per example, ``[B]``."""
        return torch.logsumexp(self._terms(flat(x, self.dim), sigma)[0], dim=1)

    def score(self, x: torch.Tensor, sigma: SigmaLike = None) -> torch.Tensor:
        """``grad log p_sigma(x)``: the components' scores weighted by their responsibilities."""
        log_joint, scores = self._terms(flat(x, self.dim), sigma)
        resp = torch.softmax(log_joint, dim=1).unsqueeze(-1)
        return (resp * scores).sum(dim=1).reshape(x.shape)

    def responsibilities(self, x: torch.Tensor, sigma: SigmaLike = None) -> torch.Tensor:
        """``p(component k | x)``, ``[B, K]``."""
        return torch.softmax(self._terms(flat(x, self.dim), sigma)[0], dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``n`` exact draws, ``[n, D]``: a component by its weight, then a draw from it."""
        dtype = dtype or torch.get_default_dtype()
        u = rng.uniform(n, torch.device("cpu"), torch.float64, generator)
        which = torch.searchsorted(self.weights.cumsum(0), u, right=True).clamp_(max=len(self.components) - 1)
        z = rng.randn_like(torch.empty(n, self.dim, dtype=torch.float64), generator)
        roots = torch.stack([g.evecs * g.evals.sqrt() for g in self.components])  # [K, D, D]
        out = self.means[which] + torch.einsum("nij,nj->ni", roots[which], z)
        return out.to(dtype)


def paper_mixture() -> GaussianMixture:
    """The toy data of section 3: ``1/5 N((-5, -5), I) + 4/5 N((5, 5), I)``."""
    return GaussianMixture([0.2, 0.8], [[-5.0, -5.0], [5.0, 5.0]], stds=1.0)
