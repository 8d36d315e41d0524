"""What ``--preset auto`` derives from a folder of images: NCSNv2's rules and a time budget.

Song & Ermon 2020, "Improved techniques for training score-based generative models" (NCSNv2):

* technique 1: sigma_1 = the largest Euclidean distance between two training images
  (:func:`max_pairwise_distance`);
* technique 2: geometric sigmas with a ratio gamma that solves
  ``Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma) = 0.5``
  (:func:`noise_ratio`), from sigma_1 down to sigma_L = 0.01 (:func:`num_levels`);
* technique 4: T steps per level and the step epsilon that brings the variance ratio of
  Proposition 3 closest to 1 (:func:`variance_ratio`, :func:`langevin_step_size`);
* technique 5: an EMA of the weights (0.999), set by the preset.

The rules are plain functions of numbers and tensors; the reading of a folder and the
timing of a network are separate helpers, and :func:`scorekit_ncsn.presets.auto` glues
them together. :func:`plan_run` splits a total time between training, the final samples
and the evaluation from measured costs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import attrs
import torch

from scorekit.errors import DataError, OptionError

from .datasets import IMAGE_SUFFIXES, ImageFiles, _transforms, folder

#: sigma_L of NCSN and NCSNv2 for images in [0, 1]
SIGMA_LAST = 0.01
#: the target of technique 2: each level covers half of the previous level's mass
COVERAGE = 0.5
#: technique 4's T upper bound: NCSNv2's steps per level for CIFAR-10 and CelebA
MAX_STEPS_PER_LEVEL = 5
#: PIL modes read as one channel
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


# --- technique 1: sigma_1 ------------------------------------------------------------------------

def max_pairwise_distance(images: torch.Tensor, *, n_anchors: int = 1000, n_candidates: int = 100,
                          seed: int = 0) -> float:
    """The largest Euclidean distance between two of ``images`` ([N, ...]): NCSNv2's sigma_1 (technique 1).

    Exact when ``N <= n_anchors + n_candidates``. Beyond, an estimate from below that costs
    ``O(N (n_anchors + n_candidates) D)`` instead of ``O(N^2 D)`` (about 1e11 flops, seconds, for
    60,000 x 784): the distances of every image to ``n_anchors`` random images (seeded by ``seed``),
    then to the ``n_candidates`` images farthest from those anchors, where the ends of the largest
    distance lie. The pair found is measured again in float64.
    """
    flat = images.reshape(images.shape[0], -1).float()
    n = flat.shape[0]
    if n < 2:
        raise DataError(f"the largest distance between two images needs at least 2 images, got {n}")
    if n <= n_anchors + n_candidates:
        return _distance(flat, *_scan(flat, torch.arange(n))[1])
    anchors = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_anchors]
    to_anchors, pair = _scan(flat, anchors)
    candidates = to_anchors.topk(n_candidates).indices
    return max(_distance(flat, *pair), _distance(flat, *_scan(flat, candidates)[1]))


def _scan(flat: torch.Tensor, columns: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, tuple[int, int]]:
    """The largest distance of each row of ``flat`` to the rows ``columns`` ([N]), and the (row, row) pair of
    the largest of all."""
    others = flat[columns]
    row_max = torch.cat([torch.cdist(part, others).amax(dim=1) for part in flat.split(chunk)])
    i = int(row_max.argmax())
    j = int(columns[int(torch.cdist(flat[i : i + 1], others).argmax())])
    return row_max, (i, j)


def _distance(flat: torch.Tensor, i: int, j: int) -> float:
    return float((flat[i].double() - flat[j].double()).norm())


# --- technique 2: the levels ---------------------------------------------------------------------

def _phi(x: float) -> float:
    """The standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def level_coverage(gamma: float, dim: int) -> float:
    """Technique 2's left-hand side, ``Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma)``:
    about how much of a sample at sigma_{i-1} lies where the level sigma_i = sigma_{i-1} / gamma is trained."""
    k = math.sqrt(2.0 * dim)
    return _phi(k * (gamma - 1.0) + 3.0 * gamma) - _phi(k * (gamma - 1.0) - 3.0 * gamma)


