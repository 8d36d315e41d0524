"""What a run reports besides its checkpoints: the held-out Eq. 6 loss, sample grids and ``metrics.jsonl``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from scorekit.estimators.dsm import DenoisingScoreMatching
from scorekit.model import ScoreModel
from scorekit.training.checkpoint import atomic_write
from scorekit.training.data import Data, dataset_size, fetch

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
    """
    n = dataset_size(holdout)
    if n == 0:
        raise ValueError("the held-out set is empty")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.get_default_dtype()
    was_training = model.training
    model.eval()
    try:
        if model.sigmas is None:
            return {"heldout_loss": _mean_loss(model, holdout, n, batch_size, device, dtype, seed, grad=True)}
        per_level = []
        for i, sigma in enumerate(model.sigmas):
            view = ScoreModel(model.network, DenoisingScoreMatching(weighting="sigma2"), None, sigma.reshape(1), model.names)
            view._dry_run_done = True
            per_level.append(_mean_loss(view, holdout, n, batch_size, device, dtype, seed + i, grad=False))
        return {"heldout_loss": sum(per_level) / len(per_level), "heldout_loss_per_level": per_level}
    finally:
        model.train(was_training)


def _mean_loss(model: ScoreModel, holdout: Data, n: int, batch_size: int, device: torch.device,
               dtype: torch.dtype, seed: int, grad: bool) -> float:
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, n, batch_size):
        x = fetch(holdout, torch.arange(start, min(n, start + batch_size))).to(device=device, dtype=dtype)
        with torch.set_grad_enabled(grad):
            total += model.losses(x, generator).detach().double().sum().cpu()
    return float(total) / n


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
    ``None`` scales each grid from its own minimum to maximum. The generator is seeded
    with ``seed``, so grids of successive checkpoints start from the same noise.
    Returns the samples.
    """
    from torchvision.utils import save_image  # torchvision is only needed for grids

    device = like.device
    generator = torch.Generator(device=device).manual_seed(seed)
    template = torch.empty((n, *like.shape[1:]), device=device, dtype=like.dtype)
    was_training = model.training
    model.eval()
    try:
        samples = model.sample(model.initial_noise(template, generator), generator)
    finally:
        model.train(was_training)
    images = samples.detach().float().cpu()
    if clamp is not None:
        low, high = clamp
        images = (images.clamp(low, high) - low) / (high - low)
    nrow = max(1, math.ceil(math.sqrt(n)))
    atomic_write(path, lambda f: save_image(images, f, nrow=nrow, normalize=clamp is None, format="png"))
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
