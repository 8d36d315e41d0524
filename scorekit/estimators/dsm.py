"""Denoising score matching (Vincent 2011), Eq. 5 and 6 of Song & Ermon (2019)."""

from __future__ import annotations

import attrs
import torch

from scorekit.estimators.common import WEIGHTINGS, log_normal_level_probs, perturb, require_sigmas
from scorekit.score import ScoreFunction, append_dims
from scorekit.validators import frozen, one_of, optional, positive, unit_interval


@frozen
class DenoisingScoreMatching:
    """Per-example DSM loss ``1/2 lambda(sigma) ||s(x~, sigma) + (x~ - x)/sigma^2||^2`` (Eq. 5).

    Each example draws its own level, by default uniformly from the sigmas, so that the batch
    mean is an unbiased estimate of Eq. 6. ``weighting``: ``"sigma2"`` (lambda = sigma^2, the
    paper's choice that makes every level's term O(1)) or ``"none"`` (lambda = 1).

    ``level_median`` (default None: the paper's uniform draw) trains some levels more often
    than others: level ``i`` is drawn with probability ``level_uniform / L + (1 - level_uniform)
    * w_i / sum(w)``, ``w_i = exp(-(ln sigma_i - ln level_median)^2 / (2 level_std^2))``
    (:func:`~scorekit.estimators.common.log_normal_level_probs`; Karras et al. 2022 train on a
    log-normal sigma with std 1.2). The batch mean then estimates Eq. 6 with the levels weighted
    by these probabilities instead of 1/L. Why: with lambda = sigma^2 the small-sigma terms are
    the largest (their noise is the hardest to predict) and dominate the gradient, while the
    levels that decide a sample's shape lie in between.
    """

    weighting: str = attrs.field(default="sigma2", validator=one_of(*WEIGHTINGS))
    level_median: float | None = attrs.field(default=None, validator=optional(positive))
    level_std: float = attrs.field(default=1.2, validator=positive)
    level_uniform: float = attrs.field(default=0.5, validator=unit_interval)

    def level_probs(self, sigmas: torch.Tensor) -> torch.Tensor | None:
        """Each level's probability of being drawn, or None for the uniform draw."""
        if self.level_median is None:
            return None
        return log_normal_level_probs(sigmas, median=self.level_median, std=self.level_std, uniform=self.level_uniform)

    def validate_composition(self, score: ScoreFunction, sigmas: torch.Tensor | None) -> None:
        require_sigmas("dsm", sigmas)

    def __call__(
        self, score: ScoreFunction, x: torch.Tensor, *, sigmas: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        require_sigmas("dsm", sigmas)
        x_tilde, sigma, z = perturb(x, sigmas, generator, self.level_probs(sigmas))
        # target -(x~ - x)/sigma^2 = -z/sigma; write sigma * residual to stay O(1) at tiny sigma
        scaled = score(x_tilde, sigma) * append_dims(sigma, x.ndim) + z
        per_example = 0.5 * scaled.pow(2).flatten(1).sum(1) / sigma.pow(2)
        return WEIGHTINGS[self.weighting](sigma) * per_example
