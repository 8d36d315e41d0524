"""Run presets with the paper's hyperparameters (section 5, appendix B.2), the embedded default, and ``auto``,
derived from a folder of images by NCSNv2's rules (:mod:`scorekit_ncsn.auto`).

Each preset is a :class:`scorekit.training.RunConfig`; ``scorekit train --preset NAME``
starts from it and applies a config file and ``key=value`` overrides on top.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable, Mapping

import torch

from scorekit.errors import OptionError
from scorekit.training.run_config import DataConfig, ModelConfig, RunConfig, SampleConfig, SigmaConfig, TrainConfig

from . import auto as rules
from .condresnet import CondResNet

log = logging.getLogger("scorekit.auto")

#: Algorithm 1 with the paper's settings: epsilon 2e-5, T = 100, uniform initial noise
PAPER_SAMPLER = {"step_size": 2e-5, "steps_per_level": 100, "init_range": (0.0, 1.0)}
PAPER_TRAIN = TrainConfig(n_iters=200_000, batch_size=128, lr=1e-3, checkpoint_every=5_000,
                          sample_every=5_000, eval_every=5_000)


def _paper(name: str, dataset: str, channels: int, image_size: int, ngf: int) -> RunConfig:
    return RunConfig(
        name=name,
        model=ModelConfig(
            network="ncsn", estimator="dsm", sampler="annealed_langevin",
            sigmas=SigmaConfig(first=1.0, last=0.01, n=10),
            network_options={"channels": channels, "image_size": image_size, "ngf": ngf},
            sampler_options=dict(PAPER_SAMPLER),
        ),
        data=DataConfig(name=dataset),
        train=PAPER_TRAIN,
        sample=SampleConfig(n_samples=50_000 if dataset != "mnist" else 10_000, batch_size=500),
    )


def ncsn_cifar10() -> RunConfig:
    """CIFAR-10: ngf 128, 3 x 32 x 32 (paper: IS 8.87, FID 25.32); keeps the checkpoint with the
    lowest FID on 1,000 samples (appendix B.2)."""
    return _paper("ncsn-cifar10", "cifar10", 3, 32, 128).override({"train.fid_samples": 1000})


def ncsn_mnist() -> RunConfig:
    """MNIST: half the width (ngf 64), 1 x 28 x 28."""
    return _paper("ncsn-mnist", "mnist", 1, 28, 64)


def ncsn_celeba() -> RunConfig:
    """CelebA: center-crop 140, resize to 32 x 32, ngf 128; best checkpoint by FID on 1,000 samples."""
    return _paper("ncsn-celeba", "celeba", 3, 32, 128).override({"train.fid_samples": 1000})


def ncsn_baseline() -> RunConfig:
    """The paper's baseline: one sigma = 0.01, plain Langevin (epsilon 2e-5, T = 1000), on CIFAR-10."""
    cfg = _paper("ncsn-baseline", "cifar10", 3, 32, 128)
    return cfg.override({
        "model.sigmas.values": [0.01],
        "model.sampler": "langevin",
        "model.sampler_options": {"step_size": 2e-5, "n_steps": 1000, "init_range": [0.0, 1.0]},
    })