def noise_ratio(dim: int, *, target: float = COVERAGE) -> float:
    """The ratio gamma = sigma_{i-1} / sigma_i of technique 2: ``level_coverage(gamma, dim) = target``, by bisection.

    Needs ``dim >= 5``: below, sqrt(2D) <= 3 and the coverage does not fall to 1/2 as gamma grows.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 5:
        raise OptionError(f"technique 2 needs the data dimension D to be an integer >= 5, got {dim!r}")
    if not 0.0 < target < level_coverage(1.0, dim):
        raise OptionError(f"technique 2's target coverage must lie in (0, {level_coverage(1.0, dim):.4f}), "
                          f"got {target!r}")
    lo, hi = 1.0, 2.0
    while level_coverage(hi, dim) > target:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if level_coverage(mid, dim) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    return 0.5 * (lo + hi)


def num_levels(sigma_first: float, sigma_last: float, gamma: float) -> int:
    """L of a geometric schedule from ``sigma_first`` to ``sigma_last`` whose ratio is at most ``gamma``:
    ``1 + ceil(log(sigma_first / sigma_last) / log(gamma))``."""
    if not sigma_first > sigma_last > 0:
        raise DataError(f"sigma_1 ({sigma_first:.4g}) must exceed sigma_L ({sigma_last:.4g}) > 0: the images "
                        "are (nearly) all the same")
    if not gamma > 1:
        raise OptionError(f"the ratio gamma must be > 1, got {gamma!r}")
    return 1 + math.ceil(math.log(sigma_first / sigma_last) / math.log(gamma) - 1e-9)


def schedule_ratio(sigma_first: float, sigma_last: float, n: int) -> float:
    """The ratio of ``n`` geometric levels from ``sigma_first`` to ``sigma_last`` (n >= 2)."""
    return (sigma_first / sigma_last) ** (1.0 / (n - 1))


# --- technique 4: the step size --------------------------------------------------------------------

def variance_ratio(step_size: float, *, gamma: float, sigma_last: float, steps: int) -> float:
    """NCSNv2's Proposition 3 (Eq. 4 of the NCSNv2 paper) for scorekit's Algorithm 1: the variance, in units of
    sigma_i^2, after ``steps`` Langevin updates at level sigma_i of a chain that starts at variance sigma_{i-1}^2 =
    gamma^2 sigma_i^2, on data that is a single point.

    scorekit's update is NCSN's, ``x + alpha_i / 2 s + sqrt(alpha_i) z``, with
    ``alpha_i = step_size sigma_i^2 / sigma_L^2``: NCSNv2's ``x + alpha_i s + sqrt(2 alpha_i) z`` with half its
    epsilon. With ``e = step_size / sigma_L^2`` each step maps a ratio ``r`` to ``(1 - e/2)^2 r + e``, so
    ``r_T = (1 - e/2)^{2T} (gamma^2 - r*) + r*`` with the fixed point ``r* = 4 / (4 - e)``.
    """
    e = step_size / sigma_last**2
    if not 0.0 < e < 4.0:
        raise OptionError(f"step_size / sigma_L^2 must lie in (0, 4) for the chain to contract, got {e!r}")
    q = (1.0 - e / 2.0) ** 2
    fixed = 4.0 / (4.0 - e)
    return q**steps * (gamma**2 - fixed) + fixed


def _variance_ratio_slope(e: float, gamma: float, steps: int) -> float:
    """d r_T / d e of :func:`variance_ratio` (with e = step_size / sigma_L^2)."""
    q = (1.0 - e / 2.0) ** 2
    fixed = 4.0 / (4.0 - e)
    return steps * q ** (steps - 1) * -(1.0 - e / 2.0) * (gamma**2 - fixed) + (1.0 - q**steps) * 4.0 / (4.0 - e) ** 2


def langevin_step_size(*, gamma: float, sigma_last: float, steps: int) -> float:
    """Technique 4: the epsilon (scorekit's ``step_size``) that brings :func:`variance_ratio` closest to 1.

    The ratio exceeds 1 for every epsilon (it lies between gamma^2 and r* > 1), so closest is its minimum:
    the zero of its slope in ``e = epsilon / sigma_L^2`` in (0, 2), found by bisection (the slope is
    ``-T (gamma^2 - 1) < 0`` at 0 and ``> 0`` at 2).
    """
    if not gamma > 1:
        raise OptionError(f"technique 4 needs a ratio gamma > 1, got {gamma!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise OptionError(f"technique 4 needs T (steps per level) to be an integer >= 1, got {steps!r}")
    lo, hi = 0.0, 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _variance_ratio_slope(mid, gamma, steps) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15:
            break
    return 0.5 * (lo + hi) * sigma_last**2


# --- the network -----------------------------------------------------------------------------------

def receptive_field(dilations: Sequence[int]) -> int:
    """Pixels a ``cond_resnet`` output sees: stem and head 3 x 3 (2 each), two 3 x 3 convolutions per block (4 d)."""
    return 5 + 4 * sum(dilations)


def network_shape(image_size: int) -> tuple[int, tuple[int, ...]]:
    """``(ngf, dilations)`` of ``cond_resnet`` for square images of ``image_size`` pixels.

    Width 48 up to 16 pixels (as ``ncsn-digits``), 64 above. Blocks with dilations 1, 2, 4, ... until
    the receptive field covers the image, then blocks of dilation 1 up to 4 blocks.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise OptionError(f"image_size must be an integer >= 1 (pixels), got {image_size!r}")
    dilations = [1]
    while receptive_field(dilations) < image_size:
        dilations.append(2 * dilations[-1])
    dilations += [1] * max(0, 4 - len(dilations))
    return (48 if image_size <= 16 else 64), tuple(dilations)


# --- the folder ------------------------------------------------------------------------------------

def folder_files(root: str | Path, image_size: int | None, channels: int = 3) -> list[Path]:
    """Every image below ``root``, in the ``folder`` dataset's order, after its checks (a folder of images;
    of one size when ``image_size`` is None; the options valid)."""
    folder(root, train=False, holdout=0.0, image_size=image_size, channels=channels)
    return sorted(p for p in Path(root).expanduser().rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def folder_channels(files: Sequence[Path], n_probe: int = 64) -> int:
    """1 when the headers of up to ``n_probe`` files spread over ``files`` are all grayscale modes, else 3."""
    from PIL import Image

    step = max(1, len(files) // n_probe)
    for path in files[::step][:n_probe]:
        with Image.open(path) as img:
            if img.mode not in GRAY_MODES:
                return 3
    return 1


def folder_image_size(files: Sequence[Path], image_size: int | None) -> int:
    """The side of the square images the network sees: ``image_size``, else that of the first file."""
    from PIL import Image

    if image_size is not None:
        return image_size
    with Image.open(files[0]) as img:
        width, height = img.size
    if width != height:
        raise DataError(f"images of {width}x{height} pixels ({files[0]}) are not square and no image_size is set; "
                        "set data.options.image_size (e.g. {image_size = 32}) to resize them to a square")
    return width


def load_images(files: Sequence[Path], *, channels: int, image_size: int | None, limit: int,
                seed: int = 0) -> torch.Tensor:
    """``[n, C, H, W]`` images as the ``folder`` dataset decodes them: all ``files``, or ``limit`` random ones."""
    chosen = list(files)
    if len(chosen) > limit:
        keep = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(seed))[:limit]
        chosen = [chosen[i] for i in sorted(keep.tolist())]
    size = (image_size, image_size) if image_size else None
    dataset = ImageFiles(chosen, channels=channels, transform=_transforms(flip=False, size=size))
    return torch.stack([dataset[i] for i in range(len(dataset))])


# --- timing and the budget -----------------------------------------------------------------------

@attrs.frozen(kw_only=True)
class Costs:
    """Seconds measured on this machine: a no-grad forward pass at ``small`` and at ``large`` examples
    (linear in between and beyond), one training step, and reading every image once."""

    small: int
    small_s: float
    large: int
    large_s: float
    step_s: float
    load_s: float

    def pass_s(self, batch: int) -> float:
        """One forward pass of ``batch`` examples (the line through the two measurements, at least the smaller)."""
        if self.large == self.small:
            return self.large_s * batch / self.large
        slope = max(0.0, (self.large_s - self.small_s) / (self.large - self.small))
        return max(self.small_s, self.small_s + slope * (batch - self.small))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(network: torch.nn.Module, shape: Sequence[int], batch: int, device: torch.device,
                 repeats: int = 1) -> float:
    """Seconds of a no-grad forward pass of ``batch`` examples of ``shape`` at the smallest level: the fastest of
    ``repeats`` after one at the same shape (which allocates and selects the kernels)."""
    x = torch.rand((batch, *shape), generator=torch.Generator().manual_seed(0)).to(device)
    sigma = network.sigmas[-1]
    best = math.inf
    with torch.no_grad():
        network(x, sigma)
        for _ in range(repeats):
            _synchronize(device)
            start = time.perf_counter()
            network(x, sigma)
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
    return best


def time_train_step(network: torch.nn.Module, shape: Sequence[int], batch: int, device: torch.device) -> float:
    """Seconds of one denoising score matching step (Eq. 5, a random level per example) with Adam; the second
    of two, so that the optimiser's state exists."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    seconds = 0.0
    for _ in range(2):
        x = torch.rand((batch, *shape), generator=generator).to(device)
        z = torch.randn((batch, *shape), generator=generator).to(device)
        level = torch.randint(network.sigmas.numel(), (batch,), generator=generator).to(device)
        sigma = network.sigmas[level]
        start = time.perf_counter()
        scale = sigma.reshape(-1, *[1] * len(shape))
        loss = (scale * network(x + scale * z, sigma) + z).square().sum() / batch
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _synchronize(device)
        seconds = time.perf_counter() - start
    return seconds


#: share of the time left after the derivation that the final samples may take
SAMPLING_SHARE = 0.25
#: share of it that the two held-out Eq. 6 evaluations after training may take (this bounds the held-out set)
EVAL_SHARE = 0.05
#: the estimates are multiplied by this before they are reserved
MARGIN = 1.5
#: seconds reserved for start-up, checkpoints, grids and the nearest-neighbour figure
FIXED_OVERHEAD_S = 30.0
#: the sample count aimed at, and the fewest before T is lowered
TARGET_SAMPLES, MIN_SAMPLES = 1000, 100
#: held-out images kept whatever the evaluation costs (unless 5 % of the images are fewer)
MIN_HOLDOUT = 100
#: inpainting fills in this many held-out images (scorekit run)
INPAINT_IMAGES = 16
#: a total that leaves training less than this share is an error
MIN_TRAIN_SHARE = 0.25


@attrs.frozen(kw_only=True)
class Plan:
    """How a total time is spent: T, the samples, the held-out images, and the training budget (seconds)."""

    steps_per_level: int
    n_samples: int
    sample_batch: int
    n_holdout: int
    sampling_s: float
    evaluation_s: float
    reserved_s: float
    time_budget: float
    estimated_steps: int
    checkpoint_every: int
    eval_every: int


def sampling_seconds(costs: Costs, *, n: int, levels: int, steps_per_level: int, batch: int) -> float:
    """Algorithm 1 for ``n`` samples in batches of ``batch``: ``levels x T + 1`` passes (the last one the
    denoising step) per batch."""
    passes = levels * steps_per_level + 1
    full, rest = divmod(n, batch)
    return passes * (full * costs.pass_s(batch) + (costs.pass_s(rest) if rest else 0.0))


def heldout_seconds(costs: Costs, *, n: int, levels: int, batch: int = 128) -> float:
    """The held-out Eq. 6 loss: every one of ``n`` images at every level, in batches of ``batch``."""
    full, rest = divmod(n, batch)
    return levels * (full * costs.pass_s(batch) + (costs.pass_s(rest) if rest else 0.0))


def _round_down(n: int, digits: int = 2) -> int:
    """``n`` rounded down to ``digits`` significant digits (1234 -> 1200)."""
    scale = 10 ** max(0, len(str(n)) - digits)
    return n // scale * scale


def plan_run(costs: Costs, *, total_s: float, elapsed_s: float, levels: int, n_images: int,
             n_holdout: int | None = None, target_samples: int = TARGET_SAMPLES) -> Plan:
    """Split ``total_s`` (the whole ``scorekit run``; ``elapsed_s`` of it already spent deriving) between training,
    the final samples, inpainting and evaluation.

    * held-out images (unless ``n_holdout`` is given): 5 % of ``n_images``, fewer (down to ``MIN_HOLDOUT``) when
      the two Eq. 6 evaluations after training would take more than ``EVAL_SHARE`` of the time;
    * T (technique 4: as large as the budget allows, at most NCSNv2's 5) and the samples: ``target_samples``, fewer
      when they would take more than ``SAMPLING_SHARE``; T is lowered when fewer than ``MIN_SAMPLES`` would fit;
    * training: what is left after ``MARGIN`` times the estimates and ``FIXED_OVERHEAD_S`` plus reading the images
      twice are reserved.
    """
    left = total_s - elapsed_s
    if n_holdout is None:
        most = round(0.05 * n_images)
        fits = _fit(lambda k: 2 * MARGIN * heldout_seconds(costs, n=k, levels=levels) <= EVAL_SHARE * left, most)
        n_holdout = max(1, fits, min(MIN_HOLDOUT, most))
    n_holdout = min(n_holdout, n_images - 1)

    def sampling(n: int, steps: int) -> float:
        return sampling_seconds(costs, n=n, levels=levels, steps_per_level=steps, batch=min(n, 500))

    steps, n = 1, 1
    for steps in range(MAX_STEPS_PER_LEVEL, 0, -1):
        n = _fit(lambda k, t=steps: MARGIN * sampling(k, t) <= SAMPLING_SHARE * left, target_samples)
        if n >= MIN_SAMPLES:
            break
    n = max(n, min(INPAINT_IMAGES, target_samples))
    n = _round_down(n) if n >= MIN_SAMPLES else n
    sampling_s = sampling(n, steps)
    inpaint_s = sampling_seconds(costs, n=min(INPAINT_IMAGES, n_holdout), levels=levels, steps_per_level=steps,
                                 batch=min(INPAINT_IMAGES, n_holdout))
    evaluation_s = 2 * heldout_seconds(costs, n=n_holdout, levels=levels)
    reserved = MARGIN * (sampling_s + inpaint_s + evaluation_s) + FIXED_OVERHEAD_S + 2 * costs.load_s
    budget = left - reserved
    if budget < MIN_TRAIN_SHARE * left:
        need = math.ceil(elapsed_s + reserved / (1 - MIN_TRAIN_SHARE))
        raise OptionError(f"a total of {total_s:.0f} s leaves {max(budget, 0):.0f} s of training after sampling "
                          f"{n} images and evaluating (about {reserved:.0f} s); set preset.total_time to at least "
                          f"{need}")
    budget = float(int(budget))
    estimated = max(1, int(budget / costs.step_s)) if costs.step_s > 0 else 1_000_000
    checkpoint_every, eval_every = _schedule(estimated, budget, heldout_seconds(costs, n=n_holdout, levels=levels))
    return Plan(steps_per_level=steps, n_samples=n, sample_batch=min(n, 500), n_holdout=n_holdout,
                sampling_s=sampling_s, evaluation_s=evaluation_s, reserved_s=reserved, time_budget=budget,
                estimated_steps=estimated, checkpoint_every=checkpoint_every, eval_every=eval_every)


def _schedule(steps: int, budget_s: float, eval_s: float) -> tuple[int, int]:
    """``(checkpoint_every, eval_every)``: about 10 checkpoints in ``steps``, and held-out evaluations at
    checkpoints, as many of the 10 as take ``EVAL_SHARE`` of the training time (0: none while training; the
    evaluation after it still reports the held-out loss)."""
    checkpoint_every = max(50, _round_down(max(1, steps // 10), 1))
    n_evals = min(10, int(EVAL_SHARE * budget_s / eval_s)) if eval_s > 0 else 10
    if n_evals < 1:
        return checkpoint_every, 0
    return checkpoint_every, checkpoint_every * math.ceil(10 / n_evals)


def _fit(fits: Any, most: int) -> int:
    """The largest ``n`` in [0, most] with ``fits(n)`` (``fits`` true up to some n, false beyond)."""
    lo, hi = 0, most
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
