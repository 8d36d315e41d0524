"""``weighted_dsm``: denoising score matching with the weighting lambda(sigma) = sigma^power.

Per example, ``1/2 sigma^power ||s(x + sigma z, sigma) + z / sigma||^2`` with sigma drawn
uniformly from the composition's levels. ``power=2`` is the paper's choice (Eq. 6), which
makes every level's term O(1); smaller powers weight the small noise levels more.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs
import torch

from scorekit import rng
from scorekit.errors import CompositionError
from scorekit.validators import frozen

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def finite_number(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A finite int or float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"option '{attribute.name}' must be a finite number, got {value!r}")


@frozen
class WeightedDSM:
    """Denoising score matching weighted by ``sigma^power``; returns per-example losses ``[B]``.

    Options:
        power: the exponent p of lambda(sigma) = sigma^p (2: the paper's weighting).
    """

    power: float = attrs.field(default=2.0, validator=finite_number)

    def validate_composition(self, score: Score, sigmas: torch.Tensor | None) -> None:
        if sigmas is None:
            raise CompositionError("weighted_dsm perturbs the data and needs noise levels: compose with sigmas=...")

    def __call__(
        self, score: Score, x: torch.Tensor, *, sigmas: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        self.validate_composition(score, sigmas)
        assert sigmas is not None
        # every random number comes from `generator`, so a seed reproduces the loss
        level = rng.randint(sigmas.numel(), x.shape[0], sigmas.device, generator)
        sigma = sigmas[level].to(device=x.device, dtype=x.dtype)
        z = rng.randn_like(x, generator)
        sigma_ = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        # sigma (s - target) with target -z / sigma: O(1) at every level, however small sigma is
        scaled = score(x + sigma_ * z, sigma) * sigma_ + z
        return 0.5 * sigma.pow(self.power - 2) * scaled.pow(2).flatten(1).sum(1)
