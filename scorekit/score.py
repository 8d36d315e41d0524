"""The score function that estimators and samplers call: a network with its contract checked.

A network is ``network(x, sigma) -> tensor shaped like x``. :class:`ScoreFunction` wraps
one, checks that contract on every call (a shape mismatch is an error, never a silent
broadcast) and exposes ``energy(x, sigma)`` when the network has one, for samplers
that need a Metropolis correction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from scorekit.errors import DataError


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a per-example ``[B]`` tensor broadcasts against ``[B, ...]``."""
    missing = ndim - t.ndim
    if missing < 0:
        raise ValueError(f"append_dims: tensor has {t.ndim} dims, more than the target {ndim}")
    return t.reshape(t.shape + (1,) * missing)


def rows(t: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` as ``[B, n]`` (one row per example; ``[B]`` data gives ``[B, 1]``)."""
    return t.reshape(t.shape[0], -1)


def sigma_batch(sigma: float | torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """A noise level as the ``[B]`` tensor a network receives, in the dtype and on the device of ``x``."""
    if sigma is None:
        return None
    return torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0]).contiguous()


class ScoreFunction:
    """``score(x, sigma)``: calls ``network`` and checks its output shape.

    ``label`` names the network in error messages.
    """

    def __init__(self, network: nn.Module, label: str = "network") -> None:
        self.network = network
        self.label = label

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        try:
            out = self.network(x, sigma)
        except ValueError as exc:  # networks report input they cannot take with ValueError
            raise DataError(f"{self.label} rejected input of shape {tuple(x.shape)}: {exc}") from exc
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise DataError(
                f"{self.label} returned shape {got} for input of shape {tuple(x.shape)}; "
                "a score network must return a tensor shaped like its input"
            )
        return out

    @property
    def has_energy(self) -> bool:
        """Whether the network exposes ``energy(x, sigma) -> [B]`` (needed for Metropolis tests)."""
        return callable(getattr(self.network, "energy", None))

    def energy(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """Per-example energy ``E(x, sigma)`` with ``score = -dE/dx``."""
        if not self.has_energy:
            raise DataError(f"{self.label} has no energy(x, sigma); only its score is available")
        out = self.network.energy(x, sigma)
        if out.shape != x.shape[:1]:
            raise DataError(f"{self.label}.energy returned shape {tuple(out.shape)}; expected [batch] = {tuple(x.shape[:1])}")
        return out


def as_score(score: Any) -> ScoreFunction:
    """``score`` as a :class:`ScoreFunction` (a bare network or callable ``f(x, sigma)`` is wrapped)."""
    return score if isinstance(score, ScoreFunction) else ScoreFunction(score)
