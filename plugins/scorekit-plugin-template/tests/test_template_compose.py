"""The template's components compose by name, with each other and with scorekit's built-ins."""

from __future__ import annotations

from importlib import metadata

import pytest
import torch

import scorekit
from scorekit.errors import CompositionError, OptionError
from scorekit_plugin_template import TweedieMLP, WeightedDSM


def test_compose_by_name_trains_and_samples(template_host):
    sigmas = scorekit.geometric_sigmas(10.0, 0.01, 8)
    model = scorekit.compose(network="tweedie_mlp", estimator="weighted_dsm", sampler="pc", sigmas=sigmas,
                             network_options={"hidden": 32}, sampler_options={"n_corrector": 1}, host=template_host)
    assert isinstance(model.network, TweedieMLP) and isinstance(model.estimator, WeightedDSM)
    data = 0.5 * torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) + 1.0
    optimiser = None
    for _ in range(20):
        loss = model.loss(data, generator=torch.Generator().manual_seed(1))
        optimiser = optimiser or torch.optim.Adam(model.parameters(), lr=1e-2)  # after the lazy network sized itself
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    x_init = model.initial_noise(torch.empty(128, 2), torch.Generator().manual_seed(2))  # pc has none: N(0, 10^2 I)
    # the std of 256 draws of N(0, 10^2) is 10 with a standard error of 0.44: this fails only for another scale
    assert 8.0 < float(x_init.std()) < 12.0
    samples = model.sample(x_init, generator=torch.Generator().manual_seed(3))
    assert samples.shape == x_init.shape and torch.isfinite(samples).all()


def test_template_components_mix_with_builtins(template_host):
    model = scorekit.compose(network="mlp", estimator="weighted_dsm", sampler="pc", host=template_host)
    assert model.names == {"network": "mlp", "estimator": "weighted_dsm", "sampler": "pc"}
    assert template_host.get("sampler", "pc").owner == "template"


def test_options_are_validated_by_name(template_host):
    with pytest.raises(OptionError, match="'snr'"):
        scorekit.compose(sampler="pc", sampler_options={"snr": -1.0}, host=template_host)
    with pytest.raises(OptionError, match="no option 'hiden'.*did you mean 'hidden'"):
        scorekit.compose(network="tweedie_mlp", network_options={"hiden": 8}, sampler=None, host=template_host)
    with pytest.raises(CompositionError, match="needs sigmas"):
        scorekit.compose(network="mlp", estimator=None, sampler="pc", sigmas=None, host=template_host)


def test_entry_point_is_declared():
    try:
        dist = metadata.distribution("scorekit-plugin-template")
    except metadata.PackageNotFoundError:
        pytest.skip("scorekit-plugin-template is not installed (pip install -e .)")
    points = {(ep.group, ep.name): ep.value for ep in dist.entry_points}
    assert points[("scorekit", "template")] == "scorekit_plugin_template.plugin"
