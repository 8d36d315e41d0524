"""``scorekit evaluate``: the metrics of a run's samples, with the real-against-real floor beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from scorekit.cli import outputs
from scorekit.errors import DataError
from scorekit.files import write_json
from scorekit.model import ScoreModel
from scorekit.plugins import PluginHost
from scorekit.training import heldout_loss
from scorekit.training.run_config import RunConfig

#: the feature extractor for a dataset that names none: the standard Inception-v3
DEFAULT_EXTRACTOR = "inception-v3-compat"


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
    try:
        samples = torch.load(path, weights_only=True)
    except Exception as exc:  # truncated, corrupt or not a tensor file: RuntimeError, EOFError, pickle errors, ...
        lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Check the doc")]
        reason = (lines[-1] if lines else "empty file")[:200]
        raise DataError(f"{path} cannot be read ({type(exc).__name__}: {reason}); draw the samples again: "
                        f"scorekit sample {run_dir}") from exc
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        raise DataError(f"{path} must hold a float tensor N x C x H x W, got {getattr(samples, 'shape', type(samples))}")
    train_set = outputs.load_dataset(host, cfg.data, train=True)
    train = outputs.stack(train_set)
    held = outputs.stack(outputs.load_dataset(host, cfg.data, train=False))
    if samples.shape[1:] != train.shape[1:]:
        raise DataError(f"samples of shape {tuple(samples.shape[1:])} do not match the training images "
                        f"{tuple(train.shape[1:])}")
    name = extractor or extractor_for(train_set)
    eq6 = heldout_loss(model, held)
    report = metrics.evaluate(samples, train, extractor=name, real_floor=held, weights_path=weights_path,
                              repeat_channels=_repeat_gray(train, name),
                              heldout_loss=eq6["heldout_loss"])
    report["heldout_loss_per_level"] = eq6.get("heldout_loss_per_level")
    distances = metrics.nearest_neighbour_grid(samples, train, run_dir / "nearest.png")
    report["nearest_train_distance_mean"] = distances[:, 0].mean().item()
    write_json(run_dir / "metrics.json", report)
    return report


def extractor_for(dataset: object) -> str:
    """The feature extractor that scores images of ``dataset``: the one its ``feature_extractor`` attribute
    names (the digits dataset names its classifier), else Inception-v3."""
    return getattr(dataset, "feature_extractor", None) or DEFAULT_EXTRACTOR


def _repeat_gray(images: torch.Tensor, extractor: str) -> bool:
    """Grayscale images go to a 3-channel extractor with the gray channel repeated."""
    from scorekit import metrics

    return images.shape[1] == 1 and metrics.EXTRACTORS[extractor].channels == 3


def checkpoint_fid(cfg: RunConfig, reference: torch.Tensor, *, extractor: str = DEFAULT_EXTRACTOR,
                   weights_path: str | None = None):
    """An ``on_checkpoint`` hook: FID of ``cfg.train.fid_samples`` fresh samples against ``reference``.

    The trainer calls it with the weights sampling uses (EMA when present) and keeps
    ``best.pt`` by the lowest value: the paper's checkpoint rule for CIFAR-10 and CelebA.
    """
    import warnings

    from scorekit import metrics

    name = extractor
    metrics.EXTRACTORS[name].weights(weights_path, None)  # a missing weights file fails now, not after 5,000 steps

    def hook(step: int, model: ScoreModel, run_dir: Path) -> dict[str, float]:
        samples = outputs.sample_images(model, reference, cfg.sample, n=cfg.train.fid_samples, progress=False)
        with warnings.catch_warnings():  # the small-sample warning is expected here: the count is fixed
            warnings.simplefilter("ignore", metrics.SampleCountWarning)
            result = metrics.evaluate(samples, reference, extractor=name, metrics=("fid",), weights_path=weights_path,
                                      repeat_channels=_repeat_gray(reference, name))
        return {"fid": result["fid"], "fid_samples": samples.shape[0]}

    return hook


def plot_history(run_dir: str | Path, key: str = "fid") -> Path | None:
    """Plot ``key`` from the checkpoint lines of ``metrics.jsonl`` to ``<key>_history.png`` (needs matplotlib)."""
    import json

    run_dir = Path(run_dir)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    points = [(r["step"], r[key]) for r in lines if r.get("kind") == "checkpoint" and key in r]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(*zip(*points), marker="o")
    ax.set_xlabel("training step")
    ax.set_ylabel(key.upper())
    ax.grid(alpha=0.3)
    out = run_dir / f"{key}_history.png"
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def format_report(report: dict[str, Any]) -> str:
    """The table ``scorekit evaluate`` prints."""
    from scorekit.metrics import format_table

    return format_table(report)
