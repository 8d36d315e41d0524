"""What the samplers beyond the paper share: the needs-sigmas check and the per-step bookkeeping.

``annealed_hmc``, ``consistent_annealed`` and ``predictor_corrector`` run across the
composition's noise levels, largest first, with their own updates (so not through
:func:`~scorekit.samplers.langevin.run_levels`), but generate, inpaint and draw their
initial noise exactly as the Langevin family does: :class:`AnnealedSampler` is a
:class:`~scorekit.samplers.langevin.LangevinFamily` whose ``_run`` calls the sampler's own
loop, ``sample_levels``. :class:`StepLog` is the bookkeeping of one run: the step counter, the
:class:`~scorekit.samplers.monitor.FiniteMonitor`, the callback and the progress bar.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from scorekit.errors import CompositionError
from scorekit.samplers.info import Callback, SamplerStep, mean_norm
from scorekit.samplers.inpaint import KnownEntries
from scorekit.samplers.langevin import LangevinFamily, levels_of
from scorekit.samplers.monitor import FiniteMonitor, progress_bar
from scorekit.score import ScoreFunction, as_score


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
        self, x: torch.Tensor, *, level: int, sigma: float, step_size: float | torch.Tensor, score: torch.Tensor,
        probe: torch.Tensor | None = None, acceptance: torch.Tensor | None = None,
        divergent: torch.Tensor | None = None,
    ) -> None:
        self.monitor.record(x if probe is None else probe, self.step, level, sigma)
        if self.callback is not None:
            self.callback(SamplerStep(
                step=self.step, level=level, sigma=sigma,
                step_size=step_size if isinstance(step_size, float) else float(step_size.mean()),
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


class AnnealedSampler(LangevinFamily):
    """Generation, inpainting and initial noise (uniform in ``init_range``) of a sampler that
    runs across the composition's sigmas with its own loop.

    A subclass is an attrs config with ``init_range``, ``clamp`` and ``progress`` fields, a
    class attribute ``name`` (its registered name, for messages), and implements
    :meth:`sample_levels`. ``projection`` is the inpainting projection (Algorithm 2's
    :class:`~scorekit.samplers.inpaint.KnownEntries`) or None.
    """

    name: ClassVar[str] = "sampler"

    def validate_composition(self, score: ScoreFunction, sigmas: torch.Tensor | None) -> None:
        if sigmas is None:
            raise CompositionError(needs_sigmas_message(self.name))

    def sample_levels(
        self, score: ScoreFunction, x: torch.Tensor, levels: list[float], generator: torch.Generator | None,
        callback: Callback | None, projection: KnownEntries | None,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(
        self, score: Any, x: torch.Tensor, sigmas: torch.Tensor | None, generator: torch.Generator | None,
        callback: Callback | None, projection: KnownEntries | None,
    ) -> torch.Tensor:
        levels = levels_of(sigmas)
        if levels is None:  # called directly, without the composition's check
            raise CompositionError(needs_sigmas_message(self.name))
        with torch.no_grad():
            return self.sample_levels(as_score(score), x, levels, generator, callback, projection)
