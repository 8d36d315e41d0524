"""Warm-up adaptation for HMC: dual averaging of the step size and a windowed diagonal mass matrix.

Plain, functional pieces (as blackjax's): each keeps its state in a frozen attrs object
and ``update`` returns a new one, so they can be tested and reused on their own.
"""

from __future__ import annotations

import math

import attrs
import torch


@attrs.frozen(kw_only=True)
class DualAveragingState:
    """State of :class:`DualAveraging` (the symbols of Hoffman & Gelman 2014, Algorithm 5)."""

    log_step: float  # log eps_t, the step size to use next
    log_step_avg: float  # log eps-bar_t, the averaged iterate returned after warm-up
    h_bar: float  # running average of (target - acceptance)
    t: int
    mu: float  # the point the iterates shrink towards, log(10 eps_0)

    @property
    def step_size(self) -> float:
        return math.exp(self.log_step)

    @property
    def final_step_size(self) -> float:
        return math.exp(self.log_step_avg)


@attrs.frozen(kw_only=True)
class DualAveraging:
    """Nesterov dual averaging of log step size towards ``target`` mean acceptance
    (Hoffman & Gelman 2014, section 3.2; Stan's defaults gamma 0.05, t0 10, kappa 0.75)."""

    target: float = 0.8
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75

    def init(self, step_size: float) -> DualAveragingState:
        log_step = math.log(step_size)
        return DualAveragingState(log_step=log_step, log_step_avg=log_step, h_bar=0.0, t=0,
                                  mu=math.log(10.0) + log_step)

    def update(self, state: DualAveragingState, acceptance: float) -> DualAveragingState:
        t = state.t + 1
        w = 1.0 / (t + self.t0)
        h_bar = (1.0 - w) * state.h_bar + w * (self.target - acceptance)
        log_step = state.mu - math.sqrt(t) / self.gamma * h_bar
        eta = t ** (-self.kappa)
        log_step_avg = eta * log_step + (1.0 - eta) * state.log_step_avg
        return DualAveragingState(log_step=log_step, log_step_avg=log_step_avg, h_bar=h_bar, t=t, mu=state.mu)


@attrs.frozen(kw_only=True, eq=False)
class RunningVariance:
    """Per-entry mean and variance over all chains and draws of a window (Chan et al.'s
    parallel Welford update, float64). ``update`` takes a batch ``[B, ...]`` of draws."""

    count: int = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> RunningVariance:
        x = x.detach().to(torch.float64)
        n_b = x.shape[0]
        mean_b = x.mean(dim=0)
        m2_b = ((x - mean_b) ** 2).sum(dim=0)
        if self.mean is None or self.m2 is None:
            return RunningVariance(count=n_b, mean=mean_b, m2=m2_b)
        n = self.count + n_b
        delta = mean_b - self.mean
        mean = self.mean + delta * (n_b / n)
        m2 = self.m2 + m2_b + delta**2 * (self.count * n_b / n)
        return RunningVariance(count=n, mean=mean, m2=m2)

    def variance(self, regularize: bool = True) -> torch.Tensor:
        """The sample variance; with ``regularize`` shrunk towards 1e-3 as Stan does:
        ``n/(n+5) var + 1e-3 * 5/(n+5)``."""
        if self.m2 is None or self.count < 2:
            raise ValueError("RunningVariance needs at least 2 draws")
        var = self.m2 / (self.count - 1)
        if regularize:
            n = self.count
            var = (n / (n + 5.0)) * var + 1e-3 * (5.0 / (n + 5.0))
        return var


def window_schedule(
    n_warmup: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25
) -> list[tuple[int, int]]:
    """Stan's slow adaptation windows ``[(start, end), ...]`` (transition indices, end exclusive).

    A fast initial buffer (step size only), slow windows doubling in length from
    ``base_window`` (the mass matrix is re-estimated at the end of each), and a fast
    terminal buffer. Short warm-ups use 15% / 75% / 10% as Stan does; under 20
    transitions there is no mass adaptation.
    """
    if n_warmup < 20:
        return []
    if init_buffer + base_window + term_buffer > n_warmup:
        init_buffer = int(0.15 * n_warmup)
        term_buffer = int(0.1 * n_warmup)
        base_window = n_warmup - init_buffer - term_buffer
    end_slow = n_warmup - term_buffer
    windows: list[tuple[int, int]] = []
    start, size = init_buffer, base_window
    while start < end_slow:
        end = start + size
        if end + 2 * size > end_slow:  # the next window would not fit: stretch this one
            end = end_slow
        windows.append((start, end))
        start, size = end, 2 * size
    return windows
