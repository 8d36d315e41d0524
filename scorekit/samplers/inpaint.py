"""Known-entry projection for inpainting (Algorithm 2, appendix B.3).

The Langevin loop is shared with generation; inpainting only adds a projection that,
at the start of each level, draws ``y~ = y + sigma_i z`` and after every update sets
``x = x * (1 - m) + y~ * m``. Any occlusion shape works: the mask is any pattern that
broadcasts to ``y``.
"""

from __future__ import annotations

from typing import Any

import torch

from scorekit import rng
from scorekit.errors import DataError


def bool_mask(mask: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A bool or 0/1 ``mask`` as a bool tensor on ``y``'s device, unchecked (:func:`check_mask` checks)."""
    return (mask if mask.dtype == torch.bool else mask != 0).to(y.device)


def check_mask(mask: Any, y: torch.Tensor) -> torch.Tensor:
    """``mask`` (bool, or 0/1 numbers; 1 on known entries) as a bool tensor on ``y``'s device.

    It must broadcast to ``y`` without enlarging it; the result keeps its own shape.
    ``ScoreModel.inpaint`` calls it; the samplers trust the mask they are given.
    """
    if not isinstance(mask, torch.Tensor):
        try:
            mask = torch.as_tensor(mask)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"mask must be a bool or 0/1 tensor, got {type(mask).__name__}") from exc
    try:
        ok = torch.broadcast_shapes(mask.shape, y.shape) == y.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise DataError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to y of shape {tuple(y.shape)}; "
            "use a mask shaped like y, or like y without some leading/singleton dims (e.g. [1, ...] for every example)"
        )
    if mask.dtype != torch.bool and (mask.is_complex() or not ((mask == 0) | (mask == 1)).all()):
        raise DataError("mask must be bool or contain only 0 and 1 (1 on known entries)")
    return bool_mask(mask, y)


def check_known(y: torch.Tensor, mask: torch.Tensor) -> None:
    """The known entries of ``y`` must be finite (its unknown entries are ignored, NaN allowed)."""
    if not torch.isfinite(torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))).all():
        raise DataError("y has NaN or inf in known entries (where mask is 1)")


class KnownEntries:
    """The projection of Algorithm 2: keeps the known entries of ``x`` on noisy copies of ``y``."""

    def __init__(self, y: torch.Tensor, mask: torch.Tensor) -> None:
        self.y = y
        self.mask = mask
        self.target = y

    def begin_level(self, x: torch.Tensor, sigma: float | None, generator: torch.Generator | None) -> torch.Tensor:
        """Draw ``y~ = y + sigma z`` for this level and project ``x`` onto it."""
        self.target = self.y if sigma is None else self.y + sigma * rng.randn_like(self.y, generator)
        return self(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``x * (1 - m) + y~ * m``, exact for any values (a select, not arithmetic)."""
        return torch.where(self.mask, self.target, x)

    def final(self, x: torch.Tensor) -> torch.Tensor:
        """The last projection: known entries equal ``y`` bit for bit."""
        return torch.where(self.mask, self.y, x)
