"""scorekit.metrics: the digits classifier, FID / IS / KID through torch-fidelity, and their input checks."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("torch_fidelity")
pytest.importorskip("sklearn")

from scorekit.errors import DataError  # noqa: E402
from scorekit.metrics import (  # noqa: E402
    ClassifierCacheWarning,
    MetricsInputError,
    SampleCountWarning,
    TooFewSamplesError,
    WeightsNotFoundError,
    compare,
    digits_classifier,
    digits_split,
    evaluate,
    format_table,
    inception_weights_file,
)
from scorekit.metrics.classifier import train_digits_classifier  # noqa: E402

# KID's default (100 subsets of 1,000) costs seconds of numpy per call; the tests need far fewer
FAST = {"kid_subsets": 5, "kid_subset_size": 200, "device": "cpu"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One trained classifier for the module, in a private cache folder."""
    folder = tmp_path_factory.mktemp("scorekit-cache")
    digits_classifier(folder)
    return folder


@pytest.fixture(autouse=True)
def _private_cache(cache, monkeypatch):
    """Nothing is written to ~/.cache: the default cache is the module's folder."""
    monkeypatch.setenv("SCOREKIT_CACHE", str(cache))


@pytest.fixture(scope="module")
def split():
    return digits_split()


def quiet_evaluate(*args, **kwargs):
    """evaluate() without the (expected) fewer-than-10,000-samples warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SampleCountWarning)
        return evaluate(*args, **{**FAST, **kwargs})


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- the classifier ---------------------------------------------------------------------


def test_classifier_is_accurate_and_reports_it(cache):
    net, info = digits_classifier(cache)
    assert info["from_cache"] is True
    assert info["test_accuracy"] > 0.9
    assert info["num_test"] == 359 and info["num_train"] == 1438


def test_training_is_deterministic_whatever_the_thread_count(cache, split):
    cached, _ = digits_classifier(cache)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again = train_digits_classifier(split)
    finally:
        torch.set_num_threads(threads)
    assert _same_weights(again, cached)


def test_cache_hit_loads_identical_weights_without_retraining(cache):
    first, info = digits_classifier(cache)
    mtime = os.stat(info["cache_file"]).st_mtime_ns
    second, again = digits_classifier(cache)
    assert again["from_cache"] and again["cache_file"] == info["cache_file"]
    assert os.stat(info["cache_file"]).st_mtime_ns == mtime
    assert _same_weights(first, second)


def test_corrupted_cache_file_is_retrained_not_fatal(cache, tmp_path):
    good, info = digits_classifier(cache)
    target = tmp_path / os.path.basename(info["cache_file"])
    target.write_bytes(Path(info["cache_file"]).read_bytes()[:100])  # a torn write
    with pytest.warns(ClassifierCacheWarning, match="unreadable"):
        net, fresh = digits_classifier(tmp_path)
    assert fresh["from_cache"] is False
    assert _same_weights(net, good)
    assert digits_classifier(tmp_path)[1]["from_cache"] is True  # rewritten whole
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary files left


# --- the metrics ------------------------------------------------------------------------


def test_real_floor_is_small_and_noise_is_far(split):
    noise = torch.rand(1438, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    real = quiet_evaluate(split.test_images, split.train_images, real_floor=split.test_images)
    far = quiet_evaluate(noise, split.train_images)
    assert real["fid"] < 1.0
    assert far["fid"] > 10 * real["fid"]
    assert far["kid_mean"] > 10 * abs(real["kid_mean"])
    assert real["isc_mean"] > 5
    assert far["isc_mean"] < real["isc_mean"]
    # the floor is the same computation on the real held-out images
    assert real["real_floor"]["fid"] == pytest.approx(real["fid"])
    assert real["real_floor"]["num_samples"] == 359


def test_matched_inception_score_uses_splits_as_large_as_the_floors(split):
    # the train digits against a floor of 359 held-out digits in 10 splits (~36 each):
    # the samples' matched IS takes 1438 / 36 = 40 splits, and smaller splits score
    # lower (each split's marginal class distribution is fitted to fewer images)
    result = quiet_evaluate(split.train_images, split.train_images, real_floor=split.test_images, metrics=("isc",))
    matched = result["isc_matched"]
    assert matched["isc_splits"] == 40
    assert matched["split_size"] == pytest.approx(359 / 10, rel=0.01)
    assert matched["isc_mean"] < result["isc_mean"]
    assert "splits of 36 images" in format_table(result)
    assert "isc_matched" not in quiet_evaluate(split.test_images, split.train_images, metrics=("isc",))


def test_each_image_set_goes_through_the_extractor_once(split, monkeypatch):
    # samples, reference and floor: the reference serves both comparisons and the samples both
    # IS split sizes, from torch-fidelity's feature cache (which lives only for the call)
    from scorekit.metrics.digits_extractor import DigitsFeatureExtractor

    seen: list[int] = []
    forward = DigitsFeatureExtractor.forward
    monkeypatch.setattr(DigitsFeatureExtractor, "forward", lambda self, x: (seen.append(x.shape[0]), forward(self, x))[1])
    samples = split.train_images[:500]
    result = quiet_evaluate(samples, split.train_images, real_floor=split.test_images)
    assert sum(seen) == 500 + 1438 + 359
    seen.clear()
    again = quiet_evaluate(samples, split.train_images, real_floor=split.test_images)
    assert sum(seen) == 500 + 1438 + 359  # nothing cached across calls: a name never meets other images
    assert again == result


def test_constant_images_have_inception_score_one(split):
    const = torch.full((100, 1, 8, 8), 0.5)
    result = quiet_evaluate(const, split.train_images, metrics=("isc",))
    assert result["isc_mean"] == pytest.approx(1.0, abs=1e-6)
    assert "fid" not in result


def test_copy_of_the_reference_has_zero_fid(split):
    result = quiet_evaluate(split.train_images, split.train_images, metrics=("fid",))
    assert abs(result["fid"]) < 1e-6


def test_result_is_json_and_table_shows_the_floor(split):
    result = quiet_evaluate(split.test_images, split.train_images, real_floor=split.test_images, heldout_loss=0.25)
    back = json.loads(json.dumps(result))
    expected = {"num_samples", "num_reference", "extractor", "fid", "isc_mean", "isc_std", "kid_mean", "kid_std", "real_floor"}
    assert expected <= back.keys()
    assert back["extractor"] == "scorekit-digits" and back["classifier"]["test_accuracy"] > 0.9
    table = format_table(result)
    for word in ("scorekit-digits", "FID", "IS", "KID", "Eq. 6", "real (floor)", "359", "1438", "±"):
        assert word in table


def test_fewer_than_10000_samples_warns(split):
    with pytest.warns(SampleCountWarning, match="10,000"):
        evaluate(split.test_images, split.train_images, metrics=("fid",), **FAST)


def test_compare_warns_on_different_sample_counts(split):
    a = quiet_evaluate(split.test_images, split.train_images, metrics=("fid",))
    b = quiet_evaluate(split.train_images[:200], split.train_images, metrics=("fid",))
    with pytest.warns(SampleCountWarning, match="num_samples"):
        delta = compare(a, b)
    assert delta["fid"] == pytest.approx(b["fid"] - a["fid"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compare(a, a)["fid"] == 0.0
    with pytest.raises(MetricsInputError, match="extractor"):
        compare(a, {**a, "extractor": "inception-v3-compat"})


# --- bad input --------------------------------------------------------------------------


def test_too_few_samples_for_fid_names_the_numbers(split):
    with pytest.raises(TooFewSamplesError, match=r"64 dimensions.*at least 65.*samples=30"):
        evaluate(split.test_images[:30], split.train_images, **FAST)


def test_too_few_samples_for_isc_splits(split):
    with pytest.raises(TooFewSamplesError, match="isc_splits=10"):
        evaluate(split.test_images[:5], split.train_images, metrics=("isc",), **FAST)


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda x: x.index_fill(0, torch.tensor([3]), float("nan")), r"NaN or inf in 1 of 359 images \(indices \[3\]"),
        (lambda x: x * 2 - 1, r"\[0, 1\].*min -1.*\(x \+ 1\) / 2"),
        (lambda x: x * 255, r"\[0, 1\].*max 255"),
        (lambda x: x.expand(-1, 3, -1, -1), "3 channels but extractor 'scorekit-digits' needs 1"),
        (lambda x: torch.nn.functional.interpolate(x, size=(16, 16)), r"1 x 16 x 16 .* needs 1 x 8 x 8"),
        (lambda x: x[:, 0], r"\[N, C, H, W\], got shape \(359, 8, 8\)"),
        (lambda x: (x * 255).to(torch.uint8), "floating-point"),
    ],
    ids=["nan", "minus-one-to-one", "0-255", "rgb", "wrong-size", "no-channel-dim", "uint8"],
)
def test_bad_samples_raise_clear_errors(split, corrupt, match):
    with pytest.raises(MetricsInputError, match=match) as info:
        evaluate(corrupt(split.test_images.clone()), split.train_images, **FAST)
    assert isinstance(info.value, DataError)


def test_unknown_metric_and_extractor(split):
    with pytest.raises(MetricsInputError, match="fid"):
        evaluate(split.test_images, split.train_images, metrics=("lpips",))
    with pytest.raises(MetricsInputError, match="inception-v3-compat"):
        evaluate(split.test_images, split.train_images, extractor="inception")


# --- Inception: never downloaded --------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to download fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("scorekit tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    monkeypatch.setattr(inception, "load_state_dict_from_url", refuse)


def test_missing_inception_weights_name_the_file_and_url(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    images = torch.rand(16, 3, 8, 8)
    expected = tmp_path / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    with pytest.raises(WeightsNotFoundError) as info:
        evaluate(images, images, extractor="inception-v3-compat", metrics=("isc",), **FAST)
    message = str(info.value)
    assert str(expected) in message
    assert "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" in message
    assert isinstance(info.value, FileNotFoundError)


def test_inception_weights_path_may_be_a_folder(tmp_path, no_network):
    images = torch.rand(16, 1, 8, 8)
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "weights-inception")):
        evaluate(images, images, extractor="inception-v3-compat", metrics=("isc",), weights_path=tmp_path,
                 repeat_channels=True, **FAST)
    (tmp_path / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"")
    assert inception_weights_file(tmp_path) == tmp_path / "weights-inception-2015-12-05-6726825d.pth"


def test_inception_url_is_torch_fidelitys():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    from scorekit.metrics.extractors import INCEPTION_URL

    assert INCEPTION_URL == URL_INCEPTION_V3


def test_grayscale_for_inception_needs_explicit_repeat():
    images = torch.rand(16, 1, 8, 8)
    with pytest.raises(MetricsInputError, match="repeat_channels=True"):
        evaluate(images, images, extractor="inception-v3-compat", metrics=("isc",), **FAST)


def test_inception_fid_needs_more_samples_than_2048(tmp_path):
    images = torch.rand(100, 3, 8, 8)
    with pytest.raises(TooFewSamplesError, match=r"2048 dimensions.*at least 2049.*samples=100, reference=100"):
        evaluate(images, images, extractor="inception-v3-compat", weights_path=tmp_path, **FAST)
