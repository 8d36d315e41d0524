"""The template's components keep scorekit's contracts (scorekit.testing runs every rule)."""

from __future__ import annotations

from scorekit.sigmas import geometric_sigmas
from scorekit.testing import check_estimator, check_network, check_sampler

#: a variance-exploding schedule from 20: the sampler check starts its chains at +10
PC_SIGMAS = geometric_sigmas(20.0, 0.01, 10)


def test_tweedie_mlp_keeps_the_network_contract(template_host):
    report = check_network("tweedie_mlp", options={"hidden": 16}, host=template_host)
    assert "per_example_sigma" in report.passed


def test_weighted_dsm_keeps_the_estimator_contract(template_host):
    check_estimator("weighted_dsm", host=template_host)
    # smaller powers weight small sigmas more, so the loss is noisier there: check on larger sigmas
    check_estimator("weighted_dsm", options={"power": 1.0}, sigmas=geometric_sigmas(1.0, 0.1, 5), host=template_host)


def test_pc_keeps_the_sampler_contract(template_host):
    report = check_sampler("pc", options={"n_corrector": 2}, sigmas=PC_SIGMAS, host=template_host)
    assert "moves_to_target" in report.passed
