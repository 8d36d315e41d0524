"""What a run reports besides its checkpoints: the held-out Eq. 6 loss, sample grids, ``metrics.jsonl``
(and the same scalars to TensorBoard), ``loss.png``, and the console lines of the ``scorekit`` logger."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

import torch

from scorekit.batch_checks import check_batch
from scorekit.errors import DataError, DivergenceError, OptionError
from scorekit.estimators.dsm import DenoisingScoreMatching
from scorekit.files import atomic_write
from scorekit.model import ScoreModel
from scorekit.training.data import Data, dataset_size, fetch
from scorekit.training.sampling import sample_in_batches, write_grid

logger = logging.getLogger("scorekit.training")

#: seed of the held-out noise; fixed so that the loss is comparable between checkpoints and runs
HELDOUT_SEED = 0


def heldout_loss(model: ScoreModel, holdout: Data, *, batch_size: int = 128, seed: int = HELDOUT_SEED) -> dict[str, Any]:
    """The held-out loss, the same number every time for the same weights, data and ``batch_size``.

    With noise levels it is Eq. 6 of the paper whatever estimator trained the model:
    denoising score matching with ``lambda(sigma) = sigma^2``, every example evaluated at
    every level (fixed sigmas) with noise from a CPU generator seeded with
    ``seed + level``, averaged over the levels. Returns ``{"heldout_loss": mean,
    "heldout_loss_per_level": [...]}``. Without noise levels (``sigmas=None``) Eq. 6 is
    undefined and it is the composition's own estimator (``model.losses``, with autograd
    enabled as sliced score matching needs it) with noise seeded by ``seed``; then there
    is no per-level list. The model is evaluated in eval mode and left as it was.

    Each held-out batch is fetched and checked once; with noise levels the DSM estimator
    is then called directly on ``model.score`` at each level in turn. Raises
    :class:`DivergenceError` when a level's loss is NaN or inf.
    """
    n = dataset_size(holdout)
    if n == 0:
        raise DataError("the held-out set is empty")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    was_training = model.training
    model.eval()
    try:
        if model.sigmas is None:
            (mean,) = _mean_loss([model.losses], holdout, n, batch_size, device, dtype, seed, grad=True)
            return {"heldout_loss": mean}
        dsm = DenoisingScoreMatching(weighting="sigma2")
        levels = model.sigmas.to(device=device, dtype=dtype)

        def at_level(sigma: torch.Tensor) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
            return lambda x, generator: dsm(model.score, x, sigmas=sigma, generator=generator)

        losses = [at_level(levels[i : i + 1]) for i in range(levels.numel())]
        per_level = _mean_loss(losses, holdout, n, batch_size, device, dtype, seed, grad=False, check=True)
        for sigma, value in zip(levels.tolist(), per_level):
            if not math.isfinite(value):
                raise DivergenceError(f"the held-out loss at sigma {sigma:.4g} is {value}: the network's output is "
                                      "not finite. Lower the learning rate, clip gradients, or check the data scaling")
        return {"heldout_loss": sum(per_level) / len(per_level), "heldout_loss_per_level": per_level}
    finally:
        model.train(was_training)


def _mean_loss(losses: list[Callable[[torch.Tensor, torch.Generator], torch.Tensor]], holdout: Data, n: int,
               batch_size: int, device: torch.device, dtype: torch.dtype, seed: int, grad: bool,
               check: bool = False) -> list[float]:
    """The mean over the held-out set of each per-example loss in ``losses``; loss ``i`` draws
    its noise from its own CPU generator seeded with ``seed + i``, batch after batch, so each
    mean is what evaluating that loss alone over the set gives. ``check``: check each batch
    (``check_batch``) here, for losses that trust their input."""
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(losses))]
    totals = [torch.zeros((), dtype=torch.float64) for _ in losses]
    for start in range(0, n, batch_size):
        x = fetch(holdout, torch.arange(start, min(n, start + batch_size))).to(device=device, dtype=dtype)
        if check:
            x = check_batch(x, "the held-out batch")
        with torch.set_grad_enabled(grad):
            for total, loss, generator in zip(totals, losses, generators):
                total += loss(x, generator).detach().double().sum().cpu()
    return [float(total) / n for total in totals]


def is_image_batch(x: torch.Tensor) -> bool:
    """Whether a batch can be shown as an image grid: ``[B, C, H, W]`` with 1 or 3 channels."""
    return x.ndim == 4 and x.shape[1] in (1, 3)


def save_grid(
    model: ScoreModel,
    like: torch.Tensor,
    path: str | os.PathLike,
    *,
    n: int = 64,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    seed: int = 0,
    mean: float | None = None,
) -> torch.Tensor:
    """Sample ``n`` images shaped like the examples of ``like`` from the sampler's initial noise; save a grid.

    ``clamp=(low, high)`` clamps the samples and maps that range to black..white;
    ``None`` scales each grid from its own minimum to maximum (:func:`write_grid`). One
    batch, from a generator on ``like``'s device seeded with ``seed``, so grids of
    successive checkpoints start from the same noise; ``mean`` centres the default initial
    noise of a sampler without its own. Returns the samples.
    """
    generator = torch.Generator(device=like.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        samples = sample_in_batches(model, like, n, generator=generator, mean=mean)
    finally:
        model.train(was_training)
    write_grid(samples, path, clamp=clamp)
    return samples


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, each with ``kind`` and ``step``.

    With a ``writer`` (a TensorBoard ``SummaryWriter``), every number of a line is also
    written there as the scalar ``<kind>/<name>`` (a list as ``<kind>/<name>/<index>``).
    """

    def __init__(self, path: str | os.PathLike, enabled: bool = True, writer: Any = None) -> None:
        self.path, self.enabled, self.writer = Path(path), enabled, writer

    def write(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        line = json.dumps({"kind": kind, "step": step, **values}, default=_plain)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self.writer is not None:
            for tag, value in _scalars(kind, values):
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def reset(self) -> None:
        """Start an empty log (a fresh run: lines of a run that died before its first checkpoint are dropped)."""
        if self.enabled and self.path.exists():
            atomic_write(self.path, lambda f: None)

    def truncate_after(self, step: int) -> None:
        """Drop the lines of steps after ``step`` (logged by a run that then died before its next checkpoint)."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
        text = "".join(f"{line}\n" for line in kept)
        atomic_write(self.path, lambda f: f.write(text.encode("utf-8")))


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metric value of type {type(value).__name__} is not JSON-serialisable")


def _scalars(kind: str, values: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The numbers of a metrics line as ``(tag, value)``: ``kind/name``, lists as ``kind/name/index``."""
    out: list[tuple[str, float]] = []
    for name, value in values.items():
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for index, item in items:
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                out.append((f"{kind}/{name}" + ("" if index is None else f"/{index}"), float(item)))
    return out


# --- TensorBoard --------------------------------------------------------------------------------

#: what ``train.logger="tensorboard"`` says when the package is missing
TENSORBOARD_MISSING = 'train.logger="tensorboard" needs the tensorboard package: pip install "scorekit[tensorboard]"'


def summary_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; an :class:`OptionError` when tensorboard is not installed
    (checked when a run starts, before its first step)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # torch raises ImportError itself when the tensorboard package is missing
        raise OptionError(TENSORBOARD_MISSING) from exc
    return SummaryWriter


def open_tensorboard(run_dir: str | os.PathLike, *, resumed_step: int | None = None) -> Any:
    """A ``SummaryWriter`` on ``<run_dir>/tensorboard/``. A resume from step ``resumed_step`` hides the
    events logged after it by the run that died (``purge_step``), as ``metrics.jsonl`` drops its lines."""
    writer_class = summary_writer_class()
    purge = None if resumed_step is None else resumed_step + 1
    return writer_class(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=purge)


# --- loss.png -----------------------------------------------------------------------------------

def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The lines of a ``metrics.jsonl`` (none when it is missing; a line cut short by a kill is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue
    return lines


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average over ``window`` points (fewer at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


#: a curve of :func:`plot_curves`: ``(label, points, style)``, style ``"line"``, ``"faint"`` or ``"markers"``
Curve = tuple[str, Sequence[tuple[float, float]], str]


def plot_curves(path: str | os.PathLike, curves: Sequence[Curve], *, ylabel: str) -> Path | None:
    """A PNG plot of ``curves`` against the training step, written atomically; None without matplotlib.

    matplotlib's object interface with the Agg canvas: pyplot and the process's backend are
    left alone (a notebook keeps its inline plots). A log scale when every value is positive
    and they span more than a factor of 10.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(5.5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = {"line": dict(linewidth=1.5), "faint": dict(linewidth=0.8, alpha=0.3),
              "markers": dict(marker="o", markersize=3, linewidth=1)}
    values = [y for _, points, _ in curves for _, y in points]
    for label, points, style in curves:
        if points:
            ax.plot(*zip(*points), label=label, **styles[style])
    if values and min(values) > 0 and max(values) > 10 * min(values):
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len([c for c in curves if c[1]]) > 1:
        ax.legend()
    fig.tight_layout()
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))


def plot_losses(run_dir: str | os.PathLike) -> Path | None:
    """``<run_dir>/loss.png``: the training loss (raw and smoothed) and the held-out loss against the step,
    from ``metrics.jsonl``. None, with one logged line, without matplotlib; None without any loss line."""
    run_dir = Path(run_dir)
    lines = read_metrics(run_dir / "metrics.jsonl")
    train = [(m["step"], m["loss"]) for m in lines if m.get("kind") == "train" and _finite(m.get("loss"))]
    held = [(m["step"], m["heldout_loss"]) for m in lines
            if m.get("kind") == "eval" and _finite(m.get("heldout_loss"))]
    if not train and not held:
        return None
    window = len(train) // 25  # a moving average once there are enough points for one to help
    if window > 1:
        smoothed = list(zip([s for s, _ in train], smooth([v for _, v in train], window)))
        curves: list[Curve] = [("training loss", train, "faint"), (f"training loss, mean of {window}", smoothed,
                                                                    "line")]
    else:
        curves = [("training loss", train, "line")]
    curves.append(("held-out loss (Eq. 6)", held, "markers"))
    out = plot_curves(run_dir / "loss.png", curves, ylabel="loss")
    if out is None:
        logger.info("loss.png skipped: matplotlib is not installed (pip install \"scorekit[plot]\")")
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- console ------------------------------------------------------------------------------------

class _ConsoleHandler(logging.Handler):
    """One line per record on ``stream`` (default: the current ``sys.stderr``), through ``tqdm.write`` so
    that a progress bar on the terminal is redrawn below the line instead of being broken by it."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream or sys.stderr)
        except Exception:
            self.handleError(record)


class _PlainFormatter(logging.Formatter):
    """The message alone; ``warning: `` / ``error: `` before those of higher levels."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def configure_logging(level: int = logging.INFO, stream: TextIO | None = None) -> bool:
    """Show the ``scorekit`` logger's messages of ``level`` and above on ``stream`` (default: stderr), one plain
    line each (held-out losses, FID, the time budget, warnings), unless logging is already set up.

    Does nothing, and returns False, when the root logger or the ``scorekit`` logger already has a
    handler (the application configured logging: its configuration wins) — so calling it twice is
    harmless. Otherwise adds one handler to the ``scorekit`` logger (the root logger is never touched),
    sets its level unless one was set, and returns True. The ``scorekit`` command calls it at start.
    """
    log = logging.getLogger("scorekit")
    if logging.getLogger().handlers or log.handlers:
        return False
    handler = _ConsoleHandler(stream)
    handler.setFormatter(_PlainFormatter("%(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(level)
    return True
