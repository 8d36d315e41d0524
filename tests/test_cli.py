"""The ``scorekit`` command end to end on a tiny digits run."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
import torch

from scorekit.cli import main

pytestmark = pytest.mark.usefixtures("with_entry_points")

TINY = [
    "model.network=mlp", "model.network_options={hidden = 32}", "model.sigmas.n=3",
    "model.sampler_options.steps_per_level=2", "train.n_iters=6", "train.batch_size=32",
    "train.checkpoint_every=3", "train.eval_every=3", "train.sample_every=0", "train.log_every=2",
    "sample.n_samples=80", "sample.batch_size=40",
]


def test_plugins_lists_components_with_owner(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "estimator" in out and "scorekit-ncsn" in out
    assert any(line.split()[:3] == ["preset", "ncsn-cifar10", "scorekit-ncsn"] for line in out.splitlines())
    assert "step_size=2e-05" in out  # defaults are shown


def test_unknown_preset_lists_the_known_ones(capsys, tmp_path):
    assert main(["train", "--preset", "ncsn-cifar", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown preset" in err and "ncsn-cifar10" in err and "did you mean" in err


def test_unknown_option_is_an_error(capsys, tmp_path):
    assert main(["train", "--preset", "ncsn-digits", "--out", str(tmp_path / "r"), "train.lrate=1"]) == 2
    assert "unknown config key 'train.lrate'" in capsys.readouterr().err


def test_missing_dataset_says_where_to_put_it(capsys, tmp_path):
    assert main(["train", "--preset", "ncsn-cifar10", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "cifar-10-batches-py" in capsys.readouterr().err


def test_pixels_outside_the_expected_range(capsys, tmp_path):
    from PIL import Image

    for i in range(4):
        Image.new("L", (8, 8), color=i * 60).save(tmp_path / f"{i}.png")
    args = ["train", "--preset", "ncsn-digits", "--out", str(tmp_path / "r"), "--data", str(tmp_path),
            "data.name=folder", "data.options={channels = 1, holdout = 0.25}", "sample.clamp=[0.0, 0.5]", *TINY]
    assert main(args) == 2
    assert "expects [0.0, 0.5]" in capsys.readouterr().err


@pytest.mark.slow
def test_run_writes_everything_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    config = tmp_path / "extra.toml"
    config.write_text("[train]\nlr = 0.002\n")
    assert main(["run", "--preset", "ncsn-digits", "--config", str(config), "--out", str(out), *TINY]) == 0
    resolved = tomllib.loads((out / "config.toml").read_text())
    assert resolved["train"]["lr"] == 0.002 and resolved["train"]["n_iters"] == 6
    samples = torch.load(out / "samples.pt")
    assert samples.shape == (80, 1, 8, 8) and samples.dtype == torch.float32
    assert 0 <= samples.min() and samples.max() <= 1
    for name in ("samples.png", "inpaint.png", "metrics.json", "nearest.png", "last.pt", "metrics.jsonl"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_samples"] == 80 and metrics["extractor"] == "scorekit-digits"
    assert {"fid", "isc_mean", "kid_mean", "heldout_loss", "real_floor"} <= set(metrics)
    table = capsys.readouterr().out
    assert "FID" in table
    # the same command on the same directory resumes from last.pt and trains the extra steps only
    assert main(["train", "--out", str(out), "--preset", "ncsn-digits", *TINY, "train.n_iters=9", "--no-samples"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 9


@pytest.mark.subprocess
def test_console_script_and_module_entry_points():
    out = subprocess.run([sys.executable, "-m", "scorekit.cli", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "evaluate" in out.stdout


def test_evaluate_without_samples_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "ncsn-digits", "--out", str(out), *TINY, "--no-samples"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 2
    assert "no samples.pt" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "nowhere")]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["sample", str(tmp_path / "empty")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_fid_at_each_checkpoint_keeps_the_best(tmp_path):
    """The paper's CIFAR-10 rule (FID on 1,000 samples per checkpoint, keep the lowest), scaled down."""
    out = tmp_path / "run"
    assert main(["train", "--preset", "ncsn-digits", "--out", str(out), *TINY, "train.fid_samples=70",
                 "--no-samples"]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    fids = {r["step"]: r["fid"] for r in lines if r.get("kind") == "checkpoint"}
    assert set(fids) == {3, 6}
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["best"]["value"] == min(fids.values()) and best["step"] == min(fids, key=fids.get)
    assert (out / "fid_history.png").is_file()


def test_missing_inception_weights_fail_before_training(tmp_path, capsys):
    """The CIFAR-10 preset keeps the best checkpoint by FID: without the weights file it stops at once."""
    from scorekit_ncsn.fake_data import write_fake_cifar10

    write_fake_cifar10(tmp_path / "c10", per_batch=2)
    args = ["train", "--preset", "ncsn-cifar10", "--data", str(tmp_path / "c10"), "--out", str(tmp_path / "r"),
            "--inception-weights", str(tmp_path / "nowhere"), "model.network_options.ngf=2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Inception-v3 weights" in err and "nowhere" in err
    assert not (tmp_path / "r" / "last.pt").exists()
