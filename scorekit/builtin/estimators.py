"""Registers scorekit's built-in score estimators."""

from scorekit.estimators.dsm import DenoisingScoreMatching
from scorekit.estimators.exact import ExactScoreMatching
from scorekit.estimators.ssm import SlicedScoreMatching
from scorekit.hookspecs import Register, hookimpl


@hookimpl
def register_estimators(register: Register) -> None:
    register("dsm", DenoisingScoreMatching)
    register("ssm", SlicedScoreMatching)
    register("exact", ExactScoreMatching)
