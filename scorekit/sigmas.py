"""Noise-level schedules (the sigmas of Eq. 6 and Algorithm 1)."""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch

from scorekit.errors import CompositionError


def geometric_sigmas(first: float, last: float, n: int) -> torch.Tensor:
    """``n`` noise levels in geometric progression from ``first`` down to ``last``.

    The paper's schedule is ``geometric_sigmas(1.0, 0.01, 10)`` (section 5). The ends are
    exact; the result is a 1-D tensor of the default float dtype. Bad arguments raise
    :class:`CompositionError` (a ``ValueError``).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CompositionError(f"geometric_sigmas: n must be an integer >= 1, got {n!r}")
    real = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (first, last))
    if not real or not (math.isfinite(first) and math.isfinite(last)) or first <= 0 or last <= 0:
        raise CompositionError(f"geometric_sigmas: first and last must be finite numbers > 0, got {first!r}, {last!r}")
    if n == 1:
        if first != last:
            raise CompositionError(f"geometric_sigmas: with n = 1, first ({first}) and last ({last}) must be equal")
        return torch.tensor([float(first)], dtype=torch.get_default_dtype())
    if not first > last:
        raise CompositionError(f"geometric_sigmas: sigmas descend, so first ({first}) must be > last ({last})")
    logs = torch.linspace(math.log(first), math.log(last), n, dtype=torch.float64)
    out = logs.exp()
    out[0], out[-1] = first, last
    return out.to(torch.get_default_dtype())


def ncsnv2_sigma_max(data: torch.Tensor) -> float:
    """NCSNv2's advice for sigma_1 (Song & Ermon 2020, Technique 1): the largest Euclidean
    distance between two training examples. ``data`` is ``[N, ...]``; O(N^2) memory in
    chunks, so pass a subsample of a few thousand examples."""
    flat = data.reshape(data.shape[0], -1).to(torch.float64)
    if flat.shape[0] < 2:
        raise ValueError("ncsnv2_sigma_max needs at least 2 examples")
    best = 0.0
    for chunk in flat.split(1024):
        best = max(best, torch.cdist(chunk, flat).max().item())
    return best


def as_sigmas(sigmas: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    """Validate a noise-level schedule: 1-D, non-empty, finite, positive, strictly decreasing.

    The one check of a schedule, made where it enters (``compose()``, a network's
    constructor, the run config); estimators, samplers and networks trust the result.
    Returns a fresh tensor (floating; a non-tensor or an integer tensor becomes the default
    dtype), or None. Complex or bool values are a :class:`CompositionError` naming the dtype.
    """
    if sigmas is None:
        return None
    try:
        t = torch.as_tensor(sigmas) if not torch.is_tensor(sigmas) else sigmas.detach()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CompositionError(f"sigmas must be a 1-D sequence or tensor of floats, got {sigmas!r}") from exc
    # complex levels would lose their imaginary part, bools would become 0 and 1: neither is a schedule
    if t.is_complex() or t.dtype == torch.bool:
        raise CompositionError(f"sigmas must be real numbers (a floating or integer dtype), got dtype {t.dtype}: "
                               f"{t.tolist()}")
    if not t.is_floating_point() or not torch.is_tensor(sigmas):  # integers and non-tensors: the default dtype
        t = t.to(torch.get_default_dtype())
    if t.is_meta:
        raise CompositionError("sigmas are on the meta device and hold no values; pass them as numbers")
    if t.ndim != 1 or t.numel() == 0:
        raise CompositionError(f"sigmas must be a non-empty 1-D sequence of floats, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (t <= 0).any():
        raise CompositionError(f"sigmas must be finite and positive (> 0), got {t.tolist()}")
    if t.numel() > 1 and not (t[1:] < t[:-1]).all():
        raise CompositionError(
            "sigmas must be strictly decreasing, largest noise first (strictly descending sigma_1 > ... > sigma_L, "
            f"as in Algorithm 1), got {t.tolist()}"
        )
    return t.clone()
