"""Hamiltonian Monte Carlo on a score network (energy for the Metropolis test).

A functional core in blackjax's shape, with a ``torch.Generator`` in place of the key:
:func:`init` builds an :class:`HMCState`, :func:`step` makes one transition of every
chain and returns ``(HMCState, HMCInfo)``; the integrator (:func:`leapfrog`) and the
warm-up adaptation (:mod:`scorekit.samplers.adaptation`) are separate pieces.
:class:`HMC` is the sampler that compose() builds: warm-up, then sampling.
"""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import torch

from scorekit import rng
from scorekit.errors import CompositionError, DivergenceError
from scorekit.samplers.adaptation import DualAveraging, RunningVariance, window_schedule
from scorekit.samplers.info import Callback, SamplerStep, mean_norm
from scorekit.samplers.langevin import fixed_sigma
from scorekit.samplers.monitor import format_chains, progress_bar
from scorekit.score import ScoreFunction, append_dims, as_score, ordinary, rows, sampling_mode, sigma_batch
from scorekit.validators import (
    boolean,
    frozen,
    half_open_unit_interval,
    non_negative_int,
    one_of,
    optional,
    positive,
    positive_int,
    probability,
)

#: an energy error H(new) - H(old) above this marks a transition divergent (Stan and blackjax use 1000)
MAX_ENERGY_ERROR = 1000.0


@attrs.frozen(eq=False)
class Potential:
    """The target at one noise level: ``grad(x)`` = score = -dE/dx, ``energy(x)`` = E ([B]).

    The ``[B]`` sigma tensor the network receives is built once per batch size, dtype and
    device and reused by every leapfrog step, not rebuilt per score call.
    """

    score: ScoreFunction
    sigma: float | None
    _sigma_batches: dict[tuple[int, torch.dtype, torch.device], torch.Tensor | None] = attrs.field(
        init=False, factory=dict, repr=False
    )

    def _sigma_for(self, x: torch.Tensor) -> torch.Tensor | None:
        """``sigma`` as the ``[B]`` tensor of ``x``'s dtype and device (None for an unconditional network)."""
        key = (x.shape[0], x.dtype, x.device)
        if key not in self._sigma_batches:
            self._sigma_batches[key] = sigma_batch(self.sigma, x)
        return self._sigma_batches[key]

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(x, self._sigma_for(x))

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.score.energy(x, self._sigma_for(x))


@attrs.frozen(eq=False)
class HMCState:
    """Positions of all chains with their score and (Metropolis mode) potential energy."""

    position: torch.Tensor  # [B, ...]
    grad: torch.Tensor  # score at position, [B, ...]
    energy: torch.Tensor | None  # potential energy [B]; None in unadjusted mode


@attrs.frozen(eq=False)
class HMCInfo:
    """What one transition did, per chain."""

    acceptance_prob: torch.Tensor | None  # [B], None in unadjusted mode
    accepted: torch.Tensor  # [B] bool
    divergent: torch.Tensor  # [B] bool: non-finite, or energy error above MAX_ENERGY_ERROR
    energy_error: torch.Tensor  # [B], H(proposal) - H(current) (unadjusted: estimated from the score)


@attrs.frozen(kw_only=True, eq=False)
class HMCSummary:
    """A run's totals, passed as ``info.summary`` on the last callback and returned by :meth:`HMC.run`."""

    acceptance_rate: float | None  # mean acceptance probability after warm-up (None: unadjusted)
    step_size: float  # the step size used after warm-up (before jitter)
    n_divergent: int  # divergent (chain, transition) pairs after warm-up
    n_divergent_warmup: int
    inverse_mass: torch.Tensor | None  # diagonal inverse mass matrix (None: identity)
    n_chains: int
    n_warmup: int
    n_steps: int


