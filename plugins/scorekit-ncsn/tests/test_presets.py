"""The presets carry the paper's hyperparameters and compose."""

from __future__ import annotations

import pytest
import torch

import scorekit
from scorekit.plugins import PluginHost
from scorekit_ncsn import plugin
from scorekit_ncsn.presets import PRESETS


@pytest.fixture
def ncsn_host():
    host = PluginHost(autoload=False)
    host.register_plugin(plugin, "scorekit-ncsn")
    return host


@pytest.mark.parametrize("name", ["ncsn-cifar10", "ncsn-mnist", "ncsn-celeba"])
def test_paper_presets(name):
    cfg = PRESETS[name]()
    torch.testing.assert_close(cfg.model.sigmas.tensor(), scorekit.geometric_sigmas(1.0, 0.01, 10))
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.n_iters, cfg.train.checkpoint_every) == (1e-3, 128, 200_000, 5_000)
    assert cfg.model.sampler == "annealed_langevin"
    assert cfg.model.sampler_options["step_size"] == 2e-5 and cfg.model.sampler_options["steps_per_level"] == 100
    assert cfg.model.network_options["ngf"] == (64 if name == "ncsn-mnist" else 128)


def test_baseline_preset():
    cfg = PRESETS["ncsn-baseline"]()
    assert cfg.model.sigmas.tensor().tolist() == pytest.approx([0.01])
    assert cfg.model.sampler == "langevin"
    assert cfg.model.sampler_options["n_steps"] == 1000 and cfg.model.sampler_options["step_size"] == 2e-5


def test_presets_are_registered_and_compose(ncsn_host):
    assert set(PRESETS) <= set(ncsn_host.names("preset"))
    cfg = PRESETS["ncsn-digits"]()
    model = scorekit.compose(network=cfg.model.network, estimator=cfg.model.estimator, sampler=cfg.model.sampler,
                             sigmas=cfg.model.sigmas.tensor(), network_options=cfg.model.network_options,
                             estimator_options=cfg.model.estimator_options, sampler_options=cfg.model.sampler_options,
                             host=ncsn_host)
    assert model.loss(torch.rand(4, 1, 8, 8)).isfinite()


def test_ncsn_without_sigmas_is_a_clear_error(ncsn_host):
    with pytest.raises(scorekit.OptionError, match="noise-conditional"):
        scorekit.compose(network="ncsn", sigmas=None, estimator="ssm", sampler=None, host=ncsn_host)
