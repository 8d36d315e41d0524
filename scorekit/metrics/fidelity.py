"""FID, Inception score and KID through torch-fidelity, with the real-against-real floor beside them."""

from __future__ import annotations

import os
import tempfile
import warnings
from typing import Any, Iterable, Mapping

import torch
from torch.utils.data import Dataset

from scorekit.errors import MetricsInputError, SampleCountWarning, TooFewSamplesError
from scorekit.metrics.extractors import ExtractorSpec, get_extractor
from scorekit.metrics.image_checks import check_images, fit_to_extractor

METRICS = ("fid", "isc", "kid")
#: below this many samples FID's bias is large enough that only equal counts compare
FID_MIN_SAMPLES = 10_000


class _Uint8Images(Dataset):
    """``[N, C, H, W]`` images in [0, 1] as the uint8 tensors torch-fidelity's extractors take."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images.detach().mul(255.0).round_().to(device="cpu", dtype=torch.uint8)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def evaluate(
    samples: torch.Tensor,
    reference: torch.Tensor,
    *,
    extractor: str = "scorekit-digits",
    metrics: Iterable[str] = METRICS,
    real_floor: torch.Tensor | None = None,
    weights_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    repeat_channels: bool = False,
    isc_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    batch_size: int = 256,
    seed: int = 2020,
    device: str | None = None,
    heldout_loss: float | None = None,
) -> dict[str, Any]:
    """FID / IS / KID of ``samples`` against ``reference`` (both ``[N, C, H, W]`` in [0, 1]); a JSON-ready dict.

    ``real_floor`` (real images not in ``reference``, e.g. the held-out digits) is scored
    the same way against ``reference``; its figures, under ``"real_floor"``, are the best a
    model can hope for at that sample count. IS is over ``isc_splits`` splits (mean and
    std); with a floor, ``"isc_matched"`` holds the samples' IS over splits of the floor's
    size (the fair comparison: IS grows with the split size); KID over ``kid_subsets``
    subsets of ``min(kid_subset_size, N, M)`` images.
    ``weights_path``: the extractor's weights (Inception: the file or its folder; default
    torch-hub's checkpoint folder). ``repeat_channels`` repeats grayscale to 3 channels
    for Inception. ``heldout_loss`` (from :func:`heldout_loss`) is stored for the table.
    Warns :class:`SampleCountWarning` when FID uses fewer than 10,000 samples. Images are
    quantised to 8 bits (torch-fidelity's extractors take uint8, as from saved PNGs). Each
    image set goes through the extractor once, however many figures use it.
    """
    spec = get_extractor(extractor)
    wanted = _check_metrics(metrics)
    if not isinstance(isc_splits, int) or isc_splits < 1:
        raise MetricsInputError(f"isc_splits must be an integer >= 1, got {isc_splits!r}")
    sets = {"samples": samples, "reference": reference}
    if real_floor is not None:
        sets["real_floor"] = real_floor
    sets = {k: fit_to_extractor(check_images(v, k), k, spec, repeat_channels) for k, v in sets.items()}
    shapes = {k: tuple(v.shape[1:]) for k, v in sets.items()}
    if len(set(shapes.values())) > 1:
        raise MetricsInputError(f"all image sets must have one image shape, got {shapes}")
    counts = {k: int(v.shape[0]) for k, v in sets.items()}
    _check_counts(spec, wanted, counts, isc_splits)
    weights, facts = spec.weights(weights_path, cache_dir)
    spec.register()
    if "fid" in wanted and counts["samples"] < FID_MIN_SAMPLES:
        warnings.warn(
            f"FID on {counts['samples']} samples (fewer than {FID_MIN_SAMPLES:,}) is biased upward, the more so "
            "the fewer the samples: compare it only with FID on the same number of samples against the same "
            "reference (the paper's figures use 50,000)",
            SampleCountWarning,
            stacklevel=2,
        )
    # each image set goes through the extractor once: torch-fidelity caches its features by set
    # name in a directory that lives only for this call (the reference serves both the samples
    # and the floor; the samples serve both IS split sizes)
    with tempfile.TemporaryDirectory(prefix="scorekit-features-") as features:
        options = dict(
            spec=spec, wanted=wanted, weights=str(weights), isc_splits=isc_splits, kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size, batch_size=batch_size, seed=seed, device=_device(device),
            features=features,
        )
        result: dict[str, Any] = {
            "extractor": spec.name,
            "feature_layers": {m: spec.layers[m] for m in wanted},
            "num_samples": counts["samples"],
            "num_reference": counts["reference"],
            "repeat_channels": bool(repeat_channels and spec.channels == 3 and samples.shape[1] == 1),
            "seed": seed,
            **facts,
            **_score(sets, "samples", "reference", **options),
            "real_floor": None,
        }
        if "real_floor" in sets:
            floor = _score(sets, "real_floor", "reference", **options)
            result["real_floor"] = {"num_samples": counts["real_floor"], **floor}
            if "isc" in wanted:
                result["isc_matched"] = _isc_at_split_size(sets, counts, options)
    if heldout_loss is not None:
        result["heldout_loss"] = float(heldout_loss)
    return result


def _isc_at_split_size(sets: dict[str, torch.Tensor], counts: dict[str, int], options: dict[str, Any]) -> dict[str, Any]:
    """IS of the samples over splits as large as the floor's, so the two compare.

    IS grows with the split size (each split's marginal class distribution is estimated
    from its own images), so 1,000 samples in 10 splits of 100 against 359 held-out
    digits in 10 splits of 36 flatters the samples; here they get splits of ~36 too.
    """
    size = counts["real_floor"] / options["isc_splits"]
    splits = max(1, min(counts["samples"], round(counts["samples"] / size)))
    scored = _score(sets, "samples", "reference", **{**options, "wanted": ("isc",), "isc_splits": splits})
    return {**scored, "split_size": counts["samples"] / splits}


def compare(metrics_a: Mapping[str, Any], metrics_b: Mapping[str, Any]) -> dict[str, float]:
    """``b - a`` for every figure both results hold (``fid``, ``isc_mean``, ``kid_mean``, ``heldout_loss``).

    Raises when the two used different extractors or feature layers (not comparable);
    warns :class:`SampleCountWarning` when their sample or reference counts differ.
    """
    for key in ("extractor", "feature_layers"):
        if metrics_a.get(key) != metrics_b.get(key):
            raise MetricsInputError(
                f"the results used different {key} ({metrics_a.get(key)!r} vs {metrics_b.get(key)!r}); "
                "figures from different feature spaces are not comparable: recompute one of them"
            )
    for key in ("num_samples", "num_reference"):
        if metrics_a.get(key) != metrics_b.get(key):
            warnings.warn(
                f"comparing results with different {key} ({metrics_a.get(key)} vs {metrics_b.get(key)}): FID and IS "
                "depend on the sample count, so the difference mixes model quality with sample size; "
                "recompute both on equal counts",
                SampleCountWarning,
                stacklevel=2,
            )
    keys = ("fid", "isc_mean", "kid_mean", "heldout_loss")
    both = [k for k in keys if metrics_a.get(k) is not None and metrics_b.get(k) is not None]
    return {k: float(metrics_b[k]) - float(metrics_a[k]) for k in both}


def _check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    wanted = tuple(dict.fromkeys(metrics))
    unknown = [m for m in wanted if m not in METRICS]
    if unknown or not wanted:
        raise MetricsInputError(f"metrics must be a non-empty selection of {METRICS}, got {tuple(metrics)!r}")
    return wanted


def _check_counts(spec: ExtractorSpec, wanted: tuple[str, ...], counts: dict[str, int], isc_splits: int) -> None:
    """FID needs a full-rank covariance (more samples than feature dims); IS at least one sample per split; KID two."""
    if "fid" in wanted:
        layer = spec.layers["fid"]
        need = spec.dims[layer] + 1
        short = {k: n for k, n in counts.items() if n < need}
        if short:
            raise TooFewSamplesError(
                f"FID with extractor {spec.name!r} reads layer {layer!r} of {spec.dims[layer]} dimensions; its "
                f"covariance is full-rank only with more samples than dimensions, so every set needs at least "
                f"{need} images, but got {', '.join(f'{k}={n}' for k, n in short.items())}. "
                "Pass more images or leave 'fid' out of metrics"
            )
    if "isc" in wanted:
        short = {k: n for k, n in counts.items() if k != "reference" and n < isc_splits}
        if short:
            raise TooFewSamplesError(
                f"the Inception score over isc_splits={isc_splits} splits needs at least {isc_splits} images per set, "
                f"got {', '.join(f'{k}={n}' for k, n in short.items())}; pass more images or lower isc_splits"
            )
    if "kid" in wanted:
        short = {k: n for k, n in counts.items() if n < 2}
        if short:
            raise TooFewSamplesError(f"KID needs at least 2 images per set, got {short}")


def _device(device: str | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise MetricsInputError(f"device must be 'cpu' or 'cuda' (torch-fidelity's choice), got {device!r}")
    return device


def _score(
    sets: dict[str, torch.Tensor], first: str, second: str, *, spec: ExtractorSpec, wanted: tuple[str, ...],
    weights: str, isc_splits: int, kid_subsets: int, kid_subset_size: int, batch_size: int, seed: int, device: str,
    features: str,
) -> dict[str, Any]:
    """One torch-fidelity call: ``sets[first]`` is input1 (IS is computed on it), ``sets[second]`` input2.

    The set names also key their features in the cache directory ``features``, so each
    set is extracted once however many calls use it."""
    import torch_fidelity

    images, reference = sets[first], sets[second]

    subset = min(kid_subset_size, images.shape[0], reference.shape[0])
    raw = torch_fidelity.calculate_metrics(
        input1=_Uint8Images(images),
        input2=_Uint8Images(reference),
        fid="fid" in wanted,
        isc="isc" in wanted,
        kid="kid" in wanted,
        feature_extractor=spec.name,
        feature_layer_fid=spec.layers["fid"],
        feature_layer_isc=spec.layers["isc"],
        feature_layer_kid=spec.layers["kid"],
        feature_extractor_weights_path=weights,
        isc_splits=isc_splits,
        kid_subsets=kid_subsets,
        kid_subset_size=subset,
        batch_size=batch_size,
        rng_seed=seed,
        cuda=device == "cuda",
        cache=True,
        cache_root=features,
        input1_cache_name=first,
        input2_cache_name=second,
        save_cpu_ram=True,  # no DataLoader worker processes for in-memory tensors
        verbose=False,
    )
    out: dict[str, Any] = {}
    if "fid" in wanted:
        out["fid"] = raw[torch_fidelity.KEY_METRIC_FID]
    if "isc" in wanted:
        out.update(isc_mean=raw[torch_fidelity.KEY_METRIC_ISC_MEAN], isc_std=raw[torch_fidelity.KEY_METRIC_ISC_STD],
                   isc_splits=isc_splits)
    if "kid" in wanted:
        out.update(kid_mean=raw[torch_fidelity.KEY_METRIC_KID_MEAN], kid_std=raw[torch_fidelity.KEY_METRIC_KID_STD],
                   kid_subsets=kid_subsets, kid_subset_size=subset)
    return {k: float(v) if isinstance(v, float) else v for k, v in out.items()}
