"""Noise-level bookkeeping shared by the plugin's noise-conditional networks.

A noise-conditional network stores its sigmas (strictly descending, sigma_1 > ... > sigma_L)
and receives, for each example, one of them; its conditional normalisations need the
*index* of that level. These helpers validate the schedule, bring ``sigma`` to shape [B],
and map each sigma to its level, with error messages that name the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["SIGMA_RTOL", "as_level_sigmas", "check_images", "sigma_batch", "sigma_to_level"]

#: relative tolerance for matching a sigma to one of the network's levels
SIGMA_RTOL = 1e-4


def as_level_sigmas(sigmas: torch.Tensor | Sequence[float] | None, owner: str) -> torch.Tensor:
    """``sigmas`` as a fresh 1-D tensor of the default dtype; ValueError (naming ``owner``)
    unless it is non-empty, finite, positive and strictly descending."""
    if sigmas is None:
        raise ValueError(
            f"{owner} is noise-conditional: compose it with sigmas (e.g. scorekit.geometric_sigmas(1.0, 0.01, 10))"
        )
    sigmas_t = torch.as_tensor(sigmas, dtype=torch.get_default_dtype()).detach().clone()
    if sigmas_t.ndim != 1 or sigmas_t.numel() == 0:
        raise ValueError(
            f"{owner} needs sigmas as a non-empty 1-D sequence of noise levels, "
            f"got shape {tuple(sigmas_t.shape)}"
        )
    if not bool(torch.isfinite(sigmas_t).all()) or not bool((sigmas_t > 0).all()):
        raise ValueError(f"{owner} needs finite positive sigmas, got {sigmas_t.tolist()}")
    if sigmas_t.numel() > 1 and not bool((sigmas_t[1:] < sigmas_t[:-1]).all()):
        raise ValueError(
            f"{owner} needs strictly descending sigmas (sigma_1 > ... > sigma_L), "
            f"got {sigmas_t.tolist()}"
        )
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
