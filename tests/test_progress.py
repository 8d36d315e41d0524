"""What a user sees during a run: progress lines off a terminal, sampler steps over all batches, the console
logger, held-out loss and FID lines, TensorBoard, loss.png, upscaled grids and the labelled nearest.png."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import types
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pytest
import torch

import scorekit
from scorekit.errors import OptionError
from scorekit.metrics import nearest_neighbour_grid
from scorekit.samplers.info import SamplerStep
from scorekit.samplers.monitor import PlainProgress, format_duration, progress_bar
from scorekit.training import TrainConfig, split_holdout, train
from scorekit.training.monitor import configure_logging, plot_losses, smooth
from scorekit.training.sampling import StepProgress, grid_scale, sample_in_batches, write_grid


@pytest.fixture(autouse=True)
def _not_a_notebook(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def data() -> torch.Tensor:
    return torch.randn(96, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0


def tiny(**options) -> scorekit.ScoreModel:
    return scorekit.compose(network_options={"hidden": 16}, **options)


def config(**overrides) -> TrainConfig:
    defaults = dict(n_iters=6, batch_size=32, checkpoint_every=3, sample_every=0, eval_every=0, log_every=3)
    return TrainConfig(**{**defaults, **overrides})


# --- progress lines -------------------------------------------------------------------------------

def test_off_a_terminal_progress_is_a_bounded_number_of_plain_lines(capsys):
    clock = FakeClock()
    bar = progress_bar(1000, "training", "step", clock=clock)
    assert isinstance(bar, PlainProgress)
    for _ in range(1000):  # 500 s at 2 steps a second: a line every 10 s, and one at the end
        clock.now += 0.5
        bar.update(1)
        bar.set_postfix(loss="7.41", refresh=False)
    bar.close()
    bar.close()  # closing twice prints nothing more
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and 45 <= len(lines) <= 51
    assert all(line.startswith("training: step ") for line in lines)
    assert lines[0] == "training: step 20/1000 (2%), 2 it/s, loss 7.41, eta 8 min"
    assert lines[-1].startswith("training: step 1000/1000 (100%), 2 it/s, loss 7.41")
    assert "eta" not in lines[-1]


def test_a_terminal_gets_tqdm_and_no_plain_lines():
    from tqdm import tqdm

    stream = Terminal()
    bar = progress_bar(10, "training", "step", stream=stream)
    assert isinstance(bar, tqdm)
    bar.update(10)
    bar.close()
    assert "\r" in stream.getvalue() and "10/10" in stream.getvalue()


def test_plain_progress_without_a_total_and_after_a_resume(capsys):
    clock = FakeClock()
    bar = progress_bar(None, "sampling", "step", clock=clock)
    clock.now = 4.0
    bar.update(8)
    bar.close()
    assert capsys.readouterr().err == "sampling: step 8, 2 it/s\n"
    bar = progress_bar(100, "training", "step", initial=50, clock=clock)  # the rate counts this process's steps
    clock.now += 10.0
    bar.update(25)
    bar.close()
    assert capsys.readouterr().err == "training: step 75/100 (75%), 2.5 it/s, eta 10 s\n"


@pytest.mark.parametrize("seconds, text", [(40, "40 s"), (54 * 60, "54 min"), (2.5 * 3600, "2.5 h")])
def test_durations_read_as_in_a_log(seconds, text):
    assert format_duration(seconds) == text


def test_training_off_a_terminal_prints_its_last_line(tmp_path, capsys):
    train(tiny(), data(), config(), tmp_path / "r")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("training:")]
    assert len(lines) == 1 and lines[0].startswith("training: step 6/6 (100%)") and "loss " in lines[0]


# --- sampling: sampler steps over all batches -----------------------------------------------------

def test_sampling_progress_counts_sampler_steps_over_all_batches(capsys):
    model = tiny(sigmas=[1.0, 0.5, 0.1], sampler_options={"steps_per_level": 4})
    model.materialize(torch.zeros(1, 2))
    like = torch.zeros(1, 2)
    quiet = sample_in_batches(model, like, 10, generator=torch.Generator().manual_seed(0), batch_size=4)
    shown = sample_in_batches(model, like, 10, generator=torch.Generator().manual_seed(0), batch_size=4,
                              progress=True)
    assert torch.equal(quiet, shown)  # counting steps changes no draw
    lines = capsys.readouterr().err.splitlines()
    # 3 levels x 4 steps, in 3 batches (4 + 4 + 2 chains): 36 steps, not 10 images
    assert len(lines) == 1 and lines[0].startswith("sampling: step 36/36 (100%)") and "batch 3/3" in lines[0]


class CountingSampler:
    """A sampler that does not announce its total: seven callback steps per run."""

    def initial_noise(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.rand(like.shape, generator=generator)

    def __call__(self, score, x, *, sigmas=None, generator=None, callback=None):
        for step in range(7):
            if callback is not None:
                callback(SamplerStep(step=step, level=None, sigma=None, step_size=0.1, score_norm=0.0, x=x))
        return x


def test_a_sampler_that_announces_nothing_gets_its_total_from_the_first_batch(capsys):
    model = scorekit.compose(network_options={"hidden": 8}, estimator=None, sampler=CountingSampler(), sigmas=None)
    model.materialize(torch.zeros(1, 2))
    sample_in_batches(model, torch.zeros(1, 2), 9, generator=torch.Generator().manual_seed(0), batch_size=3,
                      progress=True)
    assert capsys.readouterr().err.startswith("sampling: step 21/21 (100%)")


def test_step_progress_learns_the_total_once():
    progress = StepProgress(4)
    for _ in range(2):
        with progress.batch():
            for _ in range(5):
                progress.step(None)
    assert progress.per_batch == 5 and progress.bar.total == 20 and progress.bar.n == 10
    progress.close()


# --- the console: configure_logging, held-out loss and FID lines ----------------------------------

@contextmanager
def unconfigured_logging() -> Iterator[logging.Logger]:
    """No handler on the root or the scorekit logger, as in a fresh process; pytest's handlers (added for the
    test's call phase, so this runs inside the test) are put back on the way out."""
    root, log = logging.getLogger(), logging.getLogger("scorekit")
    saved = root.handlers[:], log.handlers[:], log.level
    root.handlers.clear()
    log.handlers.clear()
    log.setLevel(logging.NOTSET)
    try:
        yield log
    finally:
        root.handlers[:], log.handlers[:] = saved[0], saved[1]
        log.setLevel(saved[2])