def init(position: torch.Tensor, potential: Potential, *, metropolis: bool = True) -> HMCState:
    """The state at ``position``; raises :class:`DivergenceError` if the score or energy is not finite there,
    and :class:`CompositionError` if ``metropolis`` but the network has no energy."""
    if metropolis and not potential.score.has_energy:
        raise CompositionError(_no_energy_message())
    grad = potential.grad(position)
    energy = potential.energy(position) if metropolis else None
    ok = rows(torch.isfinite(grad)).all(dim=1)
    if energy is not None:
        ok &= torch.isfinite(energy)
    if not bool(ok.all()):
        bad = (~ok).nonzero().flatten().tolist()
        raise DivergenceError(
            f"hmc: the score or energy is NaN or inf at the initial state of chains {format_chains(bad)} "
            "(before any step); start from points where the network is finite"
        )
    return HMCState(position=position, grad=grad, energy=energy)


def kinetic_energy(momentum: torch.Tensor, inverse_mass: torch.Tensor | None) -> torch.Tensor:
    """``p^T M^-1 p / 2`` per chain ([B])."""
    sq = momentum * momentum if inverse_mass is None else momentum * momentum * inverse_mass
    return 0.5 * rows(sq).sum(dim=1)


def leapfrog(
    position: torch.Tensor, momentum: torch.Tensor, grad: torch.Tensor, potential: Potential,
    step_size: float | torch.Tensor, n_steps: int, inverse_mass: torch.Tensor | None, *, track_work: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``n_steps`` leapfrog steps of Hamiltonian dynamics with ``grad log p = score``.

    ``step_size`` is a float or a per-chain tensor broadcastable to ``position``; the
    score at the start is passed in and the score at the end is returned (one network
    call per step). With ``track_work`` it also returns the line integral of the score
    along the path (trapezoid rule, ``[B]``), an estimate of ``E(start) - E(end)`` that
    needs no energy: exact on a Gaussian, O(step^2) otherwise.
    """
    half = step_size / 2
    p = momentum + half * grad
    q = position
    work = torch.zeros(position.shape[0], dtype=position.dtype, device=position.device) if track_work else None
    for i in range(n_steps):
        q_next = q + step_size * (p if inverse_mass is None else inverse_mass * p)
        grad_next = potential.grad(q_next)
        if work is not None:
            work += rows(0.5 * (grad + grad_next) * (q_next - q)).sum(dim=1)
        q, grad = q_next, grad_next
        p = p + (step_size if i < n_steps - 1 else half) * grad
    return q, p, grad, work


def step(
    state: HMCState, potential: Potential, generator: torch.Generator | None, *,
    step_size: float | torch.Tensor, n_leapfrog: int, inverse_mass: torch.Tensor | None = None,
    metropolis: bool = True,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition of every chain: fresh momentum ``p ~ N(0, M)``, ``n_leapfrog``
    leapfrog steps, then a per-chain Metropolis test on ``H = E(x) + p^T M^-1 p / 2``
    (``metropolis=False``: every proposal that is not divergent is kept). A proposal is
    divergent if it is non-finite or its energy error exceeds ``MAX_ENERGY_ERROR``; without
    an energy (unadjusted) the error is estimated from the score's line integral along the
    trajectory. Divergent proposals are rejected in both modes.
    """
    x = state.position
    z = rng.randn_like(x, generator)
    momentum = z if inverse_mass is None else z * inverse_mass.rsqrt()
    q, p, g, work = leapfrog(x, momentum, state.grad, potential, step_size, n_leapfrog, inverse_mass,
                             track_work=not metropolis)
    finite = rows(torch.isfinite(q) & torch.isfinite(p) & torch.isfinite(g)).all(dim=1)
    kinetic_change = kinetic_energy(p, inverse_mass) - kinetic_energy(momentum, inverse_mass)
    new_energy: torch.Tensor | None = None
    prob: torch.Tensor | None = None
    if metropolis:
        assert state.energy is not None
        energy = potential.energy(q)
        error = energy - state.energy + kinetic_change
    else:
        assert work is not None
        error = kinetic_change - work
    divergent = ~finite | ~torch.isfinite(error) | (error > MAX_ENERGY_ERROR)
    if metropolis:
        prob = torch.exp(torch.clamp(-error, max=0.0)).masked_fill(divergent, 0.0)
        accepted = rng.uniform(x.shape[0], x.device, prob.dtype, generator) < prob
        new_energy = torch.where(accepted, energy, state.energy)
    else:
        accepted = ~divergent
    keep = append_dims(accepted, x.ndim)
    new = HMCState(position=torch.where(keep, q, x), grad=torch.where(keep, g, state.grad), energy=new_energy)
    return new, HMCInfo(acceptance_prob=prob, accepted=accepted, divergent=divergent, energy_error=error)


def find_reasonable_step_size(
    state: HMCState, potential: Potential, generator: torch.Generator | None, step_size: float,
    inverse_mass: torch.Tensor | None = None, max_doublings: int = 40,
) -> float:
    """Hoffman & Gelman (2014), Algorithm 4 on the mean over chains: double or halve the
    step size until the mean acceptance of one leapfrog step crosses 1/2."""

    def acceptance(eps: float) -> float:
        _, info = step(state, potential, generator, step_size=eps, n_leapfrog=1, inverse_mass=inverse_mass)
        assert info.acceptance_prob is not None
        return float(info.acceptance_prob.mean())

    direction = 1.0 if acceptance(step_size) > 0.5 else -1.0
    for _ in range(max_doublings):
        candidate = step_size * 2.0**direction
        crossed = acceptance(candidate) <= 0.5 if direction > 0 else acceptance(candidate) > 0.5
        if crossed:
            return step_size if direction > 0 else candidate
        step_size = candidate
    return step_size


def _no_energy_message() -> str:
    return (
        "hmc with metropolis=True needs the network's energy(x, sigma) for the accept test, and this network "
        "has only a score. Pass sampler_options={'metropolis': False} for unadjusted HMC: it uses step_size "
        "as given and is biased (on N(0, I) with step_size 0.5 and 10 leapfrog steps the variance comes out "
        "about 6% too large), or use an energy network (e.g. network='energy_mlp')"
    )


@frozen
class HMC:
    """Hamiltonian Monte Carlo with Stan-style warm-up, many chains in one batch.

    Warm-up (``n_warmup`` transitions) tunes the step size by dual averaging towards
    ``target_accept`` (Hoffman & Gelman 2014) from a doubling/halving initial guess
    and, with ``mass_matrix="diagonal"``, estimates the inverse mass matrix as the
    per-entry variance of the draws in Stan's doubling windows (pooled over chains,
    shrunk towards 1e-3). Then ``n_steps`` transitions with the averaged step size; the
    returned samples are the states after the last one. One step size is shared by all
    chains (adapted on the mean acceptance probability); each chain has its own
    Metropolis test. ``jitter`` scales the step size of each chain and transition by a
    uniform factor in ``[1 - jitter, 1 + jitter]``, which breaks the periodic
    trajectories that a fixed step size gives on near-Gaussian targets.

    ``metropolis=False`` is unadjusted HMC, the only mode for a network without an
    energy: no accept test, so no step-size adaptation (``step_size`` is used as given,
    warm-up transitions are plain transitions; a diagonal mass matrix is still
    estimated), and ``acceptance_rate`` is reported as None. It is biased: on N(0, I)
    in 2-D with step_size 0.5, 10 leapfrog steps and the default jitter, the sample
    variance comes out 6.1% too large (measured on 400,000 draws; step_size 0.25: +1.5%,
    1.0: +34%), close to the leapfrog's shadow-energy value ``1 / (1 - eps^2 / 4) - 1`` for
    a unit-scale Gaussian: the error grows like (step_size / scale)^2. The mean of a
    symmetric target is unbiased.

    Called directly it trusts its arguments as ``ScoreModel.sample`` passes them
    (``x_init`` a finite floating ``[B, ...]`` tensor, ``sigmas`` a validated 1-D tensor);
    ``compose()`` runs :meth:`validate_composition`.

    A proposal that is non-finite or whose energy error exceeds 1000 is divergent (without
    an energy, the error is estimated by integrating the score along the trajectory): it is
    rejected, counted (``info.divergent``, ``HMCSummary.n_divergent``) and, after
    warm-up, warned about. The callback receives every transition with ``warmup`` set
    during warm-up; the last one carries ``summary`` (:class:`HMCSummary`), which
    :meth:`run` also returns.

    Options:
        step_size: initial leapfrog step size (adapted when metropolis=True and n_warmup > 0).
        n_leapfrog: leapfrog steps per transition.
        n_warmup: adaptation transitions before sampling.
        n_steps: transitions after warm-up.
        target_accept: the mean acceptance probability dual averaging aims for.
        metropolis: Metropolis-adjusted (needs the network's energy) or unadjusted.
        mass_matrix: "identity", or "diagonal" (adapted during warm-up).
        jitter: relative half-width of the random step-size factor, in [0, 1).
        sigma: the noise level fed to a noise-conditional network; None means the smallest
            of the composition's sigmas, or sigma=None for an unconditional network.
        progress: show a tqdm progress bar.
    """

    step_size: float = attrs.field(default=0.1, validator=positive)
    n_leapfrog: int = attrs.field(default=10, validator=positive_int)
    n_warmup: int = attrs.field(default=500, validator=non_negative_int)
    n_steps: int = attrs.field(default=500, validator=positive_int)
    target_accept: float = attrs.field(default=0.8, validator=probability)
    metropolis: bool = attrs.field(default=True, validator=boolean)
    mass_matrix: str = attrs.field(default="identity", validator=one_of("identity", "diagonal"))
    jitter: float = attrs.field(default=0.2, validator=half_open_unit_interval)
    sigma: float | None = attrs.field(default=None, validator=optional(positive))
    progress: bool = attrs.field(default=False, validator=boolean)

    def validate_composition(self, score: ScoreFunction, sigmas: torch.Tensor | None) -> None:
        if self.metropolis and not as_score(score).has_energy:
            raise CompositionError(_no_energy_message())

    def initial_noise(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal points shaped like ``like`` (HMC's default start)."""
        return rng.randn_like(like, generator)

    def __call__(
        self, score: Any, x_init: torch.Tensor, *, sigmas: torch.Tensor | None = None,
        generator: torch.Generator | None = None, callback: Callback | None = None,
    ) -> torch.Tensor:
        """Samples shaped like ``x_init``, one chain per example."""
        return self.run(score, x_init, sigmas=sigmas, generator=generator, callback=callback)[0]

    def run(
        self, score: Any, x_init: torch.Tensor, *, sigmas: torch.Tensor | None = None,
        generator: torch.Generator | None = None, callback: Callback | None = None,
    ) -> tuple[torch.Tensor, HMCSummary]:
        """Like calling the sampler, and also returns the run's :class:`HMCSummary`."""
        sigma = fixed_sigma(self.sigma, sigmas)
        potential = Potential(as_score(score), sigma)
        with sampling_mode(potential.score):
            x, summary = self._run(potential, x_init, sigma, generator, callback)
        return ordinary(x), summary

    def _run(
        self, potential: Potential, x: torch.Tensor, sigma: float | None,
        generator: torch.Generator | None, callback: Callback | None,
    ) -> tuple[torch.Tensor, HMCSummary]:
        state = init(x, potential, metropolis=self.metropolis)
        n_chains, total = x.shape[0], self.n_warmup + self.n_steps
        warmup = Warmup(self, state, potential, generator)
        accept_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        divergent_sum = torch.zeros((), dtype=torch.int64, device=x.device)
        divergent_warmup = 0
        bar = progress_bar(total, "hmc", "transition") if self.progress else None
        summary = None
        for t in range(total):
            in_warmup = t < self.n_warmup
            if t == self.n_warmup:
                warmup.finish()
                divergent_warmup = int(divergent_sum)
                divergent_sum.zero_()
            step_size, inverse_mass = warmup.step_size, warmup.inverse_mass
            state, info = step(state, potential, generator, step_size=self._jittered(step_size, x, generator),
                               n_leapfrog=self.n_leapfrog, inverse_mass=inverse_mass, metropolis=self.metropolis)
            divergent_sum += info.divergent.sum()
            if in_warmup:
                warmup.observe(t, state, info)
            elif info.acceptance_prob is not None:
                accept_sum += info.acceptance_prob.sum()
            if t == total - 1:
                summary = HMCSummary(
                    acceptance_rate=float(accept_sum) / (n_chains * self.n_steps) if self.metropolis else None,
                    step_size=step_size, n_divergent=int(divergent_sum), n_divergent_warmup=divergent_warmup,
                    inverse_mass=ordinary(inverse_mass), n_chains=n_chains, n_warmup=self.n_warmup, n_steps=self.n_steps,
                )
            if callback is not None:
                callback(SamplerStep(
                    step=t, level=None, sigma=sigma, step_size=step_size, score_norm=mean_norm(state.grad),
                    acceptance_rate=None if info.acceptance_prob is None else float(info.acceptance_prob.mean()),
                    warmup=in_warmup, divergent=int(info.divergent.sum()), x=state.position, summary=summary,
                ))
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        assert summary is not None
        if summary.n_divergent:
            warnings.warn(
                f"hmc: {summary.n_divergent} divergent transitions after warm-up (of {n_chains * self.n_steps}); "
                "they were rejected, but the samples may be biased. Lower step_size or raise target_accept",
                RuntimeWarning, stacklevel=3,
            )
        return state.position, summary

    def _jittered(self, step_size: float, x: torch.Tensor, generator: torch.Generator | None) -> float | torch.Tensor:
        if self.jitter == 0:
            return step_size
        u = rng.uniform(x.shape[0], x.device, x.dtype, generator)
        return append_dims(step_size * (1.0 + self.jitter * (2.0 * u - 1.0)), x.ndim)


class Warmup:
    """Stan-style warm-up of one HMC run: dual averaging of the step size throughout
    (restarted after each mass-matrix update) and, for ``mass_matrix="diagonal"``, the
    per-entry variance of the draws in each slow window as the inverse mass matrix.

    ``step_size`` and ``inverse_mass`` are what the next transition uses; ``observe``
    takes each warm-up transition, ``finish`` switches to the averaged step size.
    Unadjusted HMC adapts only the mass matrix.
    """

    def __init__(self, hmc: HMC, state: HMCState, potential: Potential, generator: torch.Generator | None) -> None:
        self.potential, self.generator = potential, generator
        self.adapt_step = hmc.metropolis and hmc.n_warmup > 0
        windows = window_schedule(hmc.n_warmup) if hmc.mass_matrix == "diagonal" else []
        self.window_of = {t: end for start, end in windows for t in range(start, end)}
        self.variance = RunningVariance()
        self.inverse_mass: torch.Tensor | None = None
        self.dual = DualAveraging(target=hmc.target_accept)
        self.step_size = hmc.step_size
        if self.adapt_step:
            self.step_size = find_reasonable_step_size(state, potential, generator, self.step_size)
        self.da_state = self.dual.init(self.step_size)

    def observe(self, t: int, state: HMCState, info: HMCInfo) -> None:
        if self.adapt_step:
            assert info.acceptance_prob is not None
            self.da_state = self.dual.update(self.da_state, float(info.acceptance_prob.mean()))
            self.step_size = self.da_state.step_size
        end = self.window_of.get(t)
        if end is None:
            return
        self.variance = self.variance.update(state.position)
        if t + 1 == end:
            self.inverse_mass = self.variance.variance().to(state.position.dtype)
            self.variance = RunningVariance()
            if self.adapt_step:  # the scale changed: search a step size again and restart (as Stan)
                self.step_size = find_reasonable_step_size(
                    state, self.potential, self.generator, self.step_size, self.inverse_mass
                )
                self.da_state = self.dual.init(self.step_size)

    def finish(self) -> None:
        if self.adapt_step:
            self.step_size = self.da_state.final_step_size
