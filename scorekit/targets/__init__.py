"""Analytic targets with exact scores: ground truth for tests, examples and benchmarks."""

from scorekit.targets.gaussian import Gaussian
from scorekit.targets.mixture import GaussianMixture, paper_mixture
from scorekit.targets.network import Target, TargetEnergyNetwork, TargetScoreNetwork

__all__ = ["Gaussian", "GaussianMixture", "Target", "TargetEnergyNetwork", "TargetScoreNetwork", "paper_mixture"]
