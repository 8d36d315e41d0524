"""Sample quality: FID, Inception score and KID through torch-fidelity, nearest neighbours, the results table.

The held-out Eq. 6 loss is :func:`scorekit.training.heldout_loss`.

>>> from scorekit.metrics import digits_split, evaluate, format_table
>>> split = digits_split()
>>> result = evaluate(samples, split.train_images, real_floor=split.test_images)   # doctest: +SKIP
>>> print(format_table(result))                                                     # doctest: +SKIP

The default extractor ``scorekit-digits`` is a small classifier trained (in about a
second, cached) on the digits train split; ``inception-v3-compat`` is the standard
Inception-v3, used when its weights file is on disk (never downloaded).
"""

from scorekit.errors import (
    ClassifierCacheWarning,
    MetricsInputError,
    SampleCountWarning,
    TooFewSamplesError,
    WeightsNotFoundError,
)
from scorekit.metrics.classifier import DigitsNet, DigitsSplit, digits_classifier, digits_split
from scorekit.metrics.extractors import EXTRACTORS, ExtractorSpec, inception_weights_file
from scorekit.metrics.fidelity import compare, evaluate
from scorekit.metrics.neighbours import nearest_neighbour_grid, nearest_neighbours
from scorekit.metrics.report import format_table

__all__ = [
    "EXTRACTORS",
    "ClassifierCacheWarning",
    "DigitsNet",
    "DigitsSplit",
    "ExtractorSpec",
    "MetricsInputError",
    "SampleCountWarning",
    "TooFewSamplesError",
    "WeightsNotFoundError",
    "compare",
    "digits_classifier",
    "digits_split",
    "evaluate",
    "format_table",
    "inception_weights_file",
    "nearest_neighbour_grid",
    "nearest_neighbours",
]
