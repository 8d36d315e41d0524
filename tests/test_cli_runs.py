"""Managing runs from the command line: resume, sample files, evaluate a samples file, config, plugins."""

from __future__ import annotations

import json
import tomllib

import pytest
import torch

from scorekit.cli import main
from scorekit.training.run_config import SCHEDULE_KEYS

from .test_cli import TINY

pytestmark = pytest.mark.usefixtures("with_entry_points")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits run, trained for 6 steps without final samples."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--preset", "ncsn-digits", "--out", str(out), *TINY, "--no-samples"]) == 0
    return out


def _steps(run):
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_continues_from_its_own_config(trained, tmp_path, capsys):
    run = tmp_path / "run"
    import shutil

    shutil.copytree(trained, run)
    assert main(["resume", str(run), "train.n_iters=9", "sample.n_samples=40", "--no-samples"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "from step 6" in out
    assert max(_steps(run)) == 9
    resolved = tomllib.loads((run / "config.toml").read_text())
    assert resolved["train"]["n_iters"] == 9 and resolved["sample"]["n_samples"] == 40
    assert resolved["model"]["network"] == "mlp"  # the rest comes from the run's own config, not a preset


@pytest.mark.parametrize("key", ["train.lr=1", "model.sigmas.n=4", "data.name=folder", "train.batch_size=8",
                                 "train.seed=3", "name=other", "sample"])
def test_resume_refuses_what_changes_the_model_or_data(trained, key, capsys):
    before = (trained / "config.toml").read_text()
    assert main(["resume", str(trained), key]) == 2
    err = capsys.readouterr().err
    assert f"{key.partition('=')[0]} cannot change on resume" in err
    assert "train.n_iters" in err and "sample.*" in err
    assert (trained / "config.toml").read_text() == before  # a refused resume changes nothing


def test_every_schedule_key_is_a_train_option():
    from scorekit.training.run_config import TrainConfig
    import attrs

    names = {f.name for f in attrs.fields(TrainConfig)}
    assert set(SCHEDULE_KEYS) <= names
    assert not {"lr", "batch_size", "seed", "ema_decay"} & set(SCHEDULE_KEYS)


def test_resume_needs_a_run_directory(tmp_path, capsys):
    assert main(["resume", str(tmp_path)]) == 2
    assert "has no config.toml" in capsys.readouterr().err


def test_sample_writes_a_new_file_and_never_the_training_samples(trained, tmp_path, capsys):
    run = tmp_path / "run"
    import shutil

    shutil.copytree(trained, run)
    torch.save(torch.zeros(3, 1, 8, 8), run / "samples.pt")  # what training wrote
    assert main(["sample", str(run), "-n", "5", "--seed", "7"]) == 0
    assert torch.load(run / "samples.pt").shape[0] == 3
    drawn = torch.load(run / "samples-seed7-n5.pt")
    assert drawn.shape == (5, 1, 8, 8) and (run / "samples-seed7-n5.png").is_file()

    target = tmp_path / "mine.pt"
    assert main(["sample", str(run), "-n", "4", "--out", str(target)]) == 0
    assert torch.load(target).shape[0] == 4 and target.with_suffix(".png").is_file()
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "2", "--out", str(target)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert torch.load(target).shape[0] == 4
    assert main(["sample", str(run), "-n", "2", "--out", str(target), "--overwrite"]) == 0
    assert torch.load(target).shape[0] == 2

    assert main(["sample", str(run), "-n", "6", "--overwrite"]) == 0  # on request: the run's own samples.pt
    assert torch.load(run / "samples.pt").shape[0] == 6


@pytest.mark.parametrize("out, message", [("x.png", "must end in .pt"), ("nowhere/x.pt", "does not exist")])
def test_sample_out_must_be_a_pt_file_in_a_folder(trained, tmp_path, out, message, capsys):
    assert main(["sample", str(trained), "--out", str(tmp_path / out)]) == 2
    assert message in capsys.readouterr().err


def test_evaluate_a_samples_file_with_chosen_metrics(trained, tmp_path, capsys):
    samples = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "few.pt"
    torch.save(samples, path)
    # 20 samples are too few for FID (64 feature dims) but enough for IS and KID
    assert main(["evaluate", str(trained), "--samples", str(path), "--metrics", "is,kid"]) == 0
    report = json.loads((tmp_path / "few-metrics.json").read_text())
    assert report["num_samples"] == 20 and "isc_mean" in report and "kid_mean" in report and "fid" not in report
    assert not (trained / "metrics.json").exists()  # the run's own metrics are not replaced
    capsys.readouterr()
    assert main(["evaluate", str(trained), "--samples", str(path), "--metrics", "fid"]) == 2
    err = capsys.readouterr().err
    assert "--metrics is,kid" in err and "-n" in err


@pytest.mark.parametrize("value", ["fid,inception", "", "FID;IS"])
def test_evaluate_metrics_names_what_is_allowed(trained, value, capsys):
    assert main(["evaluate", str(trained), "--metrics", value]) == 2
    assert "fid, is, kid" in capsys.readouterr().err


def test_config_prints_toml_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["config", "--preset", "ncsn-digits", "train.n_iters=123", "sample.seed=4"]) == 0
    text = capsys.readouterr().out
    table = tomllib.loads(text)
    assert table["train"]["n_iters"] == 123 and table["sample"]["seed"] == 4 and table["name"] == "ncsn-digits"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "c.toml").write_text(text)  # what it prints is a config file that reproduces it
    assert main(["config", "--config", str(tmp_path / "c.toml")]) == 0
    assert tomllib.loads(capsys.readouterr().out) == table
    assert main(["config", "--preset", "ncsn-digits", "train.n_iter=1"]) == 2
    assert "did you mean 'n_iters'" in capsys.readouterr().err


