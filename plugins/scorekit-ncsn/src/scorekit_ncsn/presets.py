"""Run presets with the paper's hyperparameters (section 5, appendix B.2), and the embedded default.

Each preset is a :class:`scorekit.training.RunConfig`; ``scorekit train --preset NAME``
starts from it and applies a config file and ``key=value`` overrides on top.
"""

from __future__ import annotations

import math
from typing import Callable

from scorekit.training.run_config import DataConfig, ModelConfig, RunConfig, SampleConfig, SigmaConfig, TrainConfig

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
                             "sigma_data": 0.4, "data_mean": 0.3, "activation": "silu"},
            estimator_options={"level_median": 0.5},
            sampler_options={"step_size": math.sqrt(1.2e-4), "steps_per_level": 5, "n_leapfrog": 2,
                             "metropolis": False, "init_range": (0.0, 1.0)},
        ),
        data=DataConfig(name="digits"),
        train=TrainConfig(n_iters=8_000, batch_size=64, lr=5e-3, ema_decay=0.999, ema_warmup=True,
                          checkpoint_every=1_000, sample_every=0, eval_every=1_000, log_every=50),
        sample=SampleConfig(n_samples=1_000, batch_size=1_000),
    )


#: registered name -> preset factory
PRESETS: dict[str, Callable[[], RunConfig]] = {
    "ncsn-cifar10": ncsn_cifar10,
    "ncsn-mnist": ncsn_mnist,
    "ncsn-celeba": ncsn_celeba,
    "ncsn-baseline": ncsn_baseline,
    "ncsn-digits": ncsn_digits,
}
