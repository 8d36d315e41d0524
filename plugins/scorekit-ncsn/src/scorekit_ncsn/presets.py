"""Run presets with the paper's hyperparameters (section 5, appendix B.2), and the embedded default.

Each preset is a :class:`scorekit.training.RunConfig`; ``scorekit train --preset NAME``
starts from it and applies a config file and ``key=value`` overrides on top.
"""

from __future__ import annotations

from typing import Callable

from scorekit.training.config import DataConfig, ModelConfig, RunConfig, SampleConfig, SigmaConfig, TrainConfig

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
    * sampling: 10 steps per level, epsilon 1.2e-4 (alpha_i / sigma_i^2 = 1.2), the final
      noise-free denoising step, 1,000 samples in one batch;
    * training: 8,000 Adam steps at batch 64, lr 1e-3 (in equal time a lower held-out loss than
      batch 128 with 1.6x fewer steps), EMA 0.999 with warm-up (without it, 0.999 would still
      carry 2% of the initial weights after 4,000 steps).
    """
    return RunConfig(
        name="ncsn-digits",
        model=ModelConfig(
            network="cond_resnet", estimator="dsm", sampler="annealed_langevin",
            sigmas=SigmaConfig(first=5.0, last=0.01, n=20),
            network_options={"channels": 1, "image_size": 8, "ngf": 48, "n_blocks": 4,
                             "sigma_data": 0.4, "data_mean": 0.3, "activation": "silu"},
            sampler_options={"step_size": 1.2e-4, "steps_per_level": 10, "init_range": (0.0, 1.0),
                             "final_denoise": True},
        ),
        data=DataConfig(name="digits"),
        train=TrainConfig(n_iters=8_000, batch_size=64, lr=1e-3, ema_decay=0.999, ema_warmup=True,
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
