"""Pieces shared by the estimators: noise-level draws, perturbation and weightings."""

from __future__ import annotations

import math
from typing import Callable

import torch

from scorekit.errors import CompositionError
from scorekit.rng import categorical, randint, randn_like
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


def log_normal_level_probs(sigmas: torch.Tensor, *, median: float, std: float, uniform: float) -> torch.Tensor:
    """Probabilities of drawing each level: a log-normal bump in sigma mixed with the uniform draw.

    ``p_i = uniform / L + (1 - uniform) * w_i / sum(w)`` with ``w_i = exp(-(ln sigma_i - ln median)^2
    / (2 std^2))``: Karras et al. (2022)'s log-normal training distribution of sigma, restricted to
    the composition's levels, with a uniform share so that every level keeps being trained.
    """
    log_sigma = sigmas.detach().to(torch.float64).log()
    # a softmax of the log-density: the nearest level keeps weight 1 however far the median lies
    bump = torch.softmax(-((log_sigma - math.log(median)) ** 2) / (2.0 * std**2), dim=0)
    return uniform / sigmas.numel() + (1.0 - uniform) * bump


def draw_sigmas(
    sigmas: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None, probs: torch.Tensor | None = None
) -> torch.Tensor:
    """One level per example, uniform over the levels or with probabilities ``probs``: a ``[B]``
    tensor in ``x``'s dtype and device."""
    if probs is None:
        idx = randint(sigmas.numel(), x.shape[0], sigmas.device, generator)
    else:
        idx = categorical(probs, x.shape[0], sigmas.device, generator)
    return sigmas[idx].to(device=x.device, dtype=x.dtype)


def perturb(
    x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None, probs: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw sigma per example (see :func:`draw_sigmas`) and noise ``z``; return ``(x + sigma z, sigma, z)``."""
    sigma = draw_sigmas(sigmas, x, generator, probs)
    z = randn_like(x, generator)
    return x + append_dims(sigma, x.ndim) * z, sigma, z
