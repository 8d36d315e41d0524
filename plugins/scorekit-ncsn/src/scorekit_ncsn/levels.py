"""Noise-level bookkeeping shared by the plugin's noise-conditional networks.

A noise-conditional network stores its sigmas (strictly descending, sigma_1 > ... > sigma_L)
and receives, for each example, one of them; its conditional normalisations need the
*index* of that level. These helpers validate the schedule once, in the constructor (with
scorekit's own check), bring ``sigma`` to shape [B], and map each sigma to its level, with
error messages that name the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from scorekit.errors import CompositionError
from scorekit.sigmas import as_sigmas

__all__ = ["SIGMA_RTOL", "as_level_sigmas", "check_images", "sigma_batch", "sigma_to_level"]

#: relative tolerance for matching a sigma to one of the network's levels
SIGMA_RTOL = 1e-4


def as_level_sigmas(sigmas: torch.Tensor | Sequence[float] | None, owner: str) -> torch.Tensor:
    """``sigmas`` as a fresh 1-D tensor of the default dtype, checked by
    :func:`scorekit.sigmas.as_sigmas` (non-empty, finite, positive, strictly descending);
    ValueError naming ``owner`` otherwise. Called once, by the constructor: ``forward``
    trusts the stored levels."""
    if sigmas is None:
        raise ValueError(
            f"{owner} is noise-conditional: compose it with sigmas (e.g. scorekit.geometric_sigmas(1.0, 0.01, 10))"
        )
    if torch.is_tensor(sigmas):
        sigmas = sigmas.to(torch.get_default_dtype())  # the stored levels keep the default dtype, as a list's do
    try:
        sigmas_t = as_sigmas(sigmas)
    except CompositionError as exc:  # a constructor's argument error: ValueError, naming the network
        raise ValueError(f"{owner}: {exc}") from None
    assert sigmas_t is not None
    return sigmas_t


def sigma_batch(
    sigma: torch.Tensor | float | None, x: torch.Tensor, sigmas: torch.Tensor, owner: str
) -> torch.Tensor:
    """``sigma`` as a tensor of shape [B] on ``x``'s device (a scalar is used for the whole batch).

    Raises ValueError when it is missing (the network is noise-conditional) or misshapen.
    """
    if sigma is None:
        raise ValueError(
            f"{owner} is noise-conditional: forward(x, sigma) needs sigma, a tensor of shape "
            f"[B] with each example's noise level, one of {sigmas.tolist()}"
        )
    sigma_t = torch.as_tensor(sigma, device=x.device)
    batch = x.shape[0]
    if sigma_t.ndim == 0:
        sigma_t = sigma_t.expand(batch)
    if tuple(sigma_t.shape) != (batch,):
        raise ValueError(
            f"{owner} needs sigma of shape [B] = [{batch}] (or a scalar), "
            f"got shape {tuple(sigma_t.shape)}"
        )
    return sigma_t


def sigma_to_level(sigmas: torch.Tensor, sigma: torch.Tensor, owner: str) -> torch.Tensor:
    """Indices (long, shape [B]) of the levels in ``sigmas`` that the entries of ``sigma`` match.

    A sigma matches level ``j`` when ``|sigma - sigmas[j]| <= 1e-4 * sigmas[j]``.
    Raises ValueError, naming ``owner`` and the levels, for a sigma that matches none.
    """
    levels = sigmas.to(device=sigma.device, dtype=torch.float64)
    s = sigma.detach().to(torch.float64)
    rel_err = (s[:, None] - levels[None, :]).abs() / levels[None, :]  # [B, L]
    best_err, best = rel_err.min(dim=1)
    bad = ~(best_err <= SIGMA_RTOL)  # also catches NaN
    if bool(bad.any()):
        unknown = sorted({float(v) for v in s[bad].cpu().tolist()})
        raise ValueError(
            f"{owner} got sigma value(s) {unknown} that are not among its noise levels "
            f"(relative tolerance {SIGMA_RTOL:g}); levels: {sigmas.tolist()}"
        )
    return best


def check_images(x: torch.Tensor, owner: str, channels: int, image_size: int) -> None:
    """ValueError naming ``owner`` unless ``x`` is ``[B, channels, image_size, image_size]``."""
    expected = (channels, image_size, image_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"{owner}(channels={channels}, image_size={image_size}) got input of shape {tuple(x.shape)}; "
            f"expected [B, {channels}, {image_size}, {image_size}]"
        )
