"""Learning-rate schedules: the rate of every update as a pure function of the step.

The NCSN paper trains with a constant rate (``"constant"``, the default). Short runs
gain from decaying it, so that the last updates average out the gradient noise instead
of adding to it (``"cosine"``, Loshchilov & Hutter 2017, or ``"linear"``), optionally
after a linear warm-up. The rate depends only on the step, not on a scheduler's state,
so a resumed run continues with exactly the rates of an uninterrupted one: the trainer's
``torch.optim.lr_scheduler.LambdaLR`` (:func:`lr_scheduler`) is rebuilt from the step.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["LR_SCHEDULES", "lr_at", "lr_scheduler"]


def _constant(progress: float) -> float:
    return 1.0


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _linear(progress: float) -> float:
    return 1.0 - progress


#: schedule name -> multiplier of the base rate as a function of the decay's progress in [0, 1]
LR_SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": _constant,
    "cosine": _cosine,
    "linear": _linear,
}


def lr_at(step: int, *, lr: float, schedule: str, warmup: int, n_iters: int) -> float:
    """The learning rate of update ``step`` (0-based) of ``n_iters``.

    Updates ``0 .. warmup - 1`` ramp linearly up to ``lr`` (update ``k`` uses
    ``lr * (k + 1) / warmup``); the decay then runs over the remaining updates, from
    ``lr`` at the first of them towards 0 after the last (which still gets a small
    positive rate). Raises ValueError for an unknown schedule.
    """
    try:
        decay = LR_SCHEDULES[schedule]
    except KeyError:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {sorted(LR_SCHEDULES)}") from None
    if step < warmup:
        return lr * ((step + 1) / warmup)
    progress = min(1.0, (step - warmup) / max(1, n_iters - warmup))
    return lr * decay(progress)


def lr_scheduler(optimizer: torch.optim.Optimizer, step: int, *, lr: float, schedule: str, warmup: int,
                 n_iters: int) -> LambdaLR:
    """A ``LambdaLR`` that sets the rate of update ``step`` (0-based) now, and of each later one at its ``step()``.

    The rate of update ``k`` is ``lr * lr_at(k, lr=1.0, ...)``, bit for bit :func:`lr_at`.
    The base rate ``lr`` replaces every group's ``initial_lr`` (the config given on resume
    wins over the checkpoint's), and ``last_epoch=step - 1`` places the scheduler on the
    curve, so it has no state worth saving. Call its ``step()`` after each ``optimizer.step()``.
    """
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
    factor = partial(lr_at, lr=1.0, schedule=schedule, warmup=warmup, n_iters=n_iters)
    return LambdaLR(optimizer, factor, last_epoch=step - 1)
