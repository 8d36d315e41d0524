"""Pieces shared by the estimators: noise-level draws, perturbation and weightings."""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch

from scorekit.errors import CompositionError
from scorekit.rng import categorical, randint, randn_like
from scorekit.score import append_dims
from scorekit.validators import frozen, optional, positive, unit_interval

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


@frozen
class LevelDraw:
    """How a noise-conditional estimator draws each example's level: the options every estimator shares.

    ``level_median`` (default None: the paper's uniform draw) trains some levels more often
    than others: level ``i`` is drawn with probability ``level_uniform / L + (1 - level_uniform)
    * w_i / sum(w)``, ``w_i = exp(-(ln sigma_i - ln level_median)^2 / (2 level_std^2))``
    (:func:`log_normal_level_probs`; Karras et al. 2022 train on a log-normal sigma with std
    1.2). The batch mean then estimates the objective with the levels weighted by these
    probabilities instead of 1/L.
    """

    level_median: float | None = attrs.field(default=None, validator=optional(positive))
    level_std: float = attrs.field(default=1.2, validator=positive)
    level_uniform: float = attrs.field(default=0.5, validator=unit_interval)

    def level_probs(self, sigmas: torch.Tensor) -> torch.Tensor | None:
        """Each level's probability of being drawn, or None for the uniform draw."""
        if self.level_median is None:
            return None
        return log_normal_level_probs(sigmas, median=self.level_median, std=self.level_std, uniform=self.level_uniform)

    def perturb(
        self, x: torch.Tensor, sigmas: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x + sigma z, sigma, z)`` with each example's sigma drawn by this rule (see :func:`perturb`)."""
        return perturb(x, sigmas, generator, self.level_probs(sigmas))


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
