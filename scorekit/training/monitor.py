"""What a run reports besides its checkpoints: the held-out Eq. 6 loss, sample grids and ``metrics.jsonl``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import torch

from scorekit.batch_checks import check_batch
from scorekit.errors import DataError, DivergenceError
from scorekit.estimators.dsm import DenoisingScoreMatching
from scorekit.files import atomic_write
from scorekit.model import ScoreModel
from scorekit.training.data import Data, dataset_size, fetch
from scorekit.training.sampling import sample_in_batches, write_grid

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
) -> torch.Tensor:
    """Sample ``n`` images shaped like the examples of ``like`` from the sampler's initial noise; save a grid.

    ``clamp=(low, high)`` clamps the samples and maps that range to black..white;
    ``None`` scales each grid from its own minimum to maximum (:func:`write_grid`). One
    batch, from a generator on ``like``'s device seeded with ``seed``, so grids of
    successive checkpoints start from the same noise. Returns the samples.
    """
    generator = torch.Generator(device=like.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        samples = sample_in_batches(model, like, n, generator=generator)
    finally:
        model.train(was_training)
    write_grid(samples, path, clamp=clamp)
    return samples


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, each with ``kind`` and ``step``."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True) -> None:
        self.path, self.enabled = Path(path), enabled

    def write(self, kind: str, step: int, **values: Any) -> None:
        if not self.enabled:
            return
        line = json.dumps({"kind": kind, "step": step, **values}, default=_plain)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

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
