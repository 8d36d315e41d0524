"""scorekit.testing's contract suite: every built-in component keeps it, and each rule catches a broken one."""

from __future__ import annotations

import math
import types

import attrs
import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st
from torch import nn

import scorekit
from scorekit import hookimpl
from scorekit.estimators import DenoisingScoreMatching, SlicedScoreMatching
from scorekit.sigmas import as_sigmas, geometric_sigmas
from scorekit.targets import StandardGaussianScore
from scorekit.testing import CALLBACK_FIELDS, ContractViolation, check_estimator, check_network, check_sampler
from scorekit.testing import strategies as sks
from scorekit.validators import positive_int


#: five levels from 1 to 0.1: cheap for the samplers, and wide enough for annealing from +10
SAMPLER_SIGMAS = geometric_sigmas(1.0, 0.1, 5)


# --- every built-in keeps the contract ---------------------------------------------------

@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "unconditional"])
def test_mlp_keeps_the_network_contract(host, conditional):
    kwargs = {} if conditional else {"sigmas": None}
    report = check_network("mlp", host=host, **kwargs)
    assert {"shape", "dtype", "finite", "determinism", "options"} <= set(report.passed)


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
def test_energy_mlp_keeps_the_network_contract(host, shape):
    report = check_network("energy_mlp", options={"dim": math.prod(shape)}, shapes=(shape,), host=host)
    assert "energy" in report.passed and "per_example_sigma" in report.passed


PAPER = "paper"


@pytest.mark.parametrize(
    ("name", "options", "sigmas"),
    [("dsm", {}, PAPER), ("dsm", {"weighting": "none"}, SAMPLER_SIGMAS),  # unweighted: too noisy at sigma 0.01
     ("ssm", {}, PAPER), ("ssm", {"jacobian_mode": "reverse", "n_projections": 2}, PAPER),
     ("ssm", {}, None), ("exact", {}, PAPER), ("exact", {}, None)],
    ids=["dsm", "dsm-unweighted", "ssm", "ssm-reverse", "ssm-unconditional", "exact", "exact-unconditional"],
)
def test_builtin_estimators_keep_the_contract(host, name, options, sigmas):
    kwargs = {} if sigmas is PAPER else {"sigmas": sigmas}
    report = check_estimator(name, options=options, host=host, **kwargs)
    assert {"shape", "determinism", "learns", "options"} <= set(report.passed)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("langevin", {"step_size": 0.1, "n_steps": 50}),
        ("annealed_langevin", {"step_size": 0.01, "steps_per_level": 10}),
        ("hmc", {"metropolis": False, "n_warmup": 0, "n_steps": 10, "n_leapfrog": 5, "step_size": 0.2}),
        ("hmc", {"n_warmup": 10, "n_steps": 10, "n_leapfrog": 5}),  # Metropolis, on the target's energy
    ],
    ids=["langevin", "annealed_langevin", "hmc-unadjusted", "hmc-metropolis"],
)
def test_builtin_samplers_keep_the_contract(host, name, options):
    report = check_sampler(name, options=options, sigmas=SAMPLER_SIGMAS, host=host)
    assert {"shape", "determinism", "callback", "moves_to_target", "options"} <= set(report.passed)


#: from 10 to 0.1: the samplers that take one or a few steps per level (consistent_annealed,
#: predictor_corrector) follow the score from +10 only when the largest sigma is of that order
WIDE_SIGMAS = geometric_sigmas(10.0, 0.1, 8)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("annealed_hmc", {"step_size": 0.05, "steps_per_level": 3, "n_leapfrog": 3}),  # Metropolis, on the energy
        ("annealed_hmc", {"metropolis": False, "step_size": 0.05, "steps_per_level": 3, "n_leapfrog": 3}),
        ("consistent_annealed", {}),
        ("predictor_corrector", {}),
        ("predictor_corrector", {"corrector_steps": 0, "final_denoise": False, "norms": "example"}),
    ],
    ids=["annealed_hmc-metropolis", "annealed_hmc-unadjusted", "consistent_annealed", "predictor_corrector",
         "predictor_corrector-predictor-only"],
)
def test_samplers_beyond_the_paper_keep_the_contract(host, name, options):
    report = check_sampler(name, options=options, sigmas=WIDE_SIGMAS, host=host)
    assert {"shape", "determinism", "callback", "moves_to_target", "initial_noise", "inpaint", "options"} <= set(
        report.passed)