def test_configure_logging_shows_info_on_stderr_once(capsys):
    with unconfigured_logging() as log:
        assert configure_logging() is True
        assert configure_logging() is False  # idempotent: one handler
        assert len(log.handlers) == 1 and logging.getLogger().handlers == []
        logging.getLogger("scorekit.training").info("step 5: held-out loss 1.25")
        logging.getLogger("scorekit.training").warning("resuming with changed options")
        logging.getLogger("scorekit.training").debug("not shown")
    assert capsys.readouterr().err == "step 5: held-out loss 1.25\nwarning: resuming with changed options\n"


def test_configure_logging_leaves_a_configured_application_alone():
    with unconfigured_logging() as log:
        logging.getLogger().addHandler(logging.NullHandler())
        assert configure_logging() is False
        assert log.handlers == [] and log.level == logging.NOTSET


def test_heldout_loss_and_fid_are_logged_one_line_each(tmp_path, caplog):
    train_set, holdout = split_holdout(data(), 0.25)

    def hook(step, model, run_dir):
        return {"fid": 10.0 / step, "fid_samples": 16}

    with caplog.at_level(logging.INFO, logger="scorekit.training"):
        train(tiny(), train_set, config(eval_every=3), tmp_path / "r", holdout=holdout, on_checkpoint=hook,
              best_metric="fid", progress=False)
    messages = [r.getMessage() for r in caplog.records]
    evals = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in line]
    assert [m for m in messages if "held-out" in m] == [f"step {m['step']}: held-out loss {m['heldout_loss']:.5g}"
                                                         for m in evals]
    assert [m for m in messages if "fid" in m] == ["step 3: fid 3.3333, fid_samples 16 (best so far)",
                                                   "step 6: fid 1.6667, fid_samples 16 (best so far)"]


# --- TensorBoard ----------------------------------------------------------------------------------

