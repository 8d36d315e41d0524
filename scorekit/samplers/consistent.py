"""Consistent annealed sampling (Jolicoeur-Martineau et al., ICLR 2021, Algorithm 2)."""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch

from scorekit import rng
from scorekit.errors import CompositionError
from scorekit.samplers.annealing import AnnealedSampler
from scorekit.samplers.info import Callback
from scorekit.samplers.inpaint import KnownEntries
from scorekit.samplers.monitor import StepLog
from scorekit.score import ScoreFunction, sigma_batch
from scorekit.validators import as_pair, boolean, frozen, positive_fraction, required_range, value_range


def smallest_step(levels: list[float]) -> float:
    """The smallest consistent eta for these sigmas: ``max_i (1 - sigma_{i+1} / sigma_i)`` (0 for one level)."""
    return max((1.0 - b / a for a, b in zip(levels[:-1], levels[1:])), default=0.0)


def inconsistent_message(eta: float, levels: list[float]) -> str:
    return (
        f"consistent_annealed needs step_size >= {smallest_step(levels):.4g} for these sigmas, got {eta:g}: a step "
        "from sigma_i to sigma_(i+1) keeps (1 - step_size) sigma_i of the noise, which must not exceed sigma_(i+1), "
        "so step_size must be at least max_i (1 - sigma_(i+1) / sigma_i). Raise step_size, or use more levels "
        "(a finer schedule)"
    )


@frozen
class ConsistentAnnealed(AnnealedSampler):
    """Consistent annealed sampling (CAS; Jolicoeur-Martineau et al., "Adversarial score matching
    and improved sampling for image generation", ICLR 2021, Algorithm 2): one step per level,

        x <- x + eta sigma_i^2 s(x, sigma_i) + beta_i sigma_(i+1) z,
        beta_i = sqrt(1 - (1 - eta)^2 gamma_i^2),   gamma_i = sigma_i / sigma_(i+1),

    for i = 1..L, largest sigma first, with sigma_(L+1) = 0 (the last step adds no noise).
    ``eta`` is the option ``step_size``; the paper writes it as epsilon / sigma_L^2, so that the
    step ``alpha_i = eta sigma_i^2`` is Algorithm 1's ``epsilon sigma_i^2 / sigma_L^2``.

    Why beta: if x = x_0 + sigma_i n (data plus noise at the level the network is told), Tweedie's
    formula gives ``x + sigma_i^2 s(x, sigma_i) = E[x_0 | x]``, so the drift makes
    ``(1 - eta) x + eta E[x_0 | x]``, which keeps ``(1 - eta) sigma_i n`` of the noise; adding
    ``beta_i sigma_(i+1) z`` brings the noise variance to ``(1 - eta)^2 sigma_i^2 + beta_i^2 sigma_(i+1)^2
    = sigma_(i+1)^2``: the iterate is as noisy as the level it is conditioned on next (annealed
    Langevin's iterates are not). The paper states it for a geometric schedule, with one ratio;
    written with gamma = sigma_(i+1) / sigma_i < 1 it reads ``sqrt(1 - ((1 - eta) / gamma)^2)``. Here
    gamma_i is taken per step, so any descending schedule works, and beta_i is real only when
    ``eta >= 1 - sigma_(i+1) / sigma_i`` for every i: :meth:`validate_composition` checks it.
    On a Gaussian N(mu, s^2) the consistency is exact for the noise; the iterate's variance is
    ``s^2 + sigma_(i+1)^2`` less ``eta^2 Var[x_0 | x]`` (the part of the drift that denoises), and these
    shortfalls add up: with the default 10 levels from 1 to 0.01 the samples keep 0.77-0.79 of the data's
    variance at the smallest consistent eta (0.40) and 0.71 at eta = 0.5; with 100 levels, 0.97 at the
    smallest (0.046). Choose eta a little above its smallest consistent value, with many levels.

    ``final_denoise=True`` (the default) makes the last step the full Tweedie step
    ``x + sigma_L^2 s(x, sigma_L)`` (eta = 1) instead of the paper's ``x + eta sigma_L^2 s``, which
    leaves ``(1 - eta) sigma_L`` of the noise. Cost: one network call per level, L in all.
    Starts from :meth:`initial_noise` (uniform in ``init_range``); ``inpaint`` holds the known
    entries on ``y + sigma z`` at the noise level of the iterate (Algorithm 2 of the NCSN paper).

    Options:
        step_size: eta in (0, 1], at least ``1 - sigma_(i+1) / sigma_i`` for every pair of levels.
        final_denoise: make the last step the full Tweedie step (eta = 1).
        init_range: (low, high) of the uniform initial noise (:meth:`initial_noise`).
        clamp: optional (low, high) range the samples are clamped to after each step.
        progress: show a tqdm progress bar.
    """

    name: ClassVar[str] = "consistent_annealed"

    step_size: float = attrs.field(default=0.5, validator=positive_fraction)
    final_denoise: bool = attrs.field(default=True, validator=boolean)
    init_range: tuple[float, float] = attrs.field(default=(0.0, 1.0), validator=required_range, converter=as_pair)
    clamp: tuple[float, float] | None = attrs.field(default=None, validator=value_range, converter=as_pair)
    progress: bool = attrs.field(default=False, validator=boolean)

    def validate_composition(self, score: ScoreFunction, sigmas: torch.Tensor | None) -> None:
        super().validate_composition(score, sigmas)
        assert sigmas is not None
        levels = [float(s) for s in sigmas.tolist()]
        if self.step_size < smallest_step(levels):
            raise CompositionError(inconsistent_message(self.step_size, levels))

    def noise_scales(self, levels: list[float]) -> list[float]:
        """``beta_i sigma_(i+1)`` of each step but the last (which adds no noise)."""
        if self.step_size < smallest_step(levels):  # called directly, without the composition's check
            raise CompositionError(inconsistent_message(self.step_size, levels))
        keep = 1.0 - self.step_size
        return [math.sqrt(max(0.0, b * b - (keep * a) ** 2)) for a, b in zip(levels[:-1], levels[1:])]

    def sample_levels(
        self, score: ScoreFunction, x: torch.Tensor, levels: list[float], generator: torch.Generator | None,
        callback: Callback | None, projection: KnownEntries | None,
    ) -> torch.Tensor:
        noise = self.noise_scales(levels)  # beta_i sigma_(i+1) = sqrt(sigma_(i+1)^2 - (1 - eta)^2 sigma_i^2)
        log = StepLog(len(levels), "sampling", "step", callback, self.progress)
        if projection is not None:
            x = projection.begin_level(x, levels[0], generator)
        for i, sigma in enumerate(levels):
            s = score(x, sigma_batch(sigma, x))
            last = i == len(levels) - 1
            alpha = (1.0 if last and self.final_denoise else self.step_size) * sigma**2
            if last:
                x_new = torch.add(x, s, alpha=alpha)
            else:
                x_new = rng.randn_like(x, generator).mul_(noise[i]).add_(s, alpha=alpha).add_(x)
            if self.clamp is not None:
                x_new.clamp_(*self.clamp)
            if projection is not None:
                x_new = projection.final(x_new) if last else projection.begin_level(x_new, levels[i + 1], generator)
            x = x_new
            log(x, level=i, sigma=sigma, step_size=alpha, score=s)
        log.close()
        return x