def ncsn_digits() -> RunConfig:
    """The embedded default behind ``make run``: scikit-learn's 8 x 8 digits, trained and sampled
    in under 10 minutes on 2 CPU cores (see docs/results.md for how it was tuned).

    * network: ``cond_resnet`` (4 residual blocks, width 48, CondInstanceNorm++, SiLU: ~25 %
      cheaper per step than ELU on CPU and a lower held-out loss in equal time), its output a
      Gaussian score plus a learned correction (``sigma_data`` 0.4, ``data_mean`` 0.3: the
      digits' pixel std and mean), so that chains far from the data are pulled back;
    * sigmas: NCSNv2's rules: sigma_1 = 5 (the largest distance between two training digits
      is 4.74), 20 geometric levels down to 0.01 (ratio 1.39; technique 2 gives 1.36 for
      D = 64);
    * training levels: half of the examples draw their level uniformly (the paper), half from a
      log-normal bump around sigma = 0.5 with log-std 1.2 (``level_median``; Karras et al. 2022's
      training distribution on these levels): the mid-range levels, where a digit's class and
      strokes take shape, get trained more and the small-sigma levels, whose large losses
      dominate the uniform draw's gradient, less (mean per-image classifier entropy of the
      samples 0.184 and 0.257 for two training seeds with the uniform draw, 0.165 and 0.170
      with it; docs/results.md, third session);
    * sampling: annealed HMC, unadjusted (the network has no energy): at each of the 20 levels 5
      transitions of 2 leapfrog steps (200 network evaluations per sample), leapfrog step
      sqrt(1.2e-4) * sigma_i / sigma_L (one such step with no momentum memory is the annealed
      Langevin step epsilon 1.2e-4, alpha_i / sigma_i^2 = 1.2, that the preset used before);
      1,000 samples in one batch. In the sampler shoot-out at equal evaluations it matched
      the real digits' IS over three sampling seeds (7.45-7.55 against 7.55; annealed
      Langevin 7.21-7.38) with FID below the real floor (docs/results.md);
    * training: 8,000 Adam steps at batch 64 (in equal time a lower held-out loss than batch 128
      with 1.6x fewer steps), constant lr 5e-3 (the paper's 1e-3 learns slower here: held-out
      loss after 3,000 steps 7.61 at 1e-3, 7.50 at 3e-3, 7.46 at 5e-3, 7.52 at 8e-3; a cosine
      decay from 1e-3 ends worse, 7.33 against 7.21), EMA 0.999 with warm-up (without it,
      0.999 would still carry 2% of the initial weights after 4,000 steps), which averages
      out the noise of the large rate.
    """
    return RunConfig(
        name="ncsn-digits",
        model=ModelConfig(
            network="cond_resnet", estimator="dsm", sampler="annealed_hmc",
            sigmas=SigmaConfig(first=5.0, last=0.01, n=20),
            network_options={"channels": 1, "image_size": 8, "ngf": 48, "n_blocks": 4,
                             "sigma_data": 0.4, "data_mean": 0.3, "activation": "silu",
                             # 8 x 8 maps: memory is no concern, and the fused node's per-layer Python
                             # made the step about 20 % slower (docs/results.md)
                             "fused_norm": False},
            estimator_options={"level_median": 0.5},
            sampler_options={"step_size": math.sqrt(1.2e-4), "steps_per_level": 5, "n_leapfrog": 2,
                             "metropolis": False, "init_range": (0.0, 1.0)},
        ),
        data=DataConfig(name="digits"),
        train=TrainConfig(n_iters=8_000, batch_size=64, lr=5e-3, ema_decay=0.999, ema_warmup=True,
                          checkpoint_every=1_000, sample_every=0, eval_every=1_000, log_every=50),
        sample=SampleConfig(n_samples=1_000, batch_size=1_000),
    )


#: seconds the whole ``scorekit run --preset auto`` aims at (preset.total_time)
AUTO_TOTAL_TIME = 1800.0
#: images read for sigma_1 and the pixel statistics: at most this many, and this many pixel values (600 MB)
AUTO_MAX_IMAGES, AUTO_MAX_VALUES = 60_000, 150_000_000


