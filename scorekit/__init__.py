"""scorekit: pluggable score estimators and samplers for score-based generative models.

>>> import scorekit
>>> model = scorekit.compose(estimator="dsm", sampler="annealed_langevin")
"""

from scorekit.api import compose
from scorekit.errors import (
    CompositionError,
    DataError,
    DivergenceError,
    OptionError,
    PluginConflictError,
    PluginLoadError,
    ScorekitError,
    UnknownComponentError,
)
from scorekit.hookspecs import hookimpl
from scorekit.model import ScoreModel
from scorekit.plugins import PluginHost, get_host, register_plugin, reset_host
from scorekit.sigmas import geometric_sigmas, ncsnv2_sigma_max

__version__ = "0.1.0"

__all__ = [
    "CompositionError",
    "DataError",
    "DivergenceError",
    "OptionError",
    "PluginConflictError",
    "PluginHost",
    "PluginLoadError",
    "ScoreModel",
    "ScorekitError",
    "UnknownComponentError",
    "compose",
    "geometric_sigmas",
    "get_host",
    "hookimpl",
    "ncsnv2_sigma_max",
    "register_plugin",
    "reset_host",
]
