"""What a run does with a trained composition: load its data, sample, inpaint, write the results.

Shared by the ``scorekit`` command and the examples; everything here goes through the
public API (compose, the trainer, ``model.sample`` and ``model.inpaint``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from scorekit.errors import DataError
from scorekit.files import atomic_torch_save
from scorekit.model import ScoreModel
from scorekit.plugins import PluginHost
from scorekit.training.run_config import DataConfig, SampleConfig
from scorekit.training.sampling import sample_in_batches, write_grid


def load_dataset(host: PluginHost, data: DataConfig, *, train: bool) -> Dataset:
    """The registered dataset ``data.name`` (its train or held-out split)."""
    factory = host.get("dataset", data.name).factory
    return factory(root=data.root, train=train, **data.options)


def stack(dataset: Dataset, limit: int | None = None) -> torch.Tensor:
    """The first ``limit`` examples of a dataset as one tensor."""
    n = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    if n == 0:
        raise DataError("the dataset is empty")
    return torch.stack([dataset[i] for i in range(n)])


def check_pixels(images: torch.Tensor, expected: tuple[float, float] | None, what: str) -> None:
    """Images must lie in the range the preset expects (its sample clamp, [0, 1] for NCSN)."""
    if expected is None:
        return
    low, high = images.min().item(), images.max().item()
    if low < expected[0] - 1e-6 or high > expected[1] + 1e-6:
        raise DataError(
            f"{what} has pixel values in [{low:.3g}, {high:.3g}] but this configuration expects "
            f"[{expected[0]}, {expected[1]}] (sample.clamp); rescale the data (e.g. divide 8-bit images by 255)"
        )


@torch.no_grad()
def sample_images(model: ScoreModel, like: torch.Tensor, cfg: SampleConfig, *, n: int | None = None,
                  progress: bool = True) -> torch.Tensor:
    """``n`` samples (default ``cfg.n_samples``) in batches from the sampler's initial noise, clamped to ``cfg.clamp``.

    The draws come from one CPU generator seeded with ``cfg.seed``, ``cfg.batch_size`` chains at a time.
    """
    n = cfg.n_samples if n is None else n
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    samples = sample_in_batches(model, like, n, generator=gen, batch_size=cfg.batch_size, to_cpu=True,
                                progress=progress)
    return samples.clamp(*cfg.clamp) if cfg.clamp is not None else samples


@torch.no_grad()
def inpaint_images(model: ScoreModel, images: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide the right half of each image and fill it in (Algorithm 2); returns (mask, result)."""
    mask = torch.ones_like(images[:1])
    mask[..., images.shape[-1] // 2:] = 0
    gen = torch.Generator(device="cpu").manual_seed(seed)
    return mask, model.inpaint(images, mask, generator=gen).clamp(0, 1)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> None:
    """A PNG grid of images in [0, 1] (written atomically), ``floor(sqrt(N))`` per row unless ``nrow`` says."""
    write_grid(images, path, nrow=nrow or max(1, int(len(images) ** 0.5)), padding=1)


def save_samples(run_dir: str | Path, samples: torch.Tensor, grid_size: int) -> None:
    """``samples.pt`` (float N x C x H x W in [0, 1]) beside ``samples.png``."""
    run_dir = Path(run_dir)
    atomic_torch_save(samples.float(), run_dir / "samples.pt")
    save_grid(samples[:grid_size], run_dir / "samples.png")
