"""Checks of data at the call that receives it: never compute on input that yields a silently wrong result."""

from __future__ import annotations

import torch
from torch import nn

from scorekit.errors import DataError


def check_batch(x: object, what: str = "x") -> torch.Tensor:
    """``x`` must be a floating tensor ``[B, ...]`` with B >= 1, at least one dimension per example, and only
    finite values.

    A 1-D tensor is refused rather than guessed at: ``[B]`` could be B examples of one value
    (``x.unsqueeze(1)``, shape ``[B, 1]``) or one example of B values (``x.unsqueeze(0)``).
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{what} must be a torch.Tensor of shape [batch, ...], got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        name = what if what.isidentifier() else "x"
        hint = (f"; for {x.shape[0]} examples of one value use {name}.unsqueeze(1) (shape [{x.shape[0]}, 1]), "
                f"for one example of {x.shape[0]} values {name}.unsqueeze(0)") if x.ndim == 1 and x.shape[0] else ""
        raise DataError(f"{what} must be [batch, ...] with a non-empty batch dimension and at least one dimension "
                        f"per example, got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise DataError(f"{what} must be a floating-point tensor, got {x.dtype}; convert with {what}.float()")
    if x.is_meta:
        raise DataError(f"{what} is on the meta device and holds no values; pass a tensor with data")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(1).nonzero().flatten().tolist()
        raise DataError(f"{what} contains NaN or inf in examples {bad[:10]}{' ...' if len(bad) > 10 else ''}")
    return x


def check_same_device_dtype(network: nn.Module, x: torch.Tensor, what: str = "x") -> None:
    """The network's parameters must live on ``x``'s device with ``x``'s dtype."""
    for p in network.parameters():
        if p.device != x.device:
            raise DataError(
                f"network parameters are on {p.device} but {what} is on {x.device}; "
                f"move one of them, e.g. model.to({str(x.device)!r})"
            )
        if p.is_floating_point() and p.dtype != x.dtype:
            raise DataError(
                f"network parameters are {p.dtype} but {what} is {x.dtype}; "
                f"convert one of them, e.g. {what}.to({p.dtype}) or model.to({x.dtype})"
            )
        return  # the first parameter decides; mixed networks are the network's own business


def check_generator(generator: object, what: str = "generator") -> None:
    """``generator`` must be ``None`` (torch's global generator) or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise DataError(
            f"{what} must be a torch.Generator (e.g. torch.Generator().manual_seed(0)) or None, "
            f"got {type(generator).__name__} {_short(generator)}"
        )


def check_callback(callback: object, what: str = "callback") -> None:
    """``callback`` must be ``None`` or callable (it receives one argument per sampler step)."""
    if callback is not None and not callable(callback):
        raise DataError(f"{what} must be callable as callback(step) or None, got {type(callback).__name__} "
                        f"{_short(callback)}")


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