def auto(data: str | None = None, data_options: Mapping[str, Any] | None = None,
         total_time: float = AUTO_TOTAL_TIME) -> RunConfig:
    """Your own images (--data DIR): NCSNv2's rules derive the run from them, fitted to 30 minutes in all
    (preset.total_time=SECONDS).

    Song & Ermon 2020 (:mod:`scorekit_ncsn.auto`); the whole ``scorekit run`` takes about ``total_time`` seconds.
    ``data``: the folder (``--data``), read by the ``folder`` dataset; ``data_options``: its options from the
    overrides (``image_size``, ``channels``, ``holdout``), which the derivation honours. Each derived value is
    logged to ``scorekit.auto`` at INFO with its reason; the result is a plain :class:`RunConfig`, so the
    run's ``config.toml`` reproduces it without deriving again.

    * data: channels from the image modes (1 when all are grayscale), the size of the images (or
      ``image_size``), sigma_1 (technique 1) and the pixel mean and std from at most 60,000 images;
    * sigmas: ratio gamma from D = C x H x W (technique 2), geometric from sigma_1 down to 0.01;
    * network: ``cond_resnet`` (SiLU, output divided by sigma: technique 3, Gaussian skip with the pixel
      std and mean), width and dilated blocks from the image size (:func:`scorekit_ncsn.auto.network_shape`),
      the width halved to 32 when training would get fewer than 2,000 steps on this machine;
    * sampler: annealed Langevin with a final denoising step, T and epsilon from technique 4;
    * training: Adam 5e-3, batch 64, EMA 0.999 with warm-up (technique 5), half the levels drawn from a
      log-normal bump (``level_median``) placed as in ``ncsn-digits``, ``train.time_budget`` from the
      costs measured here (:func:`scorekit_ncsn.auto.plan_run`) and ``n_iters`` a large upper bound.
    """
    start = time.perf_counter()
    if data is None:
        raise OptionError("--preset auto derives its configuration from your images: pass --data DIR")
    if isinstance(total_time, bool) or not isinstance(total_time, (int, float)) or not total_time > 0:
        raise OptionError(f"preset.total_time must be a number of seconds > 0 (the whole scorekit run), "
                          f"got {total_time!r}")
    options = dict(data_options or {})
    with torch.random.fork_rng(devices=[]):  # the derivation draws nothing the run will see
        images, facts = _auto_images(data, options)
        sigmas = _auto_sigmas(images, facts["dim"])
        shape = (facts["channels"], facts["size"], facts["size"])
        network_options = _auto_network(facts, images)
        del images
        network_options, plan = _auto_budget(network_options, sigmas, shape, facts, options, float(total_time),
                                             start)
    ratio, steps = rules.schedule_ratio(sigmas.first, sigmas.last, sigmas.n), plan.steps_per_level
    step = float(f"{rules.langevin_step_size(gamma=ratio, sigma_last=sigmas.last, steps=steps):.4g}")
    log.info("epsilon = %.4g (technique 4: after T = %d steps per level the variance ratio, %.4f, is the closest "
             "to 1)", step, steps, rules.variance_ratio(step, gamma=ratio, sigma_last=sigmas.last, steps=steps))
    train_batch = min(64, facts["n_images"] - plan.n_holdout)
    log.info("EMA of the weights, decay 0.999 with warm-up (technique 5); Adam lr %g, batch %d (a short, "
             "time-budgeted run learns faster at ncsn-digits' larger rate, which the EMA smooths)", AUTO_LR,
             train_batch)
    median = _auto_level_median(sigmas)
    data_cfg = {"channels": facts["channels"], **options}
    if "holdout" not in options:
        data_cfg["holdout"] = plan.n_holdout / facts["n_images"]
    log.info("derived in %.1f s", time.perf_counter() - start)
    return RunConfig(
        name="auto",
        model=ModelConfig(
            network="cond_resnet", estimator="dsm", sampler="annealed_langevin", sigmas=sigmas,
            network_options=network_options, estimator_options={"level_median": median},
            sampler_options={"step_size": step, "steps_per_level": plan.steps_per_level, "final_denoise": True,
                             "init_range": (0.0, 1.0)},
        ),
        data=DataConfig(name="folder", root=str(data), options=data_cfg),
        train=TrainConfig(n_iters=1_000_000, batch_size=train_batch, lr=AUTO_LR, ema_decay=0.999, ema_warmup=True,
                          checkpoint_every=plan.checkpoint_every, sample_every=0, eval_every=plan.eval_every,
                          log_every=50, time_budget=plan.time_budget),
        sample=SampleConfig(n_samples=plan.n_samples, batch_size=plan.sample_batch),
    )


def _auto_level_median(sigmas: SigmaConfig) -> float:
    """The centre of the training levels' log-normal bump (``dsm``'s ``level_median``): at the same place in the
    log range of the sigmas as ``ncsn-digits``' tuned 0.5 in 5 -> 0.01, where the images take their shape."""
    low, high = math.log(sigmas.last), math.log(sigmas.first)
    median = float(f"{math.exp(low + AUTO_LEVEL_POSITION * (high - low)):.3g}")
    log.info("training levels: half uniform, half log-normal around sigma = %.3g (level_median, %.0f%% up the log "
             "range of the sigmas, where ncsn-digits' tuned 0.5 sits)", median, 100 * AUTO_LEVEL_POSITION)
    return median


