"""Pieces every sampler shares: argument normalisation and the divergence monitor."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from scorekit.batch_checks import check_batch
from scorekit.errors import DivergenceError
from scorekit.score import ScoreFunction
from scorekit.sigmas import as_sigmas

Callback = Callable[[Any], None]


def rows(t: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` as ``[B, n]`` (one row per example; ``[B]`` data gives ``[B, 1]``)."""
    return t.reshape(t.shape[0], -1)


def progress_bar(total: int, desc: str, unit: str) -> Any:
    """A tqdm bar (imported only when asked for)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


def as_score(score: Any) -> ScoreFunction:
    """``score`` as a :class:`ScoreFunction` (a bare network or callable ``f(x, sigma)`` is wrapped)."""
    return score if isinstance(score, ScoreFunction) else ScoreFunction(score)


def check_init(x_init: Any, what: str = "x_init") -> torch.Tensor:
    """A floating ``[B, ...]`` tensor with only finite values, else :class:`DataError`."""
    return check_batch(x_init, what)


def levels_of(sigmas: Sequence[float] | torch.Tensor | None) -> list[float] | None:
    """The composition's sigmas as a list of Python floats (validated: 1-D, positive, descending)."""
    t = as_sigmas(sigmas)
    return None if t is None else [float(s) for s in t.tolist()]


def fixed_sigma(option: float | None, sigmas: Sequence[float] | torch.Tensor | None) -> float | None:
    """The single noise level of a one-level sampler: the ``sigma`` option, else the smallest
    of the composition's sigmas, else None (an unconditional network gets ``sigma=None``)."""
    if option is not None:
        return float(option)
    levels = levels_of(sigmas)
    return None if levels is None else levels[-1]


def format_chains(idx: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in idx[:limit])
    return f"[{shown}{', ...' if len(idx) > limit else ''}] ({len(idx)} of them)"


class FiniteMonitor:
    """Detects chains that became NaN or inf, and says where.

    ``record(x)`` after every step stores one bool per chain (``isfinite(x).all()`` over
    the example): two cheap elementwise/reduction kernels on ``x`` and no host sync, so
    the hot loop is not stalled on a GPU and costs far less than a network forward on
    any data size. ``check()`` (every ``every`` steps and at the end of each level) syncs
    once and, if a chain failed, raises :class:`DivergenceError` naming the chains and the
    exact first step, level and sigma where each went non-finite. Checking periodically
    rather than only at the end stops a diverged run early.
    """

    def __init__(self, every: int = 50) -> None:
        self.every = every
        self._flags: list[torch.Tensor] = []
        self._where: list[tuple[int, int | None, float | None]] = []

    def record(self, x: torch.Tensor, step: int, level: int | None, sigma: float | None) -> None:
        self._flags.append(rows(torch.isfinite(x)).all(dim=1))
        self._where.append((step, level, sigma))
        if len(self._flags) >= self.every:
            self.check()

    def check(self) -> None:
        if not self._flags:
            return
        flags = torch.stack(self._flags)  # [steps, B]
        where = self._where
        self._flags, self._where = [], []
        if bool(flags.all()):
            return
        bad = ~flags
        chains = bad.any(dim=0).nonzero().flatten().tolist()
        first = int(bad.any(dim=1).nonzero()[0])
        step, level, sigma = where[first]
        at = f"step {step}" + (f" (level {level}, sigma {sigma:.4g})" if level is not None else "")
        at += f" (sigma {sigma:.4g})" if level is None and sigma is not None else ""
        raise DivergenceError(
            f"sampler chains {format_chains(chains)} became NaN or inf; the first at {at}. "
            "The step size is too large for this score (or the score network is not finite there): "
            "lower step_size, or clamp the samples with clamp=(low, high)"
        )
