"""What the samplers beyond the paper share: a Langevin-family base whose loop is the sampler's own.

``annealed_hmc``, ``consistent_annealed`` and ``predictor_corrector`` run across the
composition's noise levels, largest first, with their own updates (so not through
:func:`~scorekit.samplers.langevin.run_levels`), but generate, inpaint and draw their
initial noise exactly as the Langevin family does: :class:`AnnealedSampler` is a
:class:`~scorekit.samplers.langevin.LangevinFamily` whose ``_run`` calls the sampler's own
loop, ``sample_levels``, which does its bookkeeping (step counter, divergence monitor, callback,
progress bar) through :class:`~scorekit.samplers.monitor.StepLog`, as ``run_levels`` does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from scorekit.errors import CompositionError
from scorekit.samplers.info import Callback
from scorekit.samplers.inpaint import KnownEntries
from scorekit.samplers.langevin import LangevinFamily, levels_of
from scorekit.samplers.monitor import needs_sigmas_message
from scorekit.score import ScoreFunction, as_score, ordinary, sampling_mode


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
        score = as_score(score)
        with sampling_mode(score):
            x = self.sample_levels(score, x, levels, generator, callback, projection)
        return ordinary(x)