def _auto_images(root: str, options: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """The images the derivation reads (all, or a random subset) and the folder's facts."""
    start = time.perf_counter()
    image_size = options.get("image_size")
    try:
        files = rules.folder_files(root, image_size, options.get("channels", 3))
    except ValueError as exc:
        if isinstance(exc, OptionError) or type(exc) is not ValueError:
            raise
        raise OptionError(f"data.options of --preset auto: {exc}") from exc
    channels = options.get("channels") or rules.folder_channels(files)
    size = rules.folder_image_size(files, image_size)
    dim = channels * size * size
    limit = min(AUTO_MAX_IMAGES, max(2, AUTO_MAX_VALUES // dim))
    images = rules.load_images(files, channels=channels, image_size=image_size, limit=limit)
    load_s = (time.perf_counter() - start) * len(files) / images.shape[0]
    what = "grayscale" if channels == 1 else "RGB"
    log.info("data: %d images below %s, %s, %d x %d pixels%s: D = %d (%s)", len(files), root, what, size, size,
             "" if image_size is None else " (resized: data.options.image_size)", dim,
             "data.options.channels" if "channels" in options else "from the image modes")
    if images.shape[0] < len(files):
        log.info("sigma_1 and the pixel statistics from %d random images of the %d", images.shape[0], len(files))
    return images, {"n_images": len(files), "channels": channels, "size": size, "dim": dim, "load_s": load_s}


def _auto_sigmas(images: torch.Tensor, dim: int) -> SigmaConfig:
    """Techniques 1 and 2: sigma_1, gamma, L."""
    largest = rules.max_pairwise_distance(images)
    first = _round_up(largest) if largest > 0 else 0.0
    gamma = rules.noise_ratio(dim)
    n = rules.num_levels(first, rules.SIGMA_LAST, gamma)
    log.info("sigma_1 = %.4g (largest pairwise distance between the images, %.4f, technique 1)", first, largest)
    log.info("gamma = %.4f (Phi(sqrt(2D)(gamma-1)+3 gamma) - Phi(sqrt(2D)(gamma-1)-3 gamma) = 0.5 for D = %d, "
             "technique 2)", gamma, dim)
    log.info("L = %d levels, geometric from %.4g to sigma_L = %g (ratio %.4f <= gamma)", n, first, rules.SIGMA_LAST,
             rules.schedule_ratio(first, rules.SIGMA_LAST, n))
    return SigmaConfig(first=first, last=rules.SIGMA_LAST, n=n)


def _round_up(x: float, digits: int = 3) -> float:
    """``x`` > 0 rounded up to ``digits`` significant digits (16.8758 -> 16.9)."""
    scale = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return round(math.ceil(x / scale) * scale, 10)


def _auto_network(facts: Mapping[str, Any], images: torch.Tensor) -> dict[str, Any]:
    """``cond_resnet``'s options from the image size and the pixel statistics."""
    ngf, dilations = rules.network_shape(facts["size"])
    mean, std = round(images.mean().item(), 3), round(max(images.std().item(), 1e-3), 3)
    log.info("network: cond_resnet, width %d, %d blocks with dilations %s (receptive field %d >= %d pixels), SiLU",
             ngf, len(dilations), list(dilations), rules.receptive_field(dilations), facts["size"])
    log.info("sigma_data = %.3g, data_mean = %.3g (the pixels' std and mean: Gaussian skip of the score)", std, mean)
    return {"channels": facts["channels"], "image_size": facts["size"], "ngf": ngf, "n_blocks": len(dilations),
            "dilations": list(dilations), "sigma_data": std, "data_mean": mean, "activation": "silu"}


#: Adam's rate: ncsn-digits' (5e-3; 1e-3 learns slower in short runs), on MNIST FID ratio 9.3 -> 6.6 with the
#: level draw below (docs/results.md)
AUTO_LR = 5e-3
#: where level_median sits in the log range of the sigmas: ncsn-digits' 0.5 in 5 -> 0.01
AUTO_LEVEL_POSITION = math.log(0.5 / 0.01) / math.log(5.0 / 0.01)
#: fewer training steps than this in about 60 % of the total halve the width (once, down to 32)
AUTO_MIN_STEPS, AUTO_TRAIN_SHARE = 2_000, 0.6


def _auto_budget(network_options: dict[str, Any], sigmas: SigmaConfig, shape: tuple[int, ...],
                 facts: Mapping[str, Any], options: Mapping[str, Any], total: float,
                 start: float) -> tuple[dict[str, Any], rules.Plan]:
    """Time the network here and plan the run; halve the width once when training would be too short."""
    n_images = facts["n_images"]
    n_holdout = max(1, round(options["holdout"] * n_images)) if "holdout" in options else None
    train_batch = min(64, n_images - 1)
    step_s = _auto_step_seconds(network_options, sigmas, shape, train_batch)
    rough = int(AUTO_TRAIN_SHARE * (total - (time.perf_counter() - start)) / step_s)
    if rough < AUTO_MIN_STEPS and network_options["ngf"] > 32:
        log.info("width 32: width %d would train only about %d steps here (%.3g s per step)", network_options["ngf"],
                 rough, step_s)
        network_options = {**network_options, "ngf": 32}
        step_s = _auto_step_seconds(network_options, sigmas, shape, train_batch)
    costs = _auto_costs(network_options, sigmas, shape, step_s, facts["load_s"])
    plan = rules.plan_run(costs, total_s=total, elapsed_s=time.perf_counter() - start, levels=sigmas.n,
                          n_images=n_images, n_holdout=n_holdout)
    device = _auto_device().type
    log.info("timed on %s: a forward pass of %d images %.3g s, of %d images %.3g s, a training step %.3g s", device,
             costs.large, costs.large_s, costs.small, costs.small_s, costs.step_s)
    log.info("T = %d steps per level, %d samples: %d x %d + 1 network passes per sample take about %.0f s "
             "(technique 4: T as large as the budget allows, at most %d)", plan.steps_per_level, plan.n_samples,
             sigmas.n, plan.steps_per_level, plan.sampling_s, rules.MAX_STEPS_PER_LEVEL)
    log.info("held-out images: %d (Eq. 6 at every level: about %.0f s for the two evaluations after training)",
             plan.n_holdout, plan.evaluation_s)
    log.info("train.time_budget = %.0f s of the total %.0f s (%.0f s reserved for sampling, inpainting and "
             "evaluation with a margin of %.1f; about %d steps; preset.total_time changes the total)",
             plan.time_budget, total, plan.reserved_s, rules.MARGIN, plan.estimated_steps)
    return network_options, plan


def _auto_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _auto_step_seconds(network_options: Mapping[str, Any], sigmas: SigmaConfig, shape: tuple[int, ...],
                       batch: int) -> float:
    """One training step of the network, timed on the device ``train.device = "auto"`` picks."""
    device = _auto_device()
    network = CondResNet(sigmas=sigmas.tensor(), **network_options).to(device)
    return rules.time_train_step(network, shape, batch, device)


def _auto_costs(network_options: Mapping[str, Any], sigmas: SigmaConfig, shape: tuple[int, ...], step_s: float,
                load_s: float) -> rules.Costs:
    """Forward passes at 16 images (inpainting; the fastest of 3) and at the sampling batch (500), timed on the
    device."""
    device = _auto_device()
    network = CondResNet(sigmas=sigmas.tensor(), **network_options).to(device)
    small, large = rules.INPAINT_IMAGES, 500
    small_s = rules.time_forward(network, shape, small, device, repeats=3)
    large_s = rules.time_forward(network, shape, large, device)
    return rules.Costs(small=small, small_s=small_s, large=large, large_s=large_s, step_s=step_s, load_s=load_s)


#: registered name -> preset factory
PRESETS: dict[str, Callable[..., RunConfig]] = {
    "ncsn-cifar10": ncsn_cifar10,
    "ncsn-mnist": ncsn_mnist,
    "ncsn-celeba": ncsn_celeba,
    "ncsn-baseline": ncsn_baseline,
    "ncsn-digits": ncsn_digits,
    "auto": auto,
}
