"""Feature extractors the metrics can use: what images each accepts and where its weights come from.

Both run through torch-fidelity. ``scorekit-digits`` is the embedded digits classifier
(trained on first use, no download); ``inception-v3-compat`` is torch-fidelity's
standard Inception-v3, whose weights file the user provides: scorekit never lets
torch-fidelity download it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import attrs
import torch

from scorekit.errors import MetricsInputError, WeightsNotFoundError

WeightsResolver = Callable[["str | os.PathLike[str] | None", "str | os.PathLike[str] | None"], "tuple[Path, dict[str, Any]]"]

#: torch-fidelity 0.4's Inception-v3 weights (feature_extractor_inceptionv3.URL_INCEPTION_V3)
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FILE = INCEPTION_URL.rsplit("/", 1)[1]


@attrs.frozen(kw_only=True)
class ExtractorSpec:
    """A torch-fidelity feature extractor as scorekit uses it.

    ``channels`` / ``size`` are the image shape it needs (``None``: any); ``layers``
    maps each metric to the feature layer it reads and ``dims`` each layer to its width
    (FID needs more samples than the width of its layer). ``weights(weights_path,
    cache_dir)`` returns the weights file and facts to report, raising when missing.
    """

    name: str
    channels: int | None
    size: tuple[int, int] | None
    layers: dict[str, str]
    dims: dict[str, int]
    weights: WeightsResolver
    register: Callable[[], None] = lambda: None


def inception_weights_file(weights_path: str | os.PathLike[str] | None = None) -> Path:
    """Where the Inception weights are looked for: ``weights_path`` (a file, or a folder holding
    the file), else torch-hub's checkpoint folder, where torch-fidelity itself caches them."""
    if weights_path is None:
        return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    path = Path(weights_path).expanduser()
    return path / INCEPTION_FILE if path.is_dir() else path


def _inception_weights(weights_path: Any, cache_dir: Any) -> tuple[Path, dict[str, Any]]:
    path = inception_weights_file(weights_path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"Inception-v3 weights for extractor 'inception-v3-compat' not found: no file {path}. "
            f"scorekit never downloads them: download {INCEPTION_URL} and save it as {path}"
            + ("" if weights_path is not None else " (torch-hub's checkpoint folder; $TORCH_HOME moves it)")
            + ", or pass weights_path=<the file or its folder>"
        )
    return path, {"weights_file": str(path)}


def _digits_weights(weights_path: Any, cache_dir: Any) -> tuple[Path, dict[str, Any]]:
    from scorekit.metrics.classifier import digits_classifier, load_classifier_file

    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"digits classifier weights not found: no file {path}; pass weights_path=None to train "
                "and cache the classifier (a few seconds, no download)"
            )
        _, info = load_classifier_file(path)
        return path, {"classifier": _public(info), "weights_file": str(path)}
    _, info = digits_classifier(cache_dir)
    return Path(info["cache_file"]), {"classifier": _public(info), "weights_file": info["cache_file"]}


def _public(info: dict[str, Any]) -> dict[str, Any]:
    keep = ("test_accuracy", "train_accuracy", "num_train", "num_test", "code_version", "train_seconds")
    return {k: info[k] for k in keep if k in info}


def _register_digits() -> None:
    from scorekit.metrics.digits_extractor import register

    register()


EXTRACTORS: dict[str, ExtractorSpec] = {
    "scorekit-digits": ExtractorSpec(
        name="scorekit-digits",
        channels=1,
        size=(8, 8),
        layers={"fid": "penultimate", "kid": "penultimate", "isc": "logits"},
        dims={"penultimate": 64, "logits": 10},
        weights=_digits_weights,
        register=_register_digits,
    ),
    "inception-v3-compat": ExtractorSpec(
        name="inception-v3-compat",
        channels=3,
        size=None,
        layers={"fid": "2048", "kid": "2048", "isc": "logits_unbiased"},
        dims={"2048": 2048, "logits_unbiased": 1008},
        weights=_inception_weights,
    ),
}


def get_extractor(name: str) -> ExtractorSpec:
    """The spec registered under ``name``."""
    if name not in EXTRACTORS:
        raise MetricsInputError(f"unknown feature extractor {name!r}; choose one of {sorted(EXTRACTORS)}")
    return EXTRACTORS[name]
