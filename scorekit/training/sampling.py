"""Samples in batches and image grids: the one loop and the one PNG writer behind the trainer's grids,
``scorekit sample`` and the FID checkpoint hook.

The caller passes the generator and the batch size, so each keeps its own draws: the
trainer's grids take one batch from a generator on the data's device, the command line
batches of ``SampleConfig.batch_size`` from a CPU generator.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from scorekit.files import atomic_write
from scorekit.model import ScoreModel


def sample_in_batches(model: ScoreModel, like: torch.Tensor, n: int, *, generator: torch.Generator,
                      batch_size: int | None = None, to_cpu: bool = False, progress: bool = False) -> torch.Tensor:
    """``n`` samples shaped like the examples of ``like``, run from the sampler's initial noise.

    Every random number (initial noise and sampler) comes from ``generator``, ``batch_size``
    chains at a time (default: all ``n`` in one batch); ``to_cpu`` moves each batch to the
    CPU as it is done. The model's mode and the autograd mode are left to the caller.
    """
    batch_size = batch_size or n
    out = []
    with tqdm(total=n, desc="sampling", unit="img", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            template = like[:1].expand(min(batch_size, n - start), *like.shape[1:])
            samples = model.sample(model.initial_noise(template, generator), generator=generator)
            out.append(samples.cpu() if to_cpu else samples)
            bar.update(template.shape[0])
    return out[0] if len(out) == 1 else torch.cat(out)


def write_grid(images: torch.Tensor, path: str | os.PathLike, *, clamp: tuple[float, float] | None = (0.0, 1.0),
               nrow: int | None = None, padding: int = 2, pad_value: float = 0.0) -> Path:
    """A PNG grid of ``images`` ``[N, C, H, W]``, written atomically.

    ``clamp=(low, high)`` clamps the images and maps that range to black..white;
    ``None`` scales the grid from its own minimum to maximum. ``nrow`` images per row
    (default: ``ceil(sqrt(N))``), ``padding`` pixels of ``pad_value`` between them.
    """
    from torchvision.utils import save_image  # torchvision is only needed for grids

    images = images.detach().float().cpu()
    if clamp is not None:
        low, high = clamp
        images = (images.clamp(low, high) - low) / (high - low)
    nrow = nrow or max(1, math.ceil(math.sqrt(len(images))))
    return atomic_write(path, lambda f: save_image(images, f, nrow=nrow, padding=padding, pad_value=pad_value,
                                                   normalize=clamp is None, format="png"))
