"""Registers the template's components with scorekit: the only module that imports ``hookimpl``.

scorekit loads it through the entry point ``template`` of the group ``scorekit`` (see
pyproject.toml), or in-process with ``scorekit.register_plugin(scorekit_plugin_template.plugin)``.
"""

from __future__ import annotations

from scorekit import hookimpl
from scorekit.hookspecs import Register
from scorekit_plugin_template.predictor_corrector import PredictorCorrector
from scorekit_plugin_template.tweedie_mlp import tweedie_mlp
from scorekit_plugin_template.weighted_dsm import WeightedDSM


@hookimpl
def register_networks(register: Register) -> None:
    register("tweedie_mlp", tweedie_mlp)


@hookimpl
def register_estimators(register: Register) -> None:
    register("weighted_dsm", WeightedDSM)


@hookimpl
def register_samplers(register: Register) -> None:
    register("pc", PredictorCorrector)
