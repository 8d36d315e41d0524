"""Analytic targets: densities, scores (checked against autograd), perturbation, sampling."""

from __future__ import annotations

import math

import pytest
import torch

from scorekit.score import ScoreFunction
from scorekit.targets import Gaussian, GaussianMixture, TargetEnergyNetwork, TargetScoreNetwork, paper_mixture

COV = torch.tensor([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]], dtype=torch.float64)
MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)


def autograd_score(log_prob, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(log_prob(x).sum(), x)
    return g


def test_gaussian_matches_torch_distribution() -> None:
    g = Gaussian(MEAN, COV)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = torch.distributions.MultivariateNormal(MEAN, COV)
    torch.testing.assert_close(g.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(g.score(x), autograd_score(ref.log_prob, x))


def test_gaussian_perturbed_per_example_sigma() -> None:
    g = Gaussian(MEAN, COV)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 1.0, 3.0], dtype=torch.float64)
    for i, s in enumerate(sigma):
        ref = torch.distributions.MultivariateNormal(MEAN, COV + s**2 * torch.eye(3, dtype=torch.float64))
        torch.testing.assert_close(g.log_prob(x, sigma)[i], ref.log_prob(x[i]))
        torch.testing.assert_close(g.score(x, sigma)[i], autograd_score(ref.log_prob, x[i : i + 1])[0])
        torch.testing.assert_close(g.score(x[i : i + 1], float(s))[0], g.score(x, sigma)[i])


def test_gaussian_rank_agnostic_and_dtype() -> None:
    g = Gaussian(torch.zeros(4), torch.eye(4) * 2.0)
    x = torch.randn(5, 1, 2, 2)
    s = g.score(x, torch.full((5,), 0.5))
    assert s.shape == x.shape and s.dtype == torch.float32
    torch.testing.assert_close(s, -x / 2.25)


def test_gaussian_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="positive definite"):
        Gaussian([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match=r"\[2, 2\]"):
        Gaussian([0.0, 0.0], torch.eye(3))
    with pytest.raises(ValueError, match="entries"):
        Gaussian([0.0, 0.0], torch.eye(2)).score(torch.zeros(3, 5))


def test_gaussian_sample_moments() -> None:
    # 20,000 draws: SE of a mean entry <= sqrt(2/20000) = 0.01, of a covariance entry <= ~0.02; 5 SE tolerances
    g = Gaussian(MEAN, COV)
    x = g.sample(20_000, torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(x.mean(0), MEAN, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), COV, atol=0.1, rtol=0)


def test_gaussian_conditional_matches_formula_on_block() -> None:
    g = Gaussian(MEAN, COV)
    known = torch.tensor([True, False, True])
    x = torch.tensor([[0.0, float("nan"), 1.0]], dtype=torch.float64)
    mean, cov = g.conditional(x, known)
    # invert the precision: the conditional covariance is the inverse of the unknown block of the precision
    precision = torch.linalg.inv(COV)
    torch.testing.assert_close(cov, torch.linalg.inv(precision[1:2, 1:2]))
    expected = MEAN[1] - (precision[1, [0, 2]] @ (x[0, [0, 2]] - MEAN[[0, 2]])) / precision[1, 1]
    torch.testing.assert_close(mean[0, 1], expected)
    assert mean[0, 0] == 0.0 and mean[0, 2] == 1.0


def test_mixture_log_prob_and_score() -> None:
    covs = torch.stack([COV, torch.eye(3, dtype=torch.float64) * 0.5])
    mix = GaussianMixture([0.3, 0.7], torch.stack([MEAN, -MEAN]), covs)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    sigma = torch.linspace(0.1, 2.0, 6, dtype=torch.float64)

    def ref_log_prob(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(3, dtype=torch.float64)
        parts = [
            math.log(w) + torch.distributions.MultivariateNormal(m, c + s**2 * eye).log_prob(x)
            for w, m, c in zip([0.3, 0.7], [MEAN, -MEAN], covs)
        ]
        return torch.logsumexp(torch.stack(parts), 0)

    for i in range(6):
        torch.testing.assert_close(mix.log_prob(x, sigma)[i], ref_log_prob(x[i], sigma[i]))
        torch.testing.assert_close(
            mix.score(x, sigma)[i], autograd_score(lambda z: ref_log_prob(z, sigma[i]), x[i : i + 1])[0]
        )


def test_paper_mixture() -> None:
    mix = paper_mixture()
    torch.testing.assert_close(mix.weights, torch.tensor([0.2, 0.8], dtype=torch.float64))
    x = mix.sample(10_000, torch.Generator().manual_seed(0))
    frac = (x.sum(1) > 0).float().mean().item()
    assert abs(frac - 0.8) < 0.02  # SE sqrt(.16/10000) = 0.004
    # far from both modes the score points back towards them
    s = mix.score(torch.tensor([[20.0, 20.0], [-20.0, -20.0]]))
    assert (s[0] < 0).all() and (s[1] > 0).all()
    # perturbed: at the midpoint the heavier mode wins
    assert (mix.score(torch.zeros(1, 2), 5.0) > 0).all()


def test_mixture_scalar_and_per_component_stds() -> None:
    a = GaussianMixture([0.5, 0.5], [[0.0], [3.0]], stds=[1.0, 2.0])
    b = GaussianMixture([0.5, 0.5], [[0.0], [3.0]], torch.tensor([[[1.0]], [[4.0]]]))
    x = torch.linspace(-3, 6, 10).reshape(10, 1)
    torch.testing.assert_close(a.log_prob(x), b.log_prob(x))
    with pytest.raises(ValueError, match="exactly one"):
        GaussianMixture([1.0], [[0.0]])
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture([0.5, 0.6], [[0.0], [1.0]], stds=1.0)


def test_target_networks() -> None:
    mix = paper_mixture()
    x = torch.randn(5, 2)
    sigma = torch.full((5,), 2.0)
    score_only = ScoreFunction(TargetScoreNetwork(mix))
    with_energy = ScoreFunction(TargetEnergyNetwork(mix))
    assert not score_only.has_energy and with_energy.has_energy
    torch.testing.assert_close(score_only(x, sigma), mix.score(x, sigma))
    torch.testing.assert_close(with_energy.energy(x, sigma), -mix.log_prob(x, sigma))
    torch.testing.assert_close(score_only(x, None), mix.score(x))
