"""What a run does with a trained composition: load its data, sample, inpaint, write the results.

Shared by the ``scorekit`` command and the examples; everything here goes through the
public API (compose, the trainer, ``model.sample`` and ``model.inpaint``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from scorekit.errors import DataError, OptionError, ScorekitError
from scorekit.files import atomic_torch_save
from scorekit.model import ScoreModel
from scorekit.options import accepted_options, closest
from scorekit.plugins import PluginHost
from scorekit.training.data import collate
from scorekit.training.run_config import DataConfig, SampleConfig
from scorekit.training.sampling import sample_in_batches, write_grid


def load_dataset(host: PluginHost, data: DataConfig, *, train: bool) -> Dataset:
    """The registered dataset ``data.name`` (its train or held-out split).

    A wrong option name or value of ``data.options`` is an :class:`OptionError` naming the
    key and what the dataset allows, whatever the dataset's factory raised.
    """
    component = host.get("dataset", data.name)
    label = f"dataset {data.name!r} (from {component.owner})"
    names, open_ended = accepted_options(component.factory)
    allowed = [n for n in names if n not in ("root", "train")]
    for key in data.options:
        if key in ("root", "train"):
            raise OptionError(f"data.options.{key} is not an option of {label}: "
                              + ("set data.root (or --data PATH) instead" if key == "root"
                                 else "the train and held-out splits are chosen by the command"))
        if not open_ended and key not in names:
            hint = closest(key, allowed)
            raise OptionError(f"data.options.{key}: {label} has no option {key!r}; "
                              f"allowed: {', '.join(allowed) or '(none)'}"
                              + (f" (did you mean {hint!r}?)" if hint else ""))
    try:
        return component.factory(root=data.root, train=train, **data.options)
    except ScorekitError:
        raise
    except (TypeError, ValueError) as exc:
        raise OptionError(f"data.options of {label}: {' '.join(str(exc).split())}") from exc


def stack(dataset: Dataset, limit: int | None = None, what: str = "the dataset") -> torch.Tensor:
    """The first ``limit`` examples of a dataset as one tensor; examples of different shapes are a DataError."""
    n = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    if n == 0:
        raise DataError(f"{what} is empty")
    return collate([dataset[i] for i in range(n)], what)


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
                  progress: bool = True, mean: float | None = None) -> torch.Tensor:
    """``n`` samples (default ``cfg.n_samples``) in batches from the sampler's initial noise, clamped to ``cfg.clamp``.

    The draws come from one CPU generator seeded with ``cfg.seed``, ``cfg.batch_size`` chains at a time;
    ``mean`` (the data's, stored in checkpoints) centres the default start of a sampler without its own;
    ``cfg.compile`` runs the network through ``torch.compile``.
    """
    n = cfg.n_samples if n is None else n
    param = next(model.parameters(), None)
    if param is not None:  # `like` gives the shape only: the chains run where the model is (a CUDA run's FID hook)
        like = like[:1].to(device=param.device, dtype=param.dtype)
    if cfg.compile:
        model.materialize(like[:1])
        model = model.with_network(torch.compile(model.network))
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    samples = sample_in_batches(model, like, n, generator=gen, batch_size=cfg.batch_size, to_cpu=True,
                                progress=progress, mean=mean)
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


def save_inpainting(run_dir: str | Path, images: torch.Tensor, mask: torch.Tensor, filled: torch.Tensor) -> None:
    """``inpaint.pt`` (the images, the mask, the result) beside ``inpaint.png`` (rows: originals, right half
    hidden, inpainted), both written atomically."""
    run_dir = Path(run_dir)
    atomic_torch_save({"images": images, "mask": mask, "inpainted": filled}, run_dir / "inpaint.pt")
    save_grid(torch.cat([images, images * mask, filled]), run_dir / "inpaint.png", nrow=len(images))


def save_samples(path: str | Path, samples: torch.Tensor, grid_size: int) -> None:
    """The samples (float N x C x H x W in [0, 1]) to ``path`` (``.pt``), a grid of the first ``grid_size``
    beside it (``.png``), both written atomically."""
    path = Path(path)
    atomic_torch_save(samples.float(), path)
    save_grid(samples[:grid_size], path.with_suffix(".png"))
