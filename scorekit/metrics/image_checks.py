"""Checks of the images handed to the metrics, before any feature is extracted."""

from __future__ import annotations

import torch

from scorekit.errors import MetricsInputError
from scorekit.metrics.extractors import ExtractorSpec


def check_images(x: object, what: str) -> torch.Tensor:
    """``x`` must be a floating ``[N, C, H, W]`` tensor, finite, with every pixel in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise MetricsInputError(f"{what} must be a torch.Tensor [N, C, H, W] with pixels in [0, 1], got {type(x).__name__}")
    if x.ndim != 4 or x.shape[0] == 0:
        raise MetricsInputError(
            f"{what} must be a non-empty batch of images [N, C, H, W], got shape {tuple(x.shape)}; "
            "add the channel dimension with x.unsqueeze(1) for [N, H, W] grayscale images"
        )
    if not x.is_floating_point():
        raise MetricsInputError(
            f"{what} must be floating-point with pixels in [0, 1], got {x.dtype}; for uint8 images use x.float() / 255"
        )
    finite = torch.isfinite(x)
    if not finite.all():
        bad = (~finite).flatten(1).any(1).nonzero().flatten().tolist()
        more = " ..." if len(bad) > 10 else ""
        raise MetricsInputError(
            f"{what} contains NaN or inf in {len(bad)} of {x.shape[0]} images (indices {bad[:10]}{more}); "
            "a sampler that diverged produces these: lower its step size, or drop those images knowingly"
        )
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        hint = " (they look like [-1, 1] images: use (x + 1) / 2)" if lo >= -1.0 and lo < 0.0 and hi <= 1.0 else ""
        raise MetricsInputError(
            f"{what} must have pixels in [0, 1], got min {lo:.4g} and max {hi:.4g}{hint}; "
            "clamp with x.clamp(0, 1) (as the paper's samples are) or rescale"
        )
    return x


def fit_to_extractor(x: torch.Tensor, what: str, spec: ExtractorSpec, repeat_channels: bool) -> torch.Tensor:
    """Check ``x``'s image shape against what ``spec`` accepts; repeat 1 channel to 3 only when asked."""
    c, h, w = x.shape[1:]
    if c == 1 and spec.channels == 3:
        if not repeat_channels:
            raise MetricsInputError(
                f"{what} are grayscale (1 x {h} x {w}) but extractor {spec.name!r} needs 3 channels; "
                "pass repeat_channels=True to repeat the gray channel 3 times (a choice to report beside the figures)"
            )
        x = x.expand(-1, 3, -1, -1)
        c = 3
    if spec.channels is not None and c != spec.channels:
        raise MetricsInputError(
            f"{what} have {c} channels but extractor {spec.name!r} needs {spec.channels}"
            + (" (convert to grayscale, e.g. x.mean(1, keepdim=True))" if spec.channels == 1 else "")
        )
    if spec.size is not None and (h, w) != spec.size:
        sh, sw = spec.size
        raise MetricsInputError(
            f"{what} are {c} x {h} x {w} but extractor {spec.name!r} needs {spec.channels} x {sh} x {sw}; "
            f"resize with torch.nn.functional.interpolate(x, size=({sh}, {sw}), mode='area'), "
            "or use extractor='inception-v3-compat' for images of any size"
        )
    return x
