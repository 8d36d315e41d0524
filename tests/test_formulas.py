"""Lines of mathematics that other tests let through, each pinned by an exact formula or a seeded statistic.

Written against the mutants a mutation run over scorekit/estimators and scorekit/samplers left alive: the
level probabilities' log-normal bump, the lambda(sigma) weighting of ssm and exact, exact's max_dim boundary,
the noisy copy of the known entries that inpainting draws at each level (Algorithm 2), HMC's divergence test
on a non-finite energy, and the energy error that unadjusted HMC estimates from the score.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from scorekit.errors import DataError
from scorekit.estimators import ExactScoreMatching, SlicedScoreMatching
from scorekit.estimators.common import log_normal_level_probs
from scorekit.samplers import AnnealedLangevin, SamplerStep
from scorekit.samplers import hmc as hmc_core
from scorekit.score import ScoreFunction
from scorekit.targets import StandardGaussianScore


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- dsm's level draw: p_i = u / L + (1 - u) w_i / sum(w), w_i = exp(-(ln sigma_i - ln m)^2 / (2 s^2)) ----------


@given(median=st.floats(1e-2, 1e2), std=st.floats(0.1, 3.0), uniform=st.floats(0.0, 1.0), n=st.integers(2, 12))
def test_level_probabilities_are_the_documented_log_normal_mixture(median, std, uniform, n):
    sigmas = torch.logspace(1.0, -2.0, n, dtype=torch.float64)
    w = [math.exp(-((math.log(s) - math.log(median)) ** 2) / (2 * std**2)) for s in sigmas.tolist()]
    # written out without the softmax: on these ranges the nearest level lies at most ln(1000) / 2 = 3.45 from the
    # median in log, so its w >= exp(-3.45^2 / (2 * 0.1^2)) = exp(-596) does not underflow (float64: exp(-745))
    expected = torch.tensor([uniform / n + (1 - uniform) * wi / sum(w) for wi in w], dtype=torch.float64)
    torch.testing.assert_close(log_normal_level_probs(sigmas, median=median, std=std, uniform=uniform), expected)


def test_level_probabilities_by_hand():
    # three levels one e-fold apart, median on the middle one, std 0.5: w = (e^-2, 1, e^-2), uniform 0.4
    sigmas = torch.tensor([math.e, 1.0, 1 / math.e], dtype=torch.float64)
    w = torch.tensor([math.exp(-2.0), 1.0, math.exp(-2.0)], dtype=torch.float64)
    expected = 0.4 / 3 + 0.6 * w / w.sum()  # (0.1972, 0.6055, 0.1972); std 1 gives (0.2978, 0.4045, 0.2978)
    torch.testing.assert_close(log_normal_level_probs(sigmas, median=1.0, std=0.5, uniform=0.4), expected)


# --- ssm and exact weight each example's loss by lambda(sigma) ------------------------------------------------


class ConstantOverSigma(nn.Module):
    """``s(x, sigma) = c / sigma``: no Jacobian, so every estimator's loss is ``lambda(sigma) ||c||^2 / (2 sigma^2)``
    (ssm with variance reduction and exact: ``tr(ds/dx) + ||s||^2 / 2``); with lambda = sigma^2 that is
    ``||c||^2 / 2`` whichever level an example drew."""

    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        assert sigma is not None
        return self.c.to(x) / sigma.reshape(-1, *([1] * (x.ndim - 1))) + 0 * x


ESTIMATORS = {
    "ssm-forward": lambda **kw: SlicedScoreMatching(jacobian_mode="forward", **kw),
    "ssm-reverse": lambda **kw: SlicedScoreMatching(jacobian_mode="reverse", n_projections=3, **kw),
    "ssm-finite-difference": lambda **kw: SlicedScoreMatching(jacobian_mode="finite_difference", **kw),
    "exact": lambda **kw: ExactScoreMatching(**kw),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_conditional_losses_are_weighted_by_sigma_squared(name):
    c = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    sigmas = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64)
    x = torch.randn(64, 3, generator=gen(0), dtype=torch.float64)
    score = ScoreFunction(ConstantOverSigma(c))
    half_norm = 0.5 * float(c.pow(2).sum())  # 7
    weighted = ESTIMATORS[name]()(score, x, sigmas=sigmas, generator=gen(1))
    torch.testing.assert_close(weighted, torch.full((64,), half_norm, dtype=torch.float64))
    # lambda = 1: ||c||^2 / (2 sigma^2), one of the three levels' values for each example, and 64 uniform
    # draws over 3 levels hit every level (a miss has probability 3 (2/3)^64 < 1e-10)
    plain = ESTIMATORS[name](weighting="none")(score, x, sigmas=sigmas, generator=gen(1))
    levels = torch.tensor([half_norm / s**2 for s in sigmas.tolist()], dtype=torch.float64)
    nearest = (plain[:, None] - levels[None, :]).abs().argmin(1)
    torch.testing.assert_close(plain, levels[nearest])
    assert set(nearest.tolist()) == {0, 1, 2}


# --- exact's dimension limit: at most max_dim, not fewer -------------------------------------------------------


def test_exact_accepts_max_dim_dimensions_and_refuses_one_more():
    A = torch.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, -3.0, 1.0, 0.0], [0.5, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 2.0]],
                     dtype=torch.float64)
    x = torch.randn(5, 4, generator=gen(0), dtype=torch.float64)
    losses = ExactScoreMatching(max_dim=4)(lambda x, sigma: x @ A.T, x, sigmas=None)
    torch.testing.assert_close(losses, torch.trace(A) + 0.5 * (x @ A.T).pow(2).sum(1))  # Eq. 1 for s = A x
    with pytest.raises(DataError, match="5 dimensions, above its max_dim=4"):
        ExactScoreMatching(max_dim=4)(lambda x, sigma: x, torch.zeros(2, 5), sigmas=None)


# --- inpainting (Algorithm 2): the known entries follow y + sigma_i z, one z per level --------------------------


def test_inpainting_holds_the_known_entries_on_a_fresh_noisy_copy_of_y_at_each_level():
    sigmas = torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)
    known = torch.tensor([True, False, True, False])
    y = torch.tensor([1.5, float("nan"), -0.5, float("nan")], dtype=torch.float64).expand(4000, 4)
    steps: list[SamplerStep] = []
    sampler = AnnealedLangevin(step_size=0.01, steps_per_level=3, init_range=(-1.0, 1.0))
    out = sampler.inpaint(StandardGaussianScore(), y, known, sigmas=sigmas, generator=gen(0), callback=steps.append)
    assert torch.equal(out[:, known], y[:, known])  # the final projection: y itself
    by_level = [[s.x[:, known] - y[:, known] for s in steps if s.level == i] for i in range(3)]
    for i, noise in enumerate(by_level):
        assert len(noise) == 3 and all(torch.equal(n, noise[0]) for n in noise)  # drawn once per level
        # 8,000 draws of sigma_i z: the SE of the std is sigma_i / sqrt(2 * 8000) = 0.8% and of the mean
        # 1.1% of sigma_i, so 5% and 6% are 6 and 5 SE. Without the noise both are 0; sigma_i^2 z (4x and 2x
        # too large at the first two levels) or a draw shared by the levels fail by far
        draws = noise[0].flatten()
        assert abs(draws.std().item() / sigmas[i].item() - 1) < 0.05, (i, draws.std().item())
        assert abs(draws.mean().item()) < 0.06 * sigmas[i].item()
    first, second = by_level[0][0], by_level[1][0]
    # independent draws per level: the correlation of consecutive levels' z is ~N(0, 1/8000), |r| < 0.05 is 4.5 SE
    r = torch.corrcoef(torch.stack([first.flatten(), second.flatten()]))[0, 1].item()
    assert abs(r) < 0.05


# --- HMC: a proposal whose energy is NaN is divergent, and rejected ----------------------------------------------


class NaNEnergyAwayFromZero(StandardGaussianScore):
    """The score of N(0, I), with an energy that is finite only at the origin (where the chains start)."""

    def energy(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        e = super().energy(x, sigma)
        return torch.where(x.flatten(1).abs().sum(1) == 0, e, torch.full_like(e, float("nan")))


def test_a_proposal_with_a_nan_energy_is_divergent_and_rejected():
    potential = hmc_core.Potential(ScoreFunction(NaNEnergyAwayFromZero()), None)
    start = torch.zeros(16, 2, dtype=torch.float64)
    state = hmc_core.init(start, potential)
    new, info = hmc_core.step(state, potential, gen(0), step_size=0.1, n_leapfrog=3)
    # the positions stay finite (the score is that of N(0, I)); only the energy error is NaN
    assert bool(info.divergent.all()) and not bool(info.accepted.any())
    assert info.acceptance_prob is not None and bool((info.acceptance_prob == 0).all())
    assert torch.equal(new.position, start)


def test_unadjusted_energy_error_is_the_exact_one_on_a_gaussian():
    """Without an energy, step() estimates H(proposal) - H(start) as dK - W, W the score's line integral along the
    leapfrog path (trapezoid rule: exact for the linear score of a Gaussian). With the same generator seed both
    modes draw the same momentum and run the same trajectory, so the estimate equals the Metropolis mode's
    E(q) - E(x) + dK to rounding; dK + W (a flipped sign) is off by 2 dE."""
    potential = hmc_core.Potential(ScoreFunction(StandardGaussianScore()), None)
    x = torch.randn(32, 3, generator=gen(0), dtype=torch.float64)
    _, exact = hmc_core.step(hmc_core.init(x, potential), potential, gen(1), step_size=0.4, n_leapfrog=7)
    _, estimated = hmc_core.step(hmc_core.init(x, potential, metropolis=False), potential, gen(1), step_size=0.4,
                                 n_leapfrog=7, metropolis=False)
    assert exact.energy_error.abs().max() > 1e-3  # a step large enough that the energy is not conserved
    torch.testing.assert_close(estimated.energy_error, exact.energy_error)
