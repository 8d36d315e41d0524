"""Checks of data at the call that receives it: never compute on input that yields a silently wrong result."""

from __future__ import annotations

import torch
from torch import nn

from scorekit.errors import DataError


def check_batch(x: object, what: str = "x") -> torch.Tensor:
    """``x`` must be a floating tensor ``[B, ...]`` with B >= 1 and only finite values."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{what} must be a torch.Tensor of shape [batch, ...], got {type(x).__name__}")
    if x.ndim < 1 or x.shape[0] == 0:
        raise DataError(f"{what} must have a non-empty batch dimension first, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"{what} must be a floating-point tensor, got {x.dtype}; convert with {what}.float()")
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
