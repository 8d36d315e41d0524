"""Analytic ground truth with exact scores, for tests, examples and benchmarks: Gaussians and mixtures
(exact and perturbed by N(0, sigma^2 I)), and score networks with known answers."""

from scorekit.targets.gaussian import CorrelatedGaussian, Gaussian
from scorekit.targets.mixture import GaussianMixture, paper_mixture
from scorekit.targets.network import (
    LinearScore,
    StandardGaussianScore,
    Target,
    TargetEnergyNetwork,
    TargetScoreNetwork,
)

__all__ = [
    "CorrelatedGaussian",
    "Gaussian",
    "GaussianMixture",
    "LinearScore",
    "StandardGaussianScore",
    "Target",
    "TargetEnergyNetwork",
    "TargetScoreNetwork",
    "paper_mixture",
]
