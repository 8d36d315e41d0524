"""``scorekit run --preset auto --data DIR`` end to end: the error without data, config.toml reproducing the run,
and the evaluation of images that have no feature extractor of their own when the Inception weights are missing."""

from __future__ import annotations

import json
import logging
import tomllib

import numpy as np
import pytest

import scorekit
from scorekit.cli import main
from scorekit.cli.config_files import resolve
from scorekit_ncsn import auto, presets


@pytest.fixture(autouse=True)
def _entry_points(monkeypatch):
    """The command's own host, with the installed plugins (scorekit-ncsn registers `auto`)."""
    monkeypatch.delenv("SCOREKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    scorekit.reset_host()
    yield
    scorekit.reset_host()


def write_folder(root, n, size, mode, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        shape = (size, size) if mode == "L" else (size, size, 3)
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8), mode).save(root / f"{i:03d}.png")
    return root


def test_auto_without_data_is_one_clear_line(tmp_path, capsys):
    assert main(["train", "--preset", "auto", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["scorekit train: error: --preset auto derives its configuration from your images: pass --data DIR"]
    assert not (tmp_path / "r").exists()


def test_config_toml_reproduces_the_run_without_deriving(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "_auto_step_seconds", lambda *args: 0.05)
    monkeypatch.setattr(presets, "_auto_costs", lambda *args: auto.Costs(
        small=16, small_s=16e-4, large=500, large_s=0.05, step_s=0.05, load_s=1.0))
    folder = write_folder(tmp_path / "digits28", 20, 28, "L")
    first = tmp_path / "first"
    assert main(["train", "--preset", "auto", "--data", str(folder), "--out", str(first), "train.n_iters=1",
                 "--no-samples"]) == 0
    written = tomllib.loads((first / "config.toml").read_text())
    assert written["model"]["network"] == "cond_resnet" and written["train"]["n_iters"] == 1
    assert written["data"]["options"]["channels"] == 1 and written["train"]["time_budget"] > 0

    def derive(*args, **kwargs):
        raise AssertionError("--config must not derive again")

    monkeypatch.setattr(presets, "auto", derive)
    cfg = resolve(scorekit.get_host(), None, first / "config.toml")
    assert cfg.to_dict() == json.loads((first / "config.json").read_text())
    second = tmp_path / "second"
    assert main(["train", "--config", str(first / "config.toml"), "--out", str(second), "--no-samples"]) == 0
    assert (second / "config.toml").read_text() == (first / "config.toml").read_text()


def test_run_on_rgb_images_without_inception_weights(tmp_path, monkeypatch, capsys, caplog):
    """FID, IS and KID are skipped in one line naming the weights file; the held-out Eq. 6 loss is reported."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    folder = write_folder(tmp_path / "rgb", 24, 8, "RGB")
    out = tmp_path / "run"
    args = ["run", "--preset", "auto", "--data", str(folder), "--out", str(out), "train.n_iters=2",
            "sample.n_samples=12", "model.sampler_options.steps_per_level=1"]
    with caplog.at_level(logging.INFO, logger="scorekit"):
        assert main(args) == 0
    assert "sigma_1 = " in caplog.text and "train.time_budget = " in caplog.text  # the derivation, printed
    expected = tmp_path / "torch-home" / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    lines = [line for line in capsys.readouterr().out.splitlines() if "skipped" in line]
    assert lines == [(f"FID, IS and KID skipped: no Inception-v3 weights file {expected}; download "
                      "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-"
                      "6726825d.pth to that path (or pass --inception-weights FILE) to compute them")]
    report = json.loads((out / "metrics.json").read_text())
    assert np.isfinite(report["heldout_loss"]) and report.get("fid") is None
    assert len(report["metrics_skipped"]) == 1
    assert main(["evaluate", str(out)]) == 0
    table = capsys.readouterr().out
    assert "Eq. 6 loss (held-out)" in table and table.count("FID, IS and KID skipped") == 1


def test_fid_is_skipped_when_too_few_images_for_inception(tmp_path):
    """With the weights file, 1,000 samples (what auto draws at most) get IS and KID and one line for FID; a
    selection of which nothing can be computed is left to metrics.evaluate's error."""
    from scorekit.cli.evaluate import choose_metrics

    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"")
    counts = {"samples": 1000, "reference": 47_500, "real_floor": 2500}
    wanted, skipped = choose_metrics(("fid", "isc", "kid"), "inception-v3-compat", str(weights), counts)
    assert wanted == ("isc", "kid")
    assert skipped == [("FID skipped: it needs at least 2049 images per set with extractor 'inception-v3-compat', "
                        "got samples=1000 (raise sample.n_samples, or data.options.holdout for real_floor)")]
    assert choose_metrics(("fid",), "inception-v3-compat", str(weights), counts) == (("fid",), [])
    enough = {**counts, "samples": 5000}
    assert choose_metrics(("fid", "isc", "kid"), "inception-v3-compat", str(weights), enough) == (
        ("fid", "isc", "kid"), [])
    wanted, skipped = choose_metrics(("fid", "isc"), "inception-v3-compat", str(tmp_path / "nowhere.pth"), enough)
    assert wanted == () and len(skipped) == 1 and str(tmp_path / "nowhere.pth") in skipped[0]