def test_callback_fields_are_those_of_sampler_step():
    from scorekit.samplers import SamplerStep

    assert set(CALLBACK_FIELDS) <= {f.name for f in attrs.fields(SamplerStep)}


# --- broken components: each rule names itself and the component -------------------------

def _plugin(name: str, hook: str, **components) -> types.ModuleType:
    module = types.ModuleType(name)

    def register_all(register):
        for key, factory in components.items():
            register(key, factory)

    register_all.__name__ = hook
    setattr(module, hook, hookimpl(register_all))
    return module


def _violation(check, *args, **kwargs) -> ContractViolation:
    with pytest.raises(ContractViolation) as info:
        check(*args, **kwargs)
    return info.value


class SumsFeatures(nn.Module):
    """Broken: returns one number per example instead of a tensor shaped like x."""

    def forward(self, x, sigma):
        return x.flatten(1).sum(1, keepdim=True)


def wrong_shape_network() -> nn.Module:
    return SumsFeatures()


def test_a_network_returning_the_wrong_shape_is_caught():
    err = _violation(check_network, wrong_shape_network)
    assert err.rule == "shape" and err.component == "network 'wrong_shape_network'"
    assert "network 'wrong_shape_network'" in str(err) and "(rule: shape)" in str(err)
    assert "returned shape (3, 1) for input of shape (3, 2)" in str(err)


class FirstSigmaOnly(nn.Module):
    """Broken: scales the whole batch by the first example's sigma."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, sigma):
        return -self.scale * x / sigma[0] ** 2


def test_a_network_that_uses_one_sigma_for_the_batch_is_caught():
    err = _violation(check_network, FirstSigmaOnly)
    assert err.rule == "per_example_sigma" and "network 'FirstSigmaOnly'" in str(err)


@attrs.frozen(kw_only=True)
class ScalarDSM(DenoisingScoreMatching):
    """Broken: reduces to the batch mean instead of returning per-example losses."""

    def __call__(self, score, x, *, sigmas, generator=None):
        return super().__call__(score, x, sigmas=sigmas, generator=generator).mean()


def test_an_estimator_returning_a_scalar_is_caught(host):
    host.register_plugin(_plugin("broken_estimators", "register_estimators", scalar_dsm=ScalarDSM))
    err = _violation(check_estimator, "scalar_dsm", host=host)
    assert err.rule == "shape" and "estimator 'scalar_dsm'" in str(err) and "(rule: shape)" in str(err)
    assert "shape ()" in str(err) and "one loss per example" in str(err)


@attrs.frozen(kw_only=True)
class GlobalRNGDSM(DenoisingScoreMatching):
    """Broken: draws its noise from torch's global RNG."""

    def __call__(self, score, x, *, sigmas, generator=None):
        return super().__call__(score, x, sigmas=sigmas, generator=None)


def test_an_estimator_that_ignores_its_generator_is_caught(host):
    host.register_plugin(_plugin("rng_estimators", "register_estimators", global_dsm=GlobalRNGDSM))
    err = _violation(check_estimator, "global_dsm", host=host)
    assert err.rule == "determinism" and "ignores its generator" in str(err)


@attrs.frozen(kw_only=True)
class NegatedDSM(DenoisingScoreMatching):
    """Broken: maximises the DSM loss."""

    def __call__(self, score, x, *, sigmas, generator=None):
        return -super().__call__(score, x, sigmas=sigmas, generator=generator)


def test_an_estimator_that_pulls_the_score_the_wrong_way_is_caught(host):
    host.register_plugin(_plugin("negated", "register_estimators", negated_dsm=NegatedDSM))
    err = _violation(check_estimator, "negated_dsm", host=host)
    assert err.rule == "learns" and "estimator 'negated_dsm'" in str(err)


@attrs.frozen(kw_only=True)
class GlobalRNGLangevin:
    """Broken: Langevin dynamics with noise from torch's global RNG, ignoring ``generator``."""

    n_steps: int = attrs.field(default=50, validator=positive_int)

    def __call__(self, score, x_init, *, sigmas=None, generator=None, callback=None):
        x = x_init
        for _ in range(self.n_steps):
            x = x + 0.05 * score(x, None) + 0.1**0.5 * torch.randn_like(x)
        return x


