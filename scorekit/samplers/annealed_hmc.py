"""Annealed Hamiltonian Monte Carlo: Algorithm 1's schedule with HMC transitions at each level.

The transition is :func:`scorekit.samplers.hmc.step` (fresh momentum, ``n_leapfrog`` leapfrog
steps, an optional Metropolis test, divergent proposals rejected); this module only anneals it.
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import attrs
import torch

from scorekit import rng
from scorekit.errors import CompositionError
from scorekit.samplers import hmc
from scorekit.samplers.annealing import AnnealedSampler
from scorekit.samplers.info import Callback
from scorekit.samplers.inpaint import KnownEntries
from scorekit.samplers.monitor import StepLog
from scorekit.score import ScoreFunction, append_dims, as_score, rows
from scorekit.validators import (
    as_pair,
    boolean,
    frozen,
    half_open_unit_interval,
    positive,
    positive_int,
    required_range,
    value_range,
)


def no_energy_message() -> str:
    return (
        "annealed_hmc with metropolis=True needs the network's energy(x, sigma) for the accept test, and this "
        "network has only a score. Pass sampler_options={'metropolis': False} for unadjusted annealed HMC (no "
        "accept test; biased by O(step_size^2) like hmc's unadjusted mode), or use an energy network "
        "(e.g. network='energy_mlp')"
    )


@attrs.frozen(eq=False)
class ConditionalPotential(hmc.Potential):
    """The potential of the unknown entries given the known ones (inpainting).

    The network is evaluated at ``x`` with its known entries replaced by the projection's current
    target ``y~ = y + sigma_i z``, and the score is zero on the known entries. In a leapfrog
    trajectory those entries then move freely (constant momentum, no force) and never enter the
    energy, so the transition is exact HMC on ``p_sigma(x_unknown | x_known = y~)``; the projection
    after each transition puts them back on ``y~`` without changing the score or the energy.
    """

    known: KnownEntries = attrs.field(kw_only=True)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return super().grad(self.known(x)).masked_fill(self.known.mask, 0.0)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return super().energy(self.known(x))


@frozen
class AnnealedHMC(AnnealedSampler):
    """Annealed HMC: for each sigma_i, largest first, ``steps_per_level`` HMC transitions targeting
    the perturbed density p_(sigma_i) (Algorithm 1 with its Langevin steps replaced by HMC), each
    starting from the last state of the previous level.

    One transition (:func:`scorekit.samplers.hmc.step`) draws a fresh momentum p ~ N(0, I), runs
    ``n_leapfrog`` leapfrog steps of length h_i with the score as the force,
    ``p <- p + h/2 s(x), x <- x + h p, p <- p + h/2 s(x)``, and, with ``metropolis=True``, accepts the
    end point with probability ``min(1, exp(-dH))`` per chain, ``H = E(x) + |p|^2 / 2``; that needs the
    network's energy (``score.has_energy``). A score-only network must pass ``metropolis=False``:
    unadjusted HMC, every non-divergent proposal kept, biased by O(h^2) (the leapfrog conserves a
    shadow Hamiltonian; see ``hmc``). Divergent proposals (non-finite, or energy error above 1000)
    are rejected in both modes, counted in the callback's ``divergent`` and warned about at the end.

    Step size: ``h_i = step_size * sigma_i / sigma_L``. Algorithm 1 scales Langevin's alpha_i as
    sigma_i^2; a Langevin step of size alpha is one leapfrog step of length h = sqrt(alpha) (the
    two coincide for n_leapfrog = 1 without the accept test), and the leapfrog step is a length
    in x, whose error is set by h against the width of p_(sigma_i), which grows like sigma_i. So h_i
    grows like sigma_i, the square root of Algorithm 1's scaling: ``step_size`` is the leapfrog step at
    sigma_L, and ``step_size = sqrt(epsilon)`` matches Algorithm 1 with step epsilon (the default
    0.0045 is about sqrt(2e-5), the paper's image setting at sigma_L = 0.01). ``jitter`` scales each
    chain's h by a uniform factor in [1 - jitter, 1 + jitter] at every transition, as ``hmc`` does.

    ``final_denoise`` adds the noise-free step ``x + sigma_L^2 s(x, sigma_L)`` (Tweedie's formula),
    with the score HMC already holds at the final state: no network call. ``clamp`` clamps after
    each transition and then recomputes the score (and energy) there: one more network call per
    transition. Cost: ``L (steps_per_level n_leapfrog + 1)`` score calls (the +1: the score at the
    new sigma at the start of each level), plus ``L (steps_per_level + 1)`` energy calls with
    ``metropolis``. ``inpaint`` runs the same transitions on the unknown entries given the known ones
    held on ``y + sigma_i z`` (exact HMC on that conditional; :class:`ConditionalPotential`), like
    Algorithm 2 of the NCSN paper.

    Options:
        step_size: the leapfrog step h at the smallest sigma; h_i = step_size sigma_i / sigma_L.
        steps_per_level: HMC transitions per noise level.
        n_leapfrog: leapfrog steps (score calls) per transition.
        metropolis: Metropolis-adjusted (needs the network's energy) or unadjusted.
        jitter: relative half-width of the random step-size factor, in [0, 1).
        final_denoise: add one noise-free step ``x + sigma_L^2 s(x, sigma_L)`` at the end.
        init_range: (low, high) of the uniform initial noise (:meth:`initial_noise`).
        clamp: optional (low, high) range the samples are clamped to after each transition.
        progress: show a tqdm progress bar.
    """

    name: ClassVar[str] = "annealed_hmc"

    step_size: float = attrs.field(default=0.0045, validator=positive)
    steps_per_level: int = attrs.field(default=10, validator=positive_int)
    n_leapfrog: int = attrs.field(default=10, validator=positive_int)
    metropolis: bool = attrs.field(default=True, validator=boolean)
    jitter: float = attrs.field(default=0.2, validator=half_open_unit_interval)
    final_denoise: bool = attrs.field(default=False, validator=boolean)
    init_range: tuple[float, float] = attrs.field(default=(0.0, 1.0), validator=required_range, converter=as_pair)
    clamp: tuple[float, float] | None = attrs.field(default=None, validator=value_range, converter=as_pair)
    progress: bool = attrs.field(default=False, validator=boolean)

    def validate_composition(self, score: ScoreFunction, sigmas: torch.Tensor | None) -> None:
        super().validate_composition(score, sigmas)
        if self.metropolis and not as_score(score).has_energy:
            raise CompositionError(no_energy_message())

    def sample_levels(
        self, score: ScoreFunction, x: torch.Tensor, levels: list[float], generator: torch.Generator | None,
        callback: Callback | None, projection: KnownEntries | None,
    ) -> torch.Tensor:
        if self.metropolis and not score.has_energy:  # called directly, without the composition's check
            raise CompositionError(no_energy_message())
        total = len(levels) * self.steps_per_level + int(self.final_denoise)
        log = StepLog(total, "annealed hmc", "transition", callback, self.progress)
        divergent = torch.zeros((), dtype=torch.int64, device=x.device)
        state: hmc.HMCState | None = None
        for i, sigma in enumerate(levels):
            if projection is None:
                potential = hmc.Potential(score, sigma)
            else:
                x = projection.begin_level(x, sigma, generator)
                potential = ConditionalPotential(score, sigma, known=projection)
            state = self._state(potential, x)
            h = self.step_size * sigma / levels[-1]
            for _ in range(self.steps_per_level):
                state, info = hmc.step(state, potential, generator, step_size=self._jittered(h, x, generator),
                                       n_leapfrog=self.n_leapfrog, metropolis=self.metropolis)
                if self.clamp is not None:
                    state = self._state(potential, state.position.clamp(*self.clamp))
                if projection is not None:  # the potential ignores the known entries: score and energy stay
                    state = attrs.evolve(state, position=projection(state.position))
                divergent += info.divergent.sum()
                # positions stay finite (divergent proposals are rejected); a non-finite score or energy
                # at the state is what would leave a chain stuck, so that is what the monitor watches
                probe = rows(state.grad).sum(dim=1)
                if state.energy is not None:
                    probe = probe + state.energy
                log(state.position, level=i, sigma=sigma, step_size=h, score=state.grad, probe=probe,
                    acceptance=info.acceptance_prob, divergent=info.divergent)
            log.check()
            x = state.position
        assert state is not None
        if self.final_denoise:
            last = levels[-1]
            x = torch.add(x, state.grad, alpha=last**2)
            if self.clamp is not None:
                x.clamp_(*self.clamp)
            log(x, level=len(levels) - 1, sigma=last, step_size=last**2, score=state.grad)
        if projection is not None:
            x = projection.final(x)
        log.close()
        n_divergent = int(divergent)
        if n_divergent:
            warnings.warn(
                f"annealed_hmc: {n_divergent} divergent transitions (of {x.shape[0] * len(levels) * self.steps_per_level});"
                " they were rejected, but the samples may be biased. Lower step_size or n_leapfrog",
                RuntimeWarning, stacklevel=4,
            )
        return x

    def _state(self, potential: hmc.Potential, x: torch.Tensor) -> hmc.HMCState:
        """The state at ``x``: its score and (Metropolis) energy at the potential's sigma, unchecked."""
        return hmc.HMCState(position=x, grad=potential.grad(x),
                            energy=potential.energy(x) if self.metropolis else None)

    def _jittered(self, h: float, x: torch.Tensor, generator: torch.Generator | None) -> float | torch.Tensor:
        """``h`` times a uniform factor in [1 - jitter, 1 + jitter] per chain (``h`` itself without jitter)."""
        if self.jitter == 0:
            return h
        u = rng.uniform(x.shape[0], x.device, x.dtype, generator)
        return append_dims(h * (1.0 + self.jitter * (2.0 * u - 1.0)), x.ndim)