def test_tensorboard_without_the_package_fails_before_anything(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    message = 'train.logger="tensorboard" needs the tensorboard package: pip install "scorekit[tensorboard]"'
    with pytest.raises(OptionError, match=re.escape(message)):
        train(tiny(), data(), config(logger="tensorboard"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


class FakeWriter:
    made: list[FakeWriter] = []

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def close(self) -> None:
        self.closed = True


def test_tensorboard_gets_the_scalars_of_metrics_jsonl(tmp_path, monkeypatch):
    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    monkeypatch.setattr(FakeWriter, "made", [])
    train_set, holdout = split_holdout(data(), 0.25)
    run = tmp_path / "r"
    train(tiny(), train_set, config(eval_every=3, logger="tensorboard"), run, holdout=holdout, progress=False)
    (writer,) = FakeWriter.made
    assert writer.log_dir == str(run / "tensorboard") and writer.purge_step == 1 and writer.closed
    expected = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        for key in ("loss", "lr", "it_per_s", "heldout_loss"):
            if key in m:
                expected.append((f"{m['kind']}/{key}", m[key], m["step"]))
    got = [s for s in writer.scalars if "per_level" not in s[0]]
    assert got == expected and [step for tag, _, step in got if tag == "eval/heldout_loss"] == [3, 6]
    assert sum(1 for tag, _, step in writer.scalars if tag.startswith("eval/heldout_loss_per_level/")
               and step == 6) == 10  # one scalar per noise level

    # a resume hides what a dead run logged after the checkpoint it continues from
    train(tiny(), train_set, config(n_iters=9, eval_every=3, logger="tensorboard"), run, holdout=holdout,
          progress=False)
    assert FakeWriter.made[1].purge_step == 7


# --- loss.png -------------------------------------------------------------------------------------

def test_every_train_draws_loss_png(tmp_path):
    train_set, holdout = split_holdout(data(), 0.25)
    train(tiny(), train_set, config(eval_every=3), tmp_path / "r", holdout=holdout, progress=False)
    png = tmp_path / "r" / "loss.png"
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5_000
    assert not list((tmp_path / "r").glob(".*.tmp"))  # written atomically


def test_without_matplotlib_loss_png_is_skipped_with_one_line(tmp_path, monkeypatch, caplog):
    train(tiny(), data(), config(), tmp_path / "r", progress=False)
    (tmp_path / "r" / "loss.png").unlink()
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with caplog.at_level(logging.INFO, logger="scorekit.training"):
        assert plot_losses(tmp_path / "r") is None
    assert [r.getMessage() for r in caplog.records] == [
        'loss.png skipped: matplotlib is not installed (pip install "scorekit[plot]")']
    assert not (tmp_path / "r" / "loss.png").exists()


def test_smoothing_is_a_trailing_mean():
    assert smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert smooth([4.0, 2.0], 1) == [4.0, 2.0]


# --- grids ----------------------------------------------------------------------------------------

def png_size(path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def gray_pixels(path) -> torch.Tensor:
    """The PNG as a [height, width] float tensor of 0..255 gray levels."""
    from PIL import Image

    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("L"))).float()


def test_grids_are_upscaled_by_nearest_neighbour_with_visible_padding(tmp_path):
    images = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert grid_scale(8, 8) == 8 and grid_scale(32, 32) == 2 and grid_scale(2, 2) == 8 and grid_scale(128, 64) == 1
    path = write_grid(images, tmp_path / "g.png")
    assert png_size(path) == (2 * (64 + 4) + 4, 2 * (64 + 4) + 4)  # 8 x 8 -> 64 x 64 cells, 2 px padding -> 4 px
    pixels = gray_pixels(path)
    cell = pixels[4:68, 4:68]
    expected = (images[0, 0] * 255 + 0.5).floor().repeat_interleave(8, 0).repeat_interleave(8, 1)
    assert torch.equal(cell, expected)  # each source pixel is an 8 x 8 block
    assert (pixels[:4] == 128).all() and (pixels[:, 68:72] == 128).all()  # the padding, mid-gray
    assert png_size(write_grid(images, tmp_path / "raw.png", scale=1)) == (2 * 10 + 2, 2 * 10 + 2)
    with pytest.raises(OptionError, match="scale must be an integer >= 1 or None"):
        write_grid(images, tmp_path / "bad.png", scale=0)


def test_nearest_png_is_labelled(tmp_path):
    train_set = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    samples = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    nearest_neighbour_grid(samples, train_set, tmp_path / "nearest.png", k=2, n=3)
    plain = write_grid(torch.zeros(9, 1, 8, 8), tmp_path / "plain.png", nrow=3, padding=1, pad_value=0.5)
    labelled, unlabelled = png_size(tmp_path / "nearest.png"), png_size(plain)
    assert labelled[0] == unlabelled[0] and labelled[1] > unlabelled[1] + 8  # a header band over the columns
    band = gray_pixels(tmp_path / "nearest.png")[: labelled[1] - unlabelled[1]]
    assert (band < 128).any() and (band == 255).float().mean() > 0.5  # dark text on white

