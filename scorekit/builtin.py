"""scorekit's own components, registered through the same hooks as any plugin's (pytest's rule)."""

from __future__ import annotations

from scorekit.digits import digits
from scorekit.estimators.dsm import DenoisingScoreMatching
from scorekit.estimators.exact import ExactScoreMatching
from scorekit.estimators.ssm import SlicedScoreMatching
from scorekit.hookspecs import Register, hookimpl
from scorekit.networks.energy import energy_mlp
from scorekit.networks.mlp import MLP
from scorekit.samplers import HMC, AnnealedHMC, AnnealedLangevin, ConsistentAnnealed, Langevin, PredictorCorrector


@hookimpl
def register_networks(register: Register) -> None:
    register("mlp", MLP)
    register("energy_mlp", energy_mlp)


@hookimpl
def register_estimators(register: Register) -> None:
    register("dsm", DenoisingScoreMatching)
    register("ssm", SlicedScoreMatching)
    register("exact", ExactScoreMatching)


@hookimpl
def register_samplers(register: Register) -> None:
    register("langevin", Langevin)
    register("annealed_langevin", AnnealedLangevin)
    register("hmc", HMC)
    register("annealed_hmc", AnnealedHMC)
    register("consistent_annealed", ConsistentAnnealed)
    register("predictor_corrector", PredictorCorrector)


@hookimpl
def register_datasets(register: Register) -> None:
    register("digits", digits)
