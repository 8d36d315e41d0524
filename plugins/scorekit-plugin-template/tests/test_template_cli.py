"""The template's ``pc`` sampler from the command line.

``pc`` has no ``initial_noise``: the model's default start, N(0, sigma_1^2 I), lets ``scorekit train`` draw its
grids and final samples and ``scorekit sample`` run from the checkpoint (without it the run trained and then
failed with "pass x_init").
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

import scorekit
from scorekit.cli import main

import scorekit_plugin_template.plugin


class TinyImages(Dataset):
    """64 training (16 held-out) random 1 x 4 x 4 images in [0, 1]: a dataset that needs no download."""

    def __init__(self, root: str | None = None, train: bool = True) -> None:
        n = 64 if train else 16
        self.images = torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(int(train)))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


class TinyData:
    @scorekit.hookimpl
    def register_datasets(self, register):
        register("tiny_images", TinyImages)


@pytest.fixture
def cli_host(monkeypatch):
    """The process-wide host the command uses: the built-ins, this plugin (in-process) and the tiny dataset."""
    monkeypatch.setenv("SCOREKIT_DISABLE_PLUGIN_AUTOLOAD", "1")  # the same components, installed or not
    scorekit.reset_host()
    scorekit.register_plugin(scorekit_plugin_template.plugin, name="template")
    scorekit.register_plugin(TinyData(), name="tiny-data")
    yield
    scorekit.reset_host()


def test_pc_trains_and_samples_from_the_command_line(cli_host, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "data.name=tiny_images", "model.sampler=pc",
            "model.sampler_options={n_corrector = 1}", "model.network_options={hidden = 16}", "model.sigmas.n=3",
            "train.n_iters=4", "train.batch_size=16", "train.checkpoint_every=2", "train.eval_every=2",
            "train.sample_every=2", "sample.n_samples=8", "sample.batch_size=4", "sample.grid_size=4"]
    assert main(args) == 0
    assert (run / "grid_2.png").is_file() and (run / "grid_4.png").is_file()  # the trainer's grids
    samples = torch.load(run / "samples.pt")
    assert samples.shape == (8, 1, 4, 4) and torch.isfinite(samples).all()
    assert main(["sample", str(run), "-n", "4"]) == 0
