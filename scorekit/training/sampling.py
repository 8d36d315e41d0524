"""Samples in batches and image grids: the one loop and the one PNG writer behind the trainer's grids,
``scorekit sample`` and the FID checkpoint hook.

The caller passes the generator and the batch size, so each keeps its own draws: the
trainer's grids take one batch from a generator on the data's device, the command line
batches of ``SampleConfig.batch_size`` from a CPU generator.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from scorekit.errors import OptionError
from scorekit.files import atomic_write
from scorekit.model import ScoreModel
from scorekit.samplers.monitor import announcing_totals, progress_bar

#: grid cells are upscaled (nearest neighbour) until their smaller side is at least this many pixels ...
GRID_CELL_PIXELS = 64
#: ... but by this factor at most
GRID_MAX_SCALE = 8


def sample_in_batches(model: ScoreModel, like: torch.Tensor, n: int, *, generator: torch.Generator,
                      batch_size: int | None = None, to_cpu: bool = False, progress: bool = False,
                      mean: torch.Tensor | float | None = None) -> torch.Tensor:
    """``n`` samples shaped like the examples of ``like``, run from the sampler's initial noise.

    Every random number (initial noise and sampler) comes from ``generator``, ``batch_size``
    chains at a time (default: all ``n`` in one batch); ``to_cpu`` moves each batch to the
    CPU as it is done. The model's mode and the autograd mode are left to the caller.
    ``mean`` (e.g. the data's mean) centres the default initial noise of a sampler without
    its own (:meth:`ScoreModel.initial_noise`).
    ``progress`` shows sampler steps over all batches (:class:`StepProgress`), through the
    sampler's callback, which then computes its per-step figures (one host sync a step).
    """
    batch_size = batch_size or n
    starts = range(0, n, batch_size)
    counter = StepProgress(len(starts)) if progress else None
    out = []
    try:
        for start in starts:
            template = like[:1].expand(min(batch_size, n - start), *like.shape[1:])
            noise = model.initial_noise(template, generator, mean=mean)
            if counter is None:
                samples = model.sample(noise, generator=generator)
            else:
                with counter.batch():
                    samples = model.sample(noise, generator=generator, callback=counter.step)
            out.append(samples.cpu() if to_cpu else samples)
    finally:
        if counter is not None:
            counter.close()
    return out[0] if len(out) == 1 else torch.cat(out)


class StepProgress:
    """A progress display of sampler steps across ``n_batches`` runs of one sampler.

    The steps are counted through the sampler's callback; the total, steps per run times
    ``n_batches``, comes from the sampler when it announces it
    (:func:`~scorekit.samplers.monitor.announcing_totals`), else from the first run's count.
    """

    def __init__(self, n_batches: int, desc: str = "sampling") -> None:
        self.n_batches, self.done_batches = n_batches, 0
        self.per_batch: int | None = None
        self.in_batch = 0
        self.bar = progress_bar(None, desc, "step")

    def _announced(self, total: int) -> None:
        if self.per_batch is None:
            self._set_per_batch(total)

    def _set_per_batch(self, steps: int) -> None:
        self.per_batch = steps
        self.bar.total = steps * self.n_batches
        self.bar.refresh()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Around one sampler run: listens for its total, and counts its steps."""
        self.in_batch = 0
        self.bar.set_postfix(batch=f"{self.done_batches + 1}/{self.n_batches}", refresh=False)
        with announcing_totals(self._announced):
            yield
        self.done_batches += 1
        if self.per_batch is None:
            self._set_per_batch(self.in_batch)

    def step(self, info: Any) -> None:
        """The sampler's callback: one step done."""
        self.in_batch += 1
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def grid_scale(height: int, width: int) -> int:
    """The nearest-neighbour upscaling of grid cells: until the smaller side has ``GRID_CELL_PIXELS``
    pixels, at most ``GRID_MAX_SCALE`` times (an 8 x 8 digit becomes 64 x 64), so that small images
    can be read without a viewer's blurry zoom."""
    return max(1, min(GRID_MAX_SCALE, math.ceil(GRID_CELL_PIXELS / max(1, min(height, width)))))


def grid_image(images: torch.Tensor, *, clamp: tuple[float, float] | None = (0.0, 1.0), nrow: int | None = None,
               padding: int = 2, pad_value: float = 0.5, scale: int | None = None,
               column_labels: Sequence[str] | None = None) -> Any:
    """The PIL image of a grid of ``images`` ``[N, C, H, W]`` (see :func:`write_grid`)."""
    from PIL import Image
    from torchvision.utils import make_grid  # torchvision is only needed for grids

    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
        raise OptionError(f"scale must be an integer >= 1 or None (automatic), got {scale!r}")
    images = images.detach().float().cpu()
    if clamp is not None:
        low, high = clamp
        images = (images.clamp(low, high) - low) / (high - low)
    else:  # the grid's own range, as torchvision's normalize=True
        low, high = float(images.min()), float(images.max())
        images = (images - low) / max(high - low, 1e-5)
    scale = scale or grid_scale(images.shape[-2], images.shape[-1])
    if scale > 1:
        images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
        padding *= max(1, scale // 4)  # still a thin line between 8x cells, but one the eye can find
    nrow = nrow or max(1, math.ceil(math.sqrt(len(images))))
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    if column_labels:
        image = _with_column_labels(image, list(column_labels), cell=images.shape[-1], padding=padding)
    return image


def _with_column_labels(grid: Any, labels: list[str], *, cell: int, padding: int) -> Any:
    """``grid`` below a white band with ``labels[c]`` centred over column ``c`` (PIL's default font)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(grid)
    boxes = [measure.textbbox((0, 0), label, font=font) for label in labels]
    text_height = max(box[3] for box in boxes)
    band = text_height + 8
    out = Image.new("RGB", (grid.width, grid.height + band), (255, 255, 255))
    out.paste(grid, (0, band))
    draw = ImageDraw.Draw(out)
    for column, (label, box) in enumerate(zip(labels, boxes)):
        centre = padding + column * (cell + padding) + cell / 2
        draw.text((centre - (box[2] - box[0]) / 2, 4), label, fill=(0, 0, 0), font=font)
    return out


def write_grid(images: torch.Tensor, path: str | os.PathLike, *, clamp: tuple[float, float] | None = (0.0, 1.0),
               nrow: int | None = None, padding: int = 2, pad_value: float = 0.5, scale: int | None = None,
               column_labels: Sequence[str] | None = None) -> Path:
    """A PNG grid of ``images`` ``[N, C, H, W]``, written atomically.

    ``clamp=(low, high)`` clamps the images and maps that range to black..white;
    ``None`` scales the grid from its own minimum to maximum. ``nrow`` images per row
    (default: ``ceil(sqrt(N))``), ``padding`` pixels of ``pad_value`` between them (mid-gray by default, which
    shows on black and on white backgrounds).
    Each image is upscaled by nearest neighbour, ``scale`` times (default: :func:`grid_scale`),
    and the padding ``max(1, scale // 4)`` times (2 px between 8 x 8 digits become 4 px between
    64 x 64 cells). ``scale=1`` writes the images pixel for pixel.
    ``column_labels``: a header text over each column.
    """
    image = grid_image(images, clamp=clamp, nrow=nrow, padding=padding, pad_value=pad_value, scale=scale,
                       column_labels=column_labels)
    return atomic_write(path, lambda f: image.save(f, format="png"))
