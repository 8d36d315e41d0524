"""Langevin dynamics (Eq. 4) and the loop the whole Langevin family shares.

One loop runs a list of noise levels; plain Langevin is one level, annealed Langevin
(Algorithm 1, :mod:`scorekit.samplers.annealed`) is L of them, and inpainting
(Algorithm 2) is either of them with a projection applied after each update.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import attrs
import torch

from scorekit import rng
from scorekit.samplers.info import Callback, draw_initial_noise
from scorekit.samplers.inpaint import KnownEntries, bool_mask
from scorekit.samplers.monitor import StepLog
from scorekit.score import ScoreFunction, as_score, ordinary, sampling_mode, sigma_batch
from scorekit.validators import as_pair, boolean, frozen, optional, positive, positive_int, required_range, value_range


@attrs.frozen
class Level:
    """One noise level of a Langevin run: ``n_steps`` updates with ``step_size`` at ``sigma``.

    ``noise=False`` makes the updates noise-free, ``x + step_size * s(x, sigma)`` (with
    ``step_size = sigma^2`` this is the final denoising step, Tweedie's formula).
    """

    index: int | None
    sigma: float | None
    step_size: float
    n_steps: int
    noise: bool = True


def levels_of(sigmas: torch.Tensor | None) -> list[float] | None:
    """The composition's sigmas as Python floats, read once per run.

    ``sigmas`` is trusted: a 1-D tensor, largest first, as :func:`scorekit.sigmas.as_sigmas`
    returns it (``compose()`` and ``ScoreModel`` validate it; samplers do not again).
    """
    return None if sigmas is None else [float(s) for s in sigmas.tolist()]


def fixed_sigma(option: float | None, sigmas: torch.Tensor | None) -> float | None:
    """The single noise level of a one-level sampler: the ``sigma`` option, else the smallest
    of the composition's sigmas, else None (an unconditional network gets ``sigma=None``)."""
    if option is not None:
        return float(option)
    return None if sigmas is None else float(sigmas[-1])


def run_levels(
    score: ScoreFunction,
    x: torch.Tensor,
    levels: Sequence[Level],
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    clamp: tuple[float, float] | None = None,
    projection: KnownEntries | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Langevin updates ``x <- x + alpha/2 s(x, sigma) + sqrt(alpha) z`` (Eq. 4), level by level.

    ``projection`` (inpainting, Algorithm 2) starts each noisy level (drawing that level's
    noisy copy of the known entries) and is applied after every update; its ``final`` runs
    once at the end. Raises :class:`DivergenceError` if a chain becomes NaN or inf.
    ``x`` is not modified. The score is called with one ``[B]`` sigma tensor per level, under
    :func:`~scorekit.score.sampling_mode`; the result is an ordinary tensor (:func:`~scorekit.score.ordinary`).
    """
    log = StepLog(sum(level.n_steps for level in levels), "sampling", "step", callback, progress)
    with sampling_mode(score):
        for level in levels:
            sigma = sigma_batch(level.sigma, x)
            half, root = level.step_size / 2, math.sqrt(level.step_size)
            if projection is not None and level.noise:
                x = projection.begin_level(x, level.sigma, generator)
            for _ in range(level.n_steps):
                s = score(x, sigma)
                # a fresh tensor each step: x is never written in place, so a callback may keep it
                if level.noise:
                    x_new = rng.randn_like(x, generator).mul_(root).add_(s, alpha=half).add_(x)
                else:
                    x_new = torch.add(x, s, alpha=level.step_size)
                if clamp is not None:
                    x_new.clamp_(*clamp)
                x = x_new if projection is None else projection(x_new)
                log(x, level=level.index, sigma=level.sigma, step_size=level.step_size, score=s)
            log.check()
        if projection is not None:
            x = projection.final(x)
    log.close()
    return ordinary(x)


class LangevinFamily:
    """Generation, inpainting and initial noise for samplers defined by a list of :class:`Level`.

    A subclass is an attrs config with ``init_range``, ``clamp`` and ``progress`` fields
    and implements ``levels(sigmas)``. Called directly, it trusts its arguments as the
    model passes them (``ScoreModel.sample`` and ``inpaint`` check them, ``compose()`` runs
    :meth:`validate_composition`): ``x_init`` a finite floating ``[B, ...]`` tensor,
    ``sigmas`` a validated 1-D tensor, largest first.
    """

    init_range: tuple[float, float]
    clamp: tuple[float, float] | None
    progress: bool

    def levels(self, sigmas: torch.Tensor | None) -> list[Level]:  # pragma: no cover - abstract
        raise NotImplementedError

    def validate_composition(self, score: ScoreFunction, sigmas: torch.Tensor | None) -> None:
        """Raise :class:`CompositionError` for what the arguments alone show to be wrong."""

    def initial_noise(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform noise in ``init_range`` shaped like ``like`` (the paper's initialisation for [0, 1] data)."""
        low, high = self.init_range
        return rng.rand_like(like, generator).mul_(high - low).add_(low)

    def _run(
        self, score: Any, x: torch.Tensor, sigmas: torch.Tensor | None, generator: torch.Generator | None,
        callback: Callback | None, projection: KnownEntries | None,
    ) -> torch.Tensor:
        return run_levels(
            as_score(score), x, self.levels(sigmas), generator=generator, callback=callback, clamp=self.clamp,
            projection=projection, progress=self.progress,
        )

    def __call__(
        self, score: Any, x_init: torch.Tensor, *, sigmas: torch.Tensor | None = None,
        generator: torch.Generator | None = None, callback: Callback | None = None,
    ) -> torch.Tensor:
        """Samples shaped like ``x_init``, one chain per example."""
        return self._run(score, x_init, sigmas, generator, callback, None)

    def inpaint(
        self, score: Any, y: torch.Tensor, mask: torch.Tensor, *, x_init: torch.Tensor | None = None,
        sigmas: torch.Tensor | None = None, generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """Fill the entries of ``y`` where ``mask`` is 0 (Algorithm 2).

        ``mask`` is a bool or 0/1 tensor, 1 on known entries, that broadcasts to ``y``;
        unknown entries of ``y`` are ignored (NaN allowed). Unknown entries start from
        :meth:`initial_noise` unless ``x_init`` (shaped like ``y``) is given. The returned
        known entries equal ``y`` bit for bit. The arguments are trusted as
        ``ScoreModel.inpaint`` passes them (it checks ``y``, ``mask`` and ``x_init``).
        """
        x = draw_initial_noise(self.initial_noise, y, generator, sigmas) if x_init is None else x_init
        return self._run(score, x, sigmas, generator, callback, KnownEntries(y, bool_mask(mask, y)))


@frozen
class Langevin(LangevinFamily):
    """Langevin dynamics at one noise level (Eq. 4): ``x_t = x_{t-1} + eps/2 s(x_{t-1}) + sqrt(eps) z_t``.

    The paper's baseline for images uses ``step_size=2e-5, n_steps=1000`` at
    ``sigma=0.01`` (section 5), and ``step_size=0.1, n_steps=1000`` on the toy mixture
    (Fig. 3), where it gets the mode weights wrong; see annealed Langevin for the fix.

    Options:
        step_size: eps of Eq. 4 (> 0).
        n_steps: T, the number of updates.
        sigma: the noise level fed to a noise-conditional network; None means the smallest
            of the composition's sigmas, or ``sigma=None`` for an unconditional network.
        init_range: (low, high) of the uniform initial noise (:meth:`initial_noise`).
        clamp: optional (low, high) range the samples are clamped to after each step.
        progress: show a tqdm progress bar.
    """

    step_size: float = attrs.field(default=2e-5, validator=positive)
    n_steps: int = attrs.field(default=1000, validator=positive_int)
    sigma: float | None = attrs.field(default=None, validator=optional(positive))
    init_range: tuple[float, float] = attrs.field(default=(0.0, 1.0), validator=required_range, converter=as_pair)
    clamp: tuple[float, float] | None = attrs.field(default=None, validator=value_range, converter=as_pair)
    progress: bool = attrs.field(default=False, validator=boolean)

    def levels(self, sigmas: torch.Tensor | None) -> list[Level]:
        sigma = fixed_sigma(self.sigma, sigmas)
        return [Level(index=None, sigma=sigma, step_size=self.step_size, n_steps=self.n_steps)]
