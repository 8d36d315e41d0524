"""Pieces shared by the estimators: noise-level draws, perturbation and weightings."""

from __future__ import annotations

from typing import Callable

import torch

from scorekit.errors import CompositionError
from scorekit.rng import randint, randn_like
from scorekit.score import append_dims

#: lambda(sigma) of Eq. 6, by option value
WEIGHTINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigma2": lambda sigma: sigma.pow(2),
    "none": torch.ones_like,
}


def require_sigmas(name: str, sigmas: torch.Tensor | None) -> torch.Tensor:
    """Estimators that perturb data need noise levels."""
    if sigmas is None:
        raise CompositionError(
            f"estimator {name!r} needs noise levels: compose with sigmas=scorekit.geometric_sigmas(...) "
            "(or use estimator='ssm' / 'exact', which also work unconditionally with sigmas=None)"
        )
    return sigmas


def draw_sigmas(sigmas: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One level per example, uniform over the levels: a ``[B]`` tensor in ``x``'s dtype and device."""
    idx = randint(sigmas.numel(), x.shape[0], sigmas.device, generator)
    return sigmas[idx].to(device=x.device, dtype=x.dtype)


def perturb(
    x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw sigma per example and noise ``z``; return ``(x + sigma z, sigma, z)``."""
    sigma = draw_sigmas(sigmas, x, generator)
    z = randn_like(x, generator)
    return x + append_dims(sigma, x.ndim) * z, sigma, z
