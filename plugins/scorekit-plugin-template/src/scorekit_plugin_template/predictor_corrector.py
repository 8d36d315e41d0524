"""``pc``: a predictor-corrector sampler across the noise levels (Song et al. 2021, Algorithm 2).

At each level, largest first: ``n_corrector`` Langevin steps whose step size is set by a
signal-to-noise ratio (the corrector), then one reverse-diffusion step to the next level
(the predictor): ``x <- x + (sigma_i^2 - sigma_{i+1}^2) s(x, sigma_i) + sqrt(sigma_i^2 - sigma_{i+1}^2) z``.
After the last level, an optional noise-free step to sigma = 0 denoises the samples.
It has no ``initial_noise``: ``model.initial_noise`` (and so ``scorekit train`` and ``scorekit sample``)
starts it from N(0, sigma_1^2 I), sigma_1 the largest sigma, the prior of the variance-exploding SDE.
The loop runs under ``scorekit.score.sampling_mode(score)`` (``torch.inference_mode()`` for a plain
score network) and returns ``ordinary(x)``, a tensor the caller may modify or differentiate.
"""

from __future__ import annotations

import math
from typing import Callable

import attrs
import torch

from scorekit import rng
from scorekit.errors import CompositionError
from scorekit.samplers import SamplerStep
from scorekit.score import ordinary, sampling_mode
from scorekit.validators import boolean, frozen, non_negative_int, positive

Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[SamplerStep], None]


def _norms(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norms ``[B]``."""
    return t.flatten(1).norm(dim=1)


@frozen
class PredictorCorrector:
    """Reverse-diffusion predictor with a Langevin corrector, one chain per example.

    Options:
        snr: signal-to-noise ratio of a corrector step; its step size is
            ``2 (snr ||z|| / ||s||)^2`` per chain (0.16 is Song et al.'s choice for CIFAR-10).
        n_corrector: Langevin corrector steps per level (0: predictor only).
        final_denoise: end with a noise-free step from the smallest sigma to 0.
    """

    snr: float = attrs.field(default=0.16, validator=positive)
    n_corrector: int = attrs.field(default=1, validator=non_negative_int)
    final_denoise: bool = attrs.field(default=True, validator=boolean)

    def validate_composition(self, score: Score, sigmas: torch.Tensor | None) -> None:
        if sigmas is None:
            raise CompositionError("pc anneals across noise levels and needs sigmas: compose with sigmas=...")

    def __call__(
        self, score: Score, x_init: torch.Tensor, *, sigmas: torch.Tensor | None = None,
        generator: torch.Generator | None = None, callback: Callback | None = None,
    ) -> torch.Tensor:
        """Samples shaped like ``x_init``."""
        self.validate_composition(score, sigmas)
        assert sigmas is not None
        levels = [float(s) for s in sigmas.tolist()] + [0.0]
        x, step = x_init, 0
        with sampling_mode(score):
            for i, (sigma, following) in enumerate(zip(levels[:-1], levels[1:])):
                sigma_b = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
                for _ in range(self.n_corrector):
                    s, z = score(x, sigma_b), rng.randn_like(x, generator)
                    eps = 2 * (self.snr * _norms(z) / _norms(s).clamp_min(1e-12)) ** 2
                    eps_ = eps.reshape(-1, *([1] * (x.ndim - 1)))
                    x = x + eps_ * s + (2 * eps_).sqrt() * z
                    step = self._report(callback, step, i, sigma, float(eps.mean()), s, x)
                if following == 0.0 and not self.final_denoise:
                    break
                s, variance = score(x, sigma_b), sigma**2 - following**2
                x = x + variance * s
                if following > 0:
                    x = x + math.sqrt(variance) * rng.randn_like(x, generator)
                step = self._report(callback, step, i, sigma, variance, s, x)
        return ordinary(x)

    @staticmethod
    def _report(callback: Callback | None, step: int, level: int, sigma: float, step_size: float,
                s: torch.Tensor, x: torch.Tensor) -> int:
        if callback is not None:
            callback(SamplerStep(step=step, level=level, sigma=sigma, step_size=step_size,
                                 score_norm=float(_norms(s).mean()), x=x))
        return step + 1
