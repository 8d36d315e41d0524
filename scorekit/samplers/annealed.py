"""Annealed Langevin dynamics (Algorithm 1) and its inpainting variant (Algorithm 2)."""

from __future__ import annotations

import attrs
import torch

from scorekit.errors import CompositionError
from scorekit.samplers.langevin import LangevinFamily, Level, levels_of
from scorekit.samplers.monitor import needs_sigmas_message
from scorekit.score import ScoreFunction
from scorekit.validators import as_pair, boolean, frozen, positive, positive_int, required_range, value_range

_NEEDS_SIGMAS = needs_sigmas_message("annealed_langevin")


@frozen
class AnnealedLangevin(LangevinFamily):
    """Annealed Langevin dynamics (Algorithm 1): ``steps_per_level`` Langevin updates at each
    sigma_i, largest first, with ``alpha_i = step_size * sigma_i^2 / sigma_L^2``.

    The defaults are the paper's image settings (section 5: eps = 2e-5, T = 100, uniform
    initial noise in [0, 1]); the toy mixture of Fig. 3 uses ``step_size=0.1`` with sigmas
    geometric from 20 to 1. Needs the composition's sigmas. ``inpaint`` is Algorithm 2.

    Options:
        step_size: epsilon of Algorithm 1 (> 0); the step at the last level.
        steps_per_level: T, the updates per noise level.
        final_denoise: add one noise-free step ``x + sigma_L^2 s(x, sigma_L)`` at the end.
        init_range: (low, high) of the uniform initial noise (:meth:`initial_noise`).
        clamp: optional (low, high) range the samples are clamped to after each step.
        progress: show a tqdm progress bar.
    """

    step_size: float = attrs.field(default=2e-5, validator=positive)
    steps_per_level: int = attrs.field(default=100, validator=positive_int)
    final_denoise: bool = attrs.field(default=False, validator=boolean)
    init_range: tuple[float, float] = attrs.field(default=(0.0, 1.0), validator=required_range, converter=as_pair)
    clamp: tuple[float, float] | None = attrs.field(default=None, validator=value_range, converter=as_pair)
    progress: bool = attrs.field(default=False, validator=boolean)

    def validate_composition(self, score: ScoreFunction, sigmas: torch.Tensor | None) -> None:
        if sigmas is None:
            raise CompositionError(_NEEDS_SIGMAS)

    def levels(self, sigmas: torch.Tensor | None) -> list[Level]:
        levels = levels_of(sigmas)
        if levels is None:  # called directly, without the composition's check
            raise CompositionError(_NEEDS_SIGMAS)
        last = levels[-1]
        out = [
            Level(index=i, sigma=s, step_size=self.step_size * s**2 / last**2, n_steps=self.steps_per_level)
            for i, s in enumerate(levels)
        ]
        if self.final_denoise:
            out.append(Level(index=len(levels) - 1, sigma=last, step_size=last**2, n_steps=1, noise=False))
        return out
