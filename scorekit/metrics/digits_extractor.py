"""The digits classifier as a torch-fidelity feature extractor, so every metric goes through torch-fidelity."""

from __future__ import annotations

from typing import Any

import torch
from torch_fidelity import FeatureExtractorBase, register_feature_extractor
from torch_fidelity.helpers import vassert
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from scorekit.metrics.classifier import digits_classifier, load_classifier_file

NAME = "scorekit-digits"


class DigitsFeatureExtractor(FeatureExtractorBase):
    """Features ``penultimate`` (64 dims, for FID and KID) and ``logits`` (10, for IS) of uint8 ``B x 1 x 8 x 8`` images.

    ``feature_extractor_weights_path`` is a file written by :func:`digits_classifier`;
    ``None`` trains or loads the classifier in the default cache.
    """

    FEATURES = ("penultimate", "logits")

    def __init__(
        self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            self.net, _ = digits_classifier()
        else:
            self.net, _ = load_classifier_file(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return DigitsFeatureExtractor.FEATURES

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "penultimate", "kid": "penultimate", "prc": "penultimate"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 1, 8, 8, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        vassert(torch.is_tensor(x) and x.dtype == torch.uint8, "Expecting image as torch.Tensor with dtype=torch.uint8")
        vassert(x.dim() == 4 and tuple(x.shape[1:]) == (1, 8, 8), f"Input is not Bx1x8x8: {tuple(x.shape)}")
        feats, logits = self.net.features(x.float() / 255.0)
        named = {"penultimate": feats, "logits": logits}
        return tuple(named[f].double() for f in self.features_list)


def register() -> None:
    """Register :class:`DigitsFeatureExtractor` with torch-fidelity once per process."""
    if NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(NAME, DigitsFeatureExtractor)
