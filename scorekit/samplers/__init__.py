"""Samplers: plain PyTorch, no plugin machinery (``scorekit.builtin`` registers them).

Each sampler is a frozen attrs config that is its own factory (``Langevin(step_size=0.1)``)
and is called as ``sampler(score, x_init, *, sigmas, generator=None, callback=None)``. It trusts
its arguments as ``ScoreModel`` passes them: ``x_init`` a finite floating ``[B, ...]`` tensor and
``sigmas`` a 1-D tensor, largest first, already validated by ``compose()``.
"""

from scorekit.samplers.adaptation import DualAveraging, DualAveragingState, RunningVariance, window_schedule
from scorekit.samplers.annealed import AnnealedLangevin
from scorekit.samplers.annealed_hmc import AnnealedHMC
from scorekit.samplers.consistent import ConsistentAnnealed
from scorekit.samplers.hmc import HMC, HMCInfo, HMCState, HMCSummary, Potential
from scorekit.samplers.info import SamplerStep
from scorekit.samplers.inpaint import KnownEntries, check_mask
from scorekit.samplers.langevin import Langevin, LangevinFamily, Level, run_levels
from scorekit.samplers.predictor_corrector import PredictorCorrector

__all__ = [
    "AnnealedHMC",
    "AnnealedLangevin",
    "ConsistentAnnealed",
    "DualAveraging",
    "DualAveragingState",
    "HMC",
    "HMCInfo",
    "HMCState",
    "HMCSummary",
    "KnownEntries",
    "Langevin",
    "LangevinFamily",
    "Level",
    "Potential",
    "PredictorCorrector",
    "RunningVariance",
    "SamplerStep",
    "check_mask",
    "run_levels",
    "window_schedule",
]