def test_plugins_describes_each_preset(capsys):
    assert main(["plugins"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("preset ")]
    digits = next(line for line in lines if line.split()[1] == "ncsn-digits")
    assert "make run" in digits and "8 x 8 digits" in digits
    assert all(len(line.split()) > 3 for line in lines)  # every preset has a description


def test_checkpoints_keep_the_data_mean_for_the_default_start(trained):
    """A sampler without initial_noise starts around the data's mean (ScoreModel.initial_noise); `scorekit sample`
    knows it from the checkpoint alone."""
    from scorekit.digits import load_digits, split_indices
    from scorekit.training.checkpoint import load_checkpoint

    images, _ = load_digits()
    train, _ = split_indices(images.shape[0])
    stored = load_checkpoint(trained / "last.pt")["data_mean"]
    # the mean of 256 of the 1,438 training digits: its standard error is below 0.01 (pixel std 0.4 / 16 over
    # correlated pixels, measured spread 0.004), so 0.03 is loose but still fails for a wrong scale or channel
    assert abs(stored - float(images[train].mean())) < 0.03


@pytest.mark.slow
def test_compiled_sampling_draws_the_eager_samples(monkeypatch):
    """``sample.compile`` runs the network through torch.compile: the same chains, to float tolerance."""
    import scorekit

    compiled_modules = []
    real_compile = torch.compile

    def spy(module, *args, **kwargs):
        compiled_modules.append(module)
        return real_compile(module, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", spy)
    from scorekit.cli.outputs import sample_images
    from scorekit.training.run_config import SampleConfig

    model = scorekit.compose(network_options={"dim": 2, "hidden": 8}, sigmas=[1.0, 0.1],
                             sampler_options={"steps_per_level": 3})
    like = torch.zeros(1, 2)
    eager = sample_images(model, like, SampleConfig(n_samples=16, batch_size=8, clamp=None), progress=False)
    compiled = sample_images(model, like, SampleConfig(n_samples=16, batch_size=8, clamp=None, compile=True),
                             progress=False)
    # float32 kernels fused differently: differences of a few ulps per step, far below the chains' scale (~1)
    assert compiled_modules == [model.network]  # compiled once, only when asked
    assert torch.allclose(eager, compiled, atol=1e-4) and not torch.equal(eager, torch.zeros_like(eager))
