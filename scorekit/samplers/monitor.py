"""Watching a sampler run: chains that became NaN or inf, the callback, the optional progress bar.

:func:`progress_bar` is the one place that decides how progress is shown, for the samplers'
own ``progress`` option, the trainer and :func:`scorekit.training.sampling.sample_in_batches`:
tqdm's redrawn bar on a terminal, plain lines at most every few seconds elsewhere (a Slurm
log, CI, a pipe), where a redrawn bar would fill the file with carriage returns.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, TextIO

import torch

from scorekit.errors import DivergenceError
from scorekit.samplers.info import Callback, SamplerStep, mean_norm
from scorekit.score import rows

#: seconds between two plain progress lines
PLAIN_EVERY = 10.0

#: who wants to know how many steps the sampler about to run takes (:func:`announcing_totals`)
_TOTAL_LISTENER: ContextVar[Callable[[int], None] | None] = ContextVar("scorekit_sampler_total", default=None)


def is_interactive(stream: TextIO) -> bool:
    """Whether progress on ``stream`` can be a redrawn bar: a terminal, or a Jupyter kernel (tqdm's widget)."""
    if "ipykernel" in sys.modules:
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(total: int | None, desc: str, unit: str, *, initial: int = 0, disable: bool = False,
                 stream: TextIO | None = None, every: float = PLAIN_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> Any:
    """A progress display with tqdm's ``update`` / ``set_postfix`` / ``close`` and a settable ``total``.

    A tqdm bar when ``stream`` (default: ``sys.stderr``) is interactive (:func:`is_interactive`),
    else a :class:`PlainProgress` printing one line every ``every`` seconds of ``clock`` and
    one at the end. ``total=None``: not known yet (set ``bar.total`` once it is).
    """
    stream = sys.stderr if stream is None else stream
    if disable or is_interactive(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable, file=stream,
                    dynamic_ncols=True)
    return PlainProgress(total, desc, unit, initial=initial, stream=stream, every=every, clock=clock)


class PlainProgress:
    """Progress as plain lines, ``training: step 1200/8000 (15%), 2.1 it/s, loss 7.41, eta 54 min``,
    at most one every ``every`` seconds and one at :meth:`close`: a log file stays readable."""

    def __init__(self, total: int | None, desc: str, unit: str, *, initial: int = 0, stream: TextIO,
                 every: float = PLAIN_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.stream = total, desc, unit, stream
        self.n = self.initial = self.shown = initial
        self.every, self.clock = every, clock
        self.start = self.last = clock()
        self.postfix: dict[str, Any] = {}
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.clock() - self.last >= self.every:
            self._print()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        """Values shown after the rate (``loss 7.41``), from the next line on."""
        self.postfix = dict(values)

    def refresh(self) -> None:
        """Nothing to redraw: the next line shows what changed."""

    def close(self) -> None:
        if not self.closed and self.n != self.shown:
            self._print()
        self.closed = True

    def line(self) -> str:
        """The progress line as of now."""
        elapsed = self.clock() - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else None
        parts = [f"{self.desc}: {self.unit} {self.n}" + (f"/{self.total}" if self.total else "")]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if rate is not None:
            parts.append(f"{rate:.3g} it/s" if rate < 1000 else f"{rate:.0f} it/s")
        parts += [f"{key} {value}" for key, value in self.postfix.items()]
        if self.total and rate and self.n < self.total:
            parts.append(f"eta {format_duration((self.total - self.n) / rate)}")
        return ", ".join(parts)

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.shown, self.last = self.n, self.clock()


def format_duration(seconds: float) -> str:
    """``40 s``, ``54 min``, ``2.5 h``: a remaining time as one reads it in a log."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextmanager
def announcing_totals(listener: Callable[[int], None]) -> Iterator[None]:
    """Within the block, every sampler run tells ``listener(total)`` its number of steps when it starts
    (the samplers that keep a :class:`StepLog`), so that a caller counting steps through the callback
    knows the total in advance."""
    token = _TOTAL_LISTENER.set(listener)
    try:
        yield
    finally:
        _TOTAL_LISTENER.reset(token)


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
    besides the monitor's), and advances the progress bar. It tells its total to the
    listener of :func:`announcing_totals`, if any, when it is made.
    """

    def __init__(self, total: int, desc: str, unit: str, callback: Callback | None, progress: bool) -> None:
        self.monitor = FiniteMonitor()
        self.callback = callback
        self.step = 0
        self.bar = progress_bar(total, desc, unit) if progress else None
        listener = _TOTAL_LISTENER.get()
        if listener is not None:
            listener(total)

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
