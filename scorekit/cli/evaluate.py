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
                 extractor: str | None = None, weights_path: str | None = None, samples_path: str | Path | None = None,
                 metrics: tuple[str, ...] = ("fid", "isc", "kid")) -> dict[str, Any]:
    """``metrics`` (FID / IS / KID) of the samples against the training images, the same metrics for
    held-out real images (the floor), the held-out Eq. 6 loss and a nearest-neighbour grid.

    The samples are ``run_dir/samples.pt`` unless ``samples_path`` names another file. Writes the
    report and the grid beside the samples: ``metrics.json`` and ``nearest.png`` for the run's own
    ``samples.pt``, ``<stem>-metrics.json`` and ``<stem>-nearest.png`` for any other file (so the
    run's own figures are never replaced); returns the report.
    """
    from scorekit import metrics as metrics_module

    run_dir = Path(run_dir)
    path = run_dir / "samples.pt" if samples_path is None else Path(samples_path)
    if not path.is_file():
        raise DataError(f"{run_dir} has no samples.pt; draw them first: scorekit sample {run_dir} --overwrite "
                        "(or score another file with --samples FILE)")
    try:
        samples = torch.load(path, weights_only=True)
    except Exception as exc:  # truncated, corrupt or not a tensor file: RuntimeError, EOFError, pickle errors, ...
        lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Check the doc")]
        reason = (lines[-1] if lines else "empty file")[:200]
        raise DataError(f"{path} cannot be read ({type(exc).__name__}: {reason}); draw the samples again: "
                        f"scorekit sample {run_dir} --overwrite") from exc
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
    counts = {"samples": samples.shape[0], "reference": train.shape[0], "real_floor": held.shape[0]}
    wanted, skipped = choose_metrics(metrics, name, weights_path, counts)
    if wanted:
        report = metrics_module.evaluate(samples, train, extractor=name, real_floor=held, weights_path=weights_path,
                                         repeat_channels=_repeat_gray(train, name), metrics=wanted,
                                         heldout_loss=eq6["heldout_loss"])
    else:
        report = {"extractor": "none", "num_samples": counts["samples"], "num_reference": counts["reference"],
                  "real_floor": None, "heldout_loss": eq6["heldout_loss"]}
    if skipped:
        report["metrics_skipped"] = skipped
    report["heldout_loss_per_level"] = eq6.get("heldout_loss_per_level")
    own = path == run_dir / "samples.pt"
    grid = run_dir / "nearest.png" if own else path.with_name(f"{path.stem}-nearest.png")
    distances = metrics_module.nearest_neighbour_grid(samples, train, grid)
    report["nearest_train_distance_mean"] = distances[:, 0].mean().item()
    write_json(run_dir / "metrics.json" if own else path.with_name(f"{path.stem}-metrics.json"), report)
    return report


#: how the table names each metric
_LABELS = {"fid": "FID", "isc": "IS", "kid": "KID"}


def choose_metrics(metrics: tuple[str, ...], extractor: str, weights_path: str | None,
                   counts: dict[str, int]) -> tuple[tuple[str, ...], list[str]]:
    """The ``metrics`` that can be computed, and one line per kind of skipped ones (for the report).

    Without the extractor's weights file (Inception-v3's, which scorekit never downloads) FID, IS and KID are
    all skipped, in one line naming the file that would enable them; the held-out Eq. 6 loss is still
    reported. Of several metrics, FID is skipped when a set has no more images than the extractor's features
    (its covariance would be singular), IS when the samples or the floor have fewer than its 10 splits, KID
    below 2; when none of them can be computed they are all returned, for :func:`scorekit.metrics.evaluate`
    to raise its error.
    """
    from scorekit.errors import WeightsNotFoundError
    from scorekit.metrics.extractors import INCEPTION_URL, get_extractor, inception_weights_file

    spec = get_extractor(extractor)
    try:
        spec.weights(weights_path, None)
    except WeightsNotFoundError as exc:
        if extractor != DEFAULT_EXTRACTOR:
            return (), [f"FID, IS and KID skipped: {' '.join(str(exc).split())}"]
        path = inception_weights_file(weights_path)
        line = (f"FID, IS and KID skipped: no Inception-v3 weights file {path}; download {INCEPTION_URL} to that "
                "path (or pass --inception-weights FILE) to compute them")
        return (), [line]
    need = {"fid": spec.dims[spec.layers["fid"]] + 1, "isc": 10, "kid": 2}  # metrics.evaluate's rules
    sets = {"fid": counts, "isc": {k: n for k, n in counts.items() if k != "reference"}, "kid": counts}
    wanted, skipped = [], []
    for metric in metrics:
        short = {k: n for k, n in sets.get(metric, {}).items() if n < need[metric]}
        if not short:
            wanted.append(metric)
            continue
        got = ", ".join(f"{k}={n}" for k, n in short.items())
        skipped.append(f"{_LABELS.get(metric, metric)} skipped: it needs at least {need[metric]} images per set "
                       f"with extractor {extractor!r}, got {got} (raise sample.n_samples, or data.options.holdout "
                       "for real_floor)")
    if not wanted:  # nothing asked for can be computed: metrics.evaluate's error says why
        return tuple(metrics), []
    return tuple(wanted), skipped


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
        samples = outputs.sample_images(model, reference, cfg.sample, n=cfg.train.fid_samples, progress=False,
                                        mean=float(reference.mean()))
        with warnings.catch_warnings():  # the small-sample warning is expected here: the count is fixed
            warnings.simplefilter("ignore", metrics.SampleCountWarning)
            result = metrics.evaluate(samples, reference, extractor=name, metrics=("fid",), weights_path=weights_path,
                                      repeat_channels=_repeat_gray(reference, name))
        return {"fid": result["fid"], "fid_samples": samples.shape[0]}

    return hook


def plot_history(run_dir: str | Path, key: str = "fid") -> Path | None:
    """Plot ``key`` from the checkpoint lines of ``metrics.jsonl`` to ``<key>_history.png`` (needs matplotlib)."""
    from scorekit.training.monitor import plot_curves, read_metrics

    run_dir = Path(run_dir)
    lines = read_metrics(run_dir / "metrics.jsonl")
    points = [(r["step"], r[key]) for r in lines if r.get("kind") == "checkpoint" and key in r]
    if not points:
        return None
    return plot_curves(run_dir / f"{key}_history.png", [(key.upper(), points, "markers")], ylabel=key.upper())


def format_report(report: dict[str, Any]) -> str:
    """The table ``scorekit evaluate`` prints."""
    from scorekit.metrics import format_table

    return "\n".join([format_table(report), *(report.get("metrics_skipped") or [])])
