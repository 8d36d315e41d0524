"""Score estimators: per-example losses ``estimator(score, x, *, sigmas, generator) -> [B]``."""

from scorekit.estimators.dsm import DenoisingScoreMatching
from scorekit.estimators.exact import ExactScoreMatching
from scorekit.estimators.ssm import SlicedScoreMatching

__all__ = ["DenoisingScoreMatching", "ExactScoreMatching", "SlicedScoreMatching"]
