"""``scorekit evaluate``: the metrics of a run's samples, with the real-against-real floor beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scorekit import runs
from scorekit.errors import DataError
from scorekit.model import ScoreModel
from scorekit.plugins import PluginHost
from scorekit.training import heldout_loss
from scorekit.training.config import RunConfig

#: the feature extractor for images of a given (channels, height, width); anything else uses Inception
EXTRACTOR_BY_SHAPE = {(1, 8, 8): "scorekit-digits"}


def evaluate_run(run_dir: str | Path, model: ScoreModel, cfg: RunConfig, host: PluginHost, *,
                 extractor: str | None = None, weights_path: str | None = None) -> dict[str, Any]:
    """FID / IS / KID of ``run_dir/samples.pt`` against the training images, the same metrics for
    held-out real images (the floor), the held-out Eq. 6 loss and a nearest-neighbour grid.

    Writes ``metrics.json`` and ``nearest.png`` into the run directory and returns the report.
    """
    from scorekit import metrics

    run_dir = Path(run_dir)
    path = run_dir / "samples.pt"
    if not path.is_file():
        raise DataError(f"{run_dir} has no samples.pt; draw them first: scorekit sample {run_dir}")
    samples = torch.load(path, weights_only=True)
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        raise DataError(f"{path} must hold a float tensor N x C x H x W, got {getattr(samples, 'shape', type(samples))}")
    train = runs.stack(runs.load_dataset(host, cfg.data, train=True))
    held = runs.stack(runs.load_dataset(host, cfg.data, train=False))
    if samples.shape[1:] != train.shape[1:]:
        raise DataError(f"samples of shape {tuple(samples.shape[1:])} do not match the training images "
                        f"{tuple(train.shape[1:])}")
    name = extractor or EXTRACTOR_BY_SHAPE.get(tuple(train.shape[1:]), "inception-v3-compat")
    eq6 = heldout_loss(model, held)
    report = metrics.evaluate(samples, train, extractor=name, real_floor=held, weights_path=weights_path,
                              repeat_channels=train.shape[1] == 1 and name != "scorekit-digits",
                              heldout_loss=eq6["heldout_loss"])
    report["heldout_loss_per_level"] = eq6.get("heldout_loss_per_level")
    distances = metrics.nearest_neighbour_grid(samples, train, run_dir / "nearest.png")
    report["nearest_train_distance_mean"] = distances[:, 0].mean().item()
    runs.write_json(run_dir / "metrics.json", report)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The table ``scorekit evaluate`` prints."""
    from scorekit.metrics import format_table

    return format_table(report)
