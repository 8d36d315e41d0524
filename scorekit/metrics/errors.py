"""Errors and warnings of :mod:`scorekit.metrics`; every message says what is wrong and what to do."""

from __future__ import annotations

from scorekit.errors import DataError


class MetricsInputError(DataError):
    """Images or options that a metric cannot use: wrong shape, NaN, values outside [0, 1], unknown names."""


class TooFewSamplesError(MetricsInputError):
    """Fewer samples than a metric needs (e.g. FID needs more samples than feature dimensions)."""


class WeightsNotFoundError(MetricsInputError, FileNotFoundError):
    """A feature extractor's weights file is missing; scorekit never downloads it, the message says where to put it."""


class SampleCountWarning(UserWarning):
    """FID on fewer than 10,000 samples, or figures from different sample counts being compared.

    FID is biased upward by an amount that shrinks with the sample count, so only
    figures computed on equal counts are comparable.
    """


class ClassifierCacheWarning(UserWarning):
    """A cached digits classifier could not be read and was retrained."""
