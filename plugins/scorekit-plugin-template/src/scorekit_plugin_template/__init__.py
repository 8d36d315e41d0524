"""A minimal scorekit plugin: one network, one estimator and one sampler, each with its own options.

The algorithm modules are plain PyTorch and attrs; only :mod:`scorekit_plugin_template.plugin`
knows about scorekit's plugin hooks.
"""

from scorekit_plugin_template.predictor_corrector import PredictorCorrector
from scorekit_plugin_template.tweedie_mlp import TweedieMLP, TweedieMLPConfig, tweedie_mlp
from scorekit_plugin_template.weighted_dsm import WeightedDSM

__all__ = ["PredictorCorrector", "TweedieMLP", "TweedieMLPConfig", "WeightedDSM", "tweedie_mlp"]
