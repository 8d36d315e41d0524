"""Watching a sampler run: chains that became NaN or inf, the callback, the optional progress bar."""

from __future__ import annotations

from typing import Any

import torch

from scorekit.errors import DivergenceError
from scorekit.samplers.info import Callback, SamplerStep, mean_norm
from scorekit.score import rows


def progress_bar(total: int, desc: str, unit: str) -> Any:
    """A tqdm bar (imported only when asked for)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


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


def needs_sigmas_message(name: str) -> str:
    return (
        f"{name} needs noise levels but the composition has sigmas=None; compose with sigmas=... "
        "(e.g. scorekit.geometric_sigmas(1.0, 0.01, 10)) and a noise-conditional network, "
        "or use sampler='langevin' (or 'hmc') for an unconditional network"
    )


class StepLog:
    """The bookkeeping of one run: ``log(x, ...)`` after every update.

    It records one finiteness flag per chain in a :class:`FiniteMonitor` (of ``probe``
    when given, else of ``x``), which checks every 50 steps, at :meth:`check` and at
    :meth:`close`; calls the callback with a :class:`SamplerStep` (the float fields are
    computed only when there is a callback, so a run without one has no host sync
    besides the monitor's), and advances the progress bar.
    """

    def __init__(self, total: int, desc: str, unit: str, callback: Callback | None, progress: bool) -> None:
        self.monitor = FiniteMonitor()
        self.callback = callback
        self.step = 0
        self.bar = progress_bar(total, desc, unit) if progress else None

    def __call__(
        self, x: torch.Tensor, *, level: int | None, sigma: float | None, step_size: float | torch.Tensor,
        score: torch.Tensor,
        probe: torch.Tensor | None = None, acceptance: torch.Tensor | None = None,
        divergent: torch.Tensor | None = None,
    ) -> None:
        self.monitor.record(x if probe is None else probe, self.step, level, sigma)
        if self.callback is not None:
            self.callback(SamplerStep(
                step=self.step, level=level, sigma=sigma,
                step_size=float(step_size.mean()) if isinstance(step_size, torch.Tensor) else step_size,
                score_norm=mean_norm(score),
                acceptance_rate=None if acceptance is None else float(acceptance.mean()),
                divergent=None if divergent is None else int(divergent.sum()), x=x,
            ))
        self.step += 1
        if self.bar is not None:
            self.bar.update()

    def check(self) -> None:
        """Raise :class:`~scorekit.errors.DivergenceError` now if a chain became NaN or inf."""
        self.monitor.check()

    def close(self) -> None:
        self.monitor.check()
        if self.bar is not None:
            self.bar.close()