def test_a_sampler_that_ignores_its_generator_is_caught(host):
    host.register_plugin(_plugin("my_samplers", "register_samplers", my_langevin=GlobalRNGLangevin))
    err = _violation(check_sampler, "my_langevin", host=host)
    assert err.rule == "determinism" and err.component == "sampler 'my_langevin'"
    assert str(err).startswith("sampler 'my_langevin': the same generator seed gave different samples")
    assert "ignores its generator" in str(err) and str(err).endswith("(rule: determinism)")


@attrs.frozen(kw_only=True)
class SilentLangevin(GlobalRNGLangevin):
    """Broken: honours its generator but never calls the callback."""

    def __call__(self, score, x_init, *, sigmas=None, generator=None, callback=None):
        x = x_init
        for _ in range(self.n_steps):
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            x = x + 0.05 * score(x, None) + 0.1**0.5 * noise
        return x


def test_a_sampler_that_never_calls_back_is_caught():
    err = _violation(check_sampler, SilentLangevin)
    assert err.rule == "callback" and "sampler 'SilentLangevin'" in str(err)


@attrs.frozen(kw_only=True)
class UnvalidatedDSM(DenoisingScoreMatching):
    """Broken: an option without a validator."""

    scale: float = 1.0


def test_an_option_without_a_validator_is_caught():
    err = _violation(check_estimator, UnvalidatedDSM)
    assert err.rule == "options" and "invalid value of option 'scale'" in str(err) and "add a validator" in str(err)


def lenient_langevin(**options):
    """Broken: swallows any option (a sampler that otherwise keeps the contract)."""
    from scorekit.samplers import Langevin

    return Langevin(step_size=0.1, n_steps=50)


def test_a_sampler_that_swallows_unknown_options_is_caught():
    err = _violation(check_sampler, lenient_langevin)
    assert err.rule == "options" and "sampler 'lenient_langevin'" in str(err)
    assert "accepted an unknown option" in str(err) and "do not swallow **kwargs" in str(err)


# --- hypothesis strategies -------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(sigmas=sks.sigma_schedules(), shape=sks.data_shapes(), x=sks.batches(dtype=torch.float64))
def test_strategies_give_valid_schedules_shapes_and_batches(sigmas, shape, x):
    assert torch.equal(as_sigmas(sigmas), sigmas)
    assert len(shape) in (1, 3) and all(n >= 1 for n in shape)
    assert x.dtype == torch.float64 and 1 <= x.shape[0] <= 4 and x.ndim in (2, 4)


#: options whose valid range depends on the sigmas (validate_composition checks them): drawn within
#: what compose()'s default schedule (10 levels from 1 to 0.01) allows
SCHEDULE_BOUND = {"consistent_annealed": {"step_size": st.floats(0.41, 1.0)}}


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_valid_options_compose_every_builtin_by_name(data, builtin_host):
    """What valid_options draws (it keeps only dicts the attrs class accepts) also passes compose()'s own
    option handling, and reaches the component unchanged: the composed one equals the class built directly."""
    kind = data.draw(st.sampled_from(["estimator", "sampler"]))
    component = data.draw(st.sampled_from([c for c in builtin_host.components(kind) if attrs.has(c.factory)]))
    options = data.draw(sks.valid_options(component.factory, **SCHEDULE_BOUND.get(component.name, {})))
    names = {"estimator": None, "sampler": None, kind: component.name}
    model = scorekit.compose(network=StandardGaussianScore(), **names, **{f"{kind}_options": options}, host=builtin_host)
    assert getattr(model, kind) == component.factory(**options)


PINNED = sks.valid_options(SlicedScoreMatching, vary=["n_projections"], projection="rademacher")


@settings(max_examples=5, deadline=None)
@given(options=PINNED)
def test_valid_options_pins_and_varies_only_what_it_is_told(options):
    assert options["projection"] == "rademacher" and set(options) == {"projection", "n_projections"}


def test_valid_options_does_vary_what_it_is_told():
    assert find(PINNED, lambda options: options["n_projections"] != 1)["n_projections"] > 1  # not only the default


def test_valid_options_rejects_unknown_names():
    with pytest.raises(ValueError, match="no options"):
        sks.valid_options(SlicedScoreMatching, bogus=1)
