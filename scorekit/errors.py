"""Exceptions raised by scorekit.

Every error says what is wrong and what is allowed, so that a user never has to read
scorekit's source to fix a call.
"""

from __future__ import annotations


class ScorekitError(Exception):
    """Base class of every error scorekit raises on purpose."""


class UnknownComponentError(ScorekitError, KeyError):
    """A component name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class PluginConflictError(ScorekitError):
    """Two different plugins claimed one name for one kind of component."""


class PluginLoadError(ScorekitError):
    """An entry-point plugin failed to import or register."""


class OptionError(ScorekitError, ValueError):
    """A component option with a wrong name or value."""


class CompositionError(ScorekitError, ValueError):
    """Components that cannot work together (e.g. a sampler that needs sigmas, composed without)."""


class DataError(ScorekitError, ValueError):
    """Data that a component cannot use: empty batch, NaN, wrong shape, device or dtype."""


class DivergenceError(ScorekitError, FloatingPointError):
    """A loss or a sampler chain that became NaN or infinite."""


class CheckpointError(ScorekitError):
    """A checkpoint file that cannot be used (missing, truncated, corrupt or of another run); names the file."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (SIGINT, SIGTERM or SIGHUP) after saving the last completed step.

    A ``KeyboardInterrupt``, so that code which handles Ctrl-C handles preemption too.
    ``signum`` is the signal; the trainer sets ``saved_step`` and ``checkpoint`` (None when
    nothing could be saved). The ``scorekit`` command exits with ``128 + signum``.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        try:
            self.signal_name = signal.Signals(signum).name
        except ValueError:
            self.signal_name = f"signal {signum}"
        self.saved_step: int | None = None
        self.checkpoint: object | None = None
        super().__init__(self.signal_name)


# --- metrics (scorekit.metrics) ---

class MetricsInputError(DataError):
    """Images or options that a metric cannot use: wrong shape, NaN, values outside [0, 1], unknown names."""


class TooFewSamplesError(MetricsInputError):
    """Fewer samples than a metric needs (e.g. FID needs more samples than feature dimensions)."""


class WeightsNotFoundError(MetricsInputError, FileNotFoundError):
    """A feature extractor's weights file is missing; scorekit never downloads it, the message says where to put it."""


class SampleCountWarning(UserWarning):
    """FID on fewer than 10,000 samples, or figures from different sample counts being compared.

    FID is biased upward by an amount that shrinks with the sample count, so only
    figures computed on equal counts are comparable.
    """


class ClassifierCacheWarning(UserWarning):
    """A cached digits classifier could not be read and was retrained."""
