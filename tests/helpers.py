"""Statistics shared by the tests (analytic networks and targets live in scorekit.targets)."""

from __future__ import annotations

import torch


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Sample mean and its standard error."""
    v = values.detach().double()
    return v.mean().item(), (v.std() / v.numel() ** 0.5).item()
