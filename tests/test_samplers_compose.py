"""The samplers through the public API: compose() builds them by name, the model calls them."""

from __future__ import annotations

import pytest
import torch

import scorekit
from scorekit.errors import CompositionError, OptionError
from scorekit.samplers import SamplerStep
from scorekit.targets import Gaussian, TargetEnergyNetwork, TargetScoreNetwork, paper_mixture


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_annealed_langevin_by_name_samples_and_inpaints() -> None:
    model = scorekit.compose(
        network=TargetScoreNetwork(paper_mixture()), estimator=None, sampler="annealed_langevin",
        sigmas=scorekit.geometric_sigmas(20.0, 1.0, 10),
        sampler_options={"step_size": 0.1, "steps_per_level": 10, "init_range": (-8.0, 8.0)},
    )
    x0 = model.initial_noise(torch.empty(64, 2), gen(0))
    assert x0.min() >= -8 and x0.max() < 8
    levels: list[int | None] = []
    x = model.sample(x0, generator=gen(0), callback=lambda info: levels.append(info.level))
    assert x.shape == (64, 2) and levels == [i // 10 for i in range(100)]
    y = torch.tensor([[5.0, float("nan")]]).expand(64, 2)
    out = model.inpaint(y, torch.tensor([True, False]), generator=gen(0))
    assert torch.equal(out[:, 0], y[:, 0])


def test_hmc_by_name_on_an_energy_network() -> None:
    model = scorekit.compose(
        network=TargetEnergyNetwork(Gaussian([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]])), estimator=None, sampler="hmc",
        sigmas=None, sampler_options={"n_warmup": 50, "n_steps": 20},
    )
    last: list[SamplerStep] = []
    x = model.sample(model.initial_noise(torch.empty(32, 2), gen(0)), generator=gen(0), callback=last.append)
    assert x.shape == (32, 2) and last[-1].summary is not None and last[-1].summary.n_steps == 20


def test_composition_errors_name_the_fix() -> None:
    score_only = TargetScoreNetwork(paper_mixture())
    with pytest.raises(CompositionError, match=r"metropolis.*False"):
        scorekit.compose(network=score_only, estimator=None, sampler="hmc", sigmas=None)
    scorekit.compose(network=score_only, estimator=None, sampler="hmc", sigmas=None,
                     sampler_options={"metropolis": False})
    with pytest.raises(CompositionError, match="sigmas"):
        scorekit.compose(network=score_only, estimator=None, sampler="annealed_langevin", sigmas=None)
    with pytest.raises(OptionError, match="steps_per_level"):
        scorekit.compose(network=score_only, estimator=None, sampler="annealed_langevin",
                         sampler_options={"steps_per_level": 0})
