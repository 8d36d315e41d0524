"""Denoising score matching (Vincent 2011), Eq. 5 and 6 of Song & Ermon (2019)."""

from __future__ import annotations

import attrs
import torch

from scorekit.config import frozen, one_of
from scorekit.estimators.common import WEIGHTINGS, perturb, require_sigmas
from scorekit.score import ScoreFunction, append_dims


@frozen
class DenoisingScoreMatching:
    """Per-example DSM loss ``1/2 lambda(sigma) ||s(x~, sigma) + (x~ - x)/sigma^2||^2`` (Eq. 5).

    Each example draws its own level uniformly from the sigmas, so the batch mean is an
    unbiased estimate of Eq. 6. ``weighting``: ``"sigma2"`` (lambda = sigma^2, the paper's
    choice that makes every level's term O(1)) or ``"none"`` (lambda = 1).
    """

    weighting: str = attrs.field(default="sigma2", validator=one_of(*WEIGHTINGS))

    def validate_composition(self, score: ScoreFunction, sigmas: torch.Tensor | None) -> None:
        require_sigmas("dsm", sigmas)

    def __call__(
        self, score: ScoreFunction, x: torch.Tensor, *, sigmas: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        require_sigmas("dsm", sigmas)
        x_tilde, sigma, z = perturb(x, sigmas, generator)
        # target -(x~ - x)/sigma^2 = -z/sigma; write sigma * residual to stay O(1) at tiny sigma
        scaled = score(x_tilde, sigma) * append_dims(sigma, x.ndim) + z
        per_example = 0.5 * scaled.pow(2).flatten(1).sum(1) / sigma.pow(2)
        return WEIGHTINGS[self.weighting](sigma) * per_example
