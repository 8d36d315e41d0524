"""Where sampling starts: a sampler's own initial_noise (with the composition's sigmas when it asks for them), its
init_range, or the model's default N(mean, sigma_1^2 I); a composition with none of them fails in compose()."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch

import scorekit
from scorekit import rng
from scorekit.errors import CompositionError, DataError
from scorekit.model import ScoreModel
from scorekit.samplers import AnnealedLangevin
from scorekit.sigmas import geometric_sigmas
from scorekit.targets import StandardGaussianScore
from scorekit.testing import ContractViolation, check_sampler
from scorekit.training.sampling import sample_in_batches
from scorekit.validators import positive_int

SIGMAS = geometric_sigmas(20.0, 0.01, 5)
#: draws per coordinate in the statistical checks
N = 20_000
#: the sample mean of N draws of N(mu, 20^2) has a standard error of 20 / sqrt(N) = 0.14, the sample std one of
#: 20 / sqrt(2 N) = 0.10: 0.7 and 0.5 are five standard errors, which a right start misses once in 10^6 seeds,
#: while a start of the wrong scale (1, the uniform or N(0, I) starts) or centre (0 instead of 3) is far outside
MEAN_TOL, STD_TOL = 0.7, 0.5


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Recording:
    """A sampler with no initial_noise that returns its start unchanged (and keeps it)."""

    def __init__(self) -> None:
        self.starts: list[torch.Tensor] = []

    def __call__(self, score: Any, x_init: torch.Tensor, *, sigmas=None, generator=None, callback=None):
        self.starts.append(x_init)
        return x_init.clone()


def compose(sampler: Any, sigmas: Any = SIGMAS) -> ScoreModel:
    return scorekit.compose(network=StandardGaussianScore(), estimator=None, sampler=sampler, sigmas=sigmas)


# --- the default start ----------------------------------------------------------------------

def test_a_sampler_without_initial_noise_samples_from_n_0_sigma1():
    sampler = Recording()
    model = compose(sampler)
    assert model.has_initial_noise()
    start = model.initial_noise(torch.empty(N, 2, dtype=torch.float64), gen(0))
    samples = model.sample(start, generator=gen(1))
    assert sampler.starts[0] is start and torch.equal(samples, start)
    assert start.shape == (N, 2) and start.dtype == torch.float64
    assert start.mean(0).abs().max() < MEAN_TOL
    assert (start.std(0) - 20.0).abs().max() < STD_TOL  # sigma_1 = 20, the largest of SIGMAS


def test_the_default_start_is_centred_on_mean():
    model = compose(Recording())
    mean = torch.tensor([3.0, -40.0], dtype=torch.float64)
    start = model.initial_noise(torch.empty(N, 2, dtype=torch.float64), gen(0), mean=mean)
    assert (start.mean(0) - mean).abs().max() < MEAN_TOL
    assert (start.std(0) - 20.0).abs().max() < STD_TOL
    shifted = model.initial_noise(torch.empty(N, 2, dtype=torch.float64), gen(0), mean=3.0)  # a number: every entry
    assert torch.equal(shifted, model.initial_noise(torch.empty(N, 2, dtype=torch.float64), gen(0)) + 3.0)


def test_the_default_start_draws_from_the_generator():
    model = compose(Recording())
    like = torch.empty(16, 3, 2)
    torch.manual_seed(0)
    a = model.initial_noise(like, gen(7))
    torch.manual_seed(1)  # torch's global RNG plays no part
    assert torch.equal(a, model.initial_noise(like, gen(7)))
    assert not torch.equal(a, model.initial_noise(like, gen(8)))


def test_sample_in_batches_centres_the_default_start_on_mean():
    model = compose(Recording())
    samples = sample_in_batches(model, torch.zeros(1, 2), N, generator=gen(0), batch_size=N // 4,
                                mean=torch.tensor([3.0, -40.0]))
    assert samples.shape == (N, 2)
    assert (samples.mean(0) - torch.tensor([3.0, -40.0])).abs().max() < MEAN_TOL


@pytest.mark.parametrize("mean", [torch.ones(3), torch.tensor([0.0, float("nan")]), float("inf"), True, "0"],
                         ids=["shape", "nan", "inf", "bool", "str"])
def test_a_bad_mean_is_a_clear_error(mean):
    model = compose(Recording())
    with pytest.raises(DataError, match=r"mean must be a finite number or a finite tensor that broadcasts to one "
                                        r"example of shape \(2,\)"):
        model.initial_noise(torch.empty(4, 2), gen(0), mean=mean)


def test_a_sampler_with_init_range_starts_uniform_in_it():
    class Ranged(Recording):
        init_range = (-3.0, 5.0)

    model = compose(Ranged(), sigmas=None)  # no sigmas needed
    start = model.initial_noise(torch.empty(N, 2, dtype=torch.float64), gen(0))
    assert -3.0 <= start.min() and start.max() < 5.0
    assert (start.mean(0) - 1.0).abs().max() < 0.1  # uniform on a width of 8: std 2.3, standard error 0.016


def test_a_malformed_init_range_fails_in_compose():
    class Ranged(Recording):
        init_range = (5.0, -3.0)

    with pytest.raises(CompositionError, match=r"sampler 'Ranged' has init_range \(5.0, -3.0\).*low < high"):
        compose(Ranged())


# --- no start at all --------------------------------------------------------------------------

def test_no_initial_noise_and_no_sigmas_fails_in_compose():
    with pytest.raises(CompositionError, match=r"sampler 'Recording' has no initial_noise and no init_range, and the "
                                               r"composition has no sigmas.*compose with sigmas=.*initial_noise\(like, "
                                               r"generator\) method or an init_range") as err:
        compose(Recording(), sigmas=None)
    assert "\n" not in str(err.value)


def test_a_scoremodel_built_without_a_start_says_to_pass_x_init():
    model = ScoreModel(StandardGaussianScore(), None, Recording(), None, {"sampler": "recording"})
    assert not model.has_initial_noise()
    with pytest.raises(CompositionError, match="sampler 'recording' has no initial_noise.*pass x_init to model.sample"):
        model.initial_noise(torch.empty(4, 2), gen(0))
    x = torch.randn(4, 2)
    assert torch.equal(model.sample(x), x)  # with an x_init of its own it samples as before


def test_without_a_sampler_there_is_no_initial_noise():
    model = scorekit.compose(network=StandardGaussianScore(), estimator="dsm", sampler=None)
    assert not model.has_initial_noise()


# --- a sampler's own initial_noise -------------------------------------------------------------

class OldStyle(Recording):
    """``initial_noise(like, generator)``, written before the sigmas keyword: called as before."""

    def initial_noise(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return rng.rand_like(like, generator).add_(100.0)


class TakesSigmas(Recording):
    """``initial_noise(like, generator, *, sigmas)``: the composition's sigmas, scaled into its start."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor | None] = []

    def initial_noise(self, like: torch.Tensor, generator: torch.Generator | None = None, *,
                      sigmas: torch.Tensor | None = None) -> torch.Tensor:
        self.seen.append(sigmas)
        return rng.randn_like(like, generator) * (1.0 if sigmas is None else sigmas[0])


def test_an_old_style_initial_noise_still_works():
    model = compose(OldStyle())
    start = model.initial_noise(torch.empty(8, 2), gen(0), mean=-50.0)  # its own start: mean is not used
    assert torch.equal(start, torch.rand(8, 2, generator=gen(0)) + 100.0)


def test_an_initial_noise_that_takes_sigmas_receives_the_compositions():
    sampler = TakesSigmas()
    model = compose(sampler)
    like = torch.empty(8, 2, dtype=torch.float64)
    start = model.initial_noise(like, gen(0))
    (seen,) = sampler.seen
    assert seen.dtype == torch.float64 and torch.allclose(seen, SIGMAS.double())
    assert torch.equal(start, torch.randn(8, 2, generator=gen(0), dtype=torch.float64) * 20.0)
    compose(sampler, sigmas=None).initial_noise(like, gen(0))  # an unconditional composition: sigmas=None
    assert sampler.seen[-1] is None


def test_the_builtins_keep_their_own_start():
    model = scorekit.compose(network=StandardGaussianScore(), estimator=None, sampler="annealed_langevin",
                             sampler_options={"init_range": (-1.0, 1.0)})
    start = model.initial_noise(torch.empty(64, 2), gen(0))
    assert torch.equal(start, torch.rand(64, 2, generator=gen(0)) * 2.0 - 1.0)


# --- the contract suite -------------------------------------------------------------------------

SEEN: list[torch.Tensor | None] = []
CONTRACT_SIGMAS = geometric_sigmas(1.0, 0.1, 5)


@attrs.frozen(kw_only=True)
class PriorLangevin(AnnealedLangevin):
    """Annealed Langevin started from N(0, sigma_1^2 I), the sigmas coming through initial_noise."""

    def initial_noise(self, like: torch.Tensor, generator: torch.Generator | None = None, *,
                      sigmas: torch.Tensor | None = None) -> torch.Tensor:
        SEEN.append(sigmas)
        return rng.randn_like(like, generator) * sigmas[0]


@attrs.frozen(kw_only=True)
class GlobalRNGPrior(PriorLangevin):
    """Broken: its start ignores the generator."""

    def initial_noise(self, like: torch.Tensor, generator: torch.Generator | None = None, *,
                      sigmas: torch.Tensor | None = None) -> torch.Tensor:
        return torch.randn_like(like) * sigmas[0]


@attrs.frozen(kw_only=True)
class NoInitialNoise:
    """Annealed Langevin without an initial_noise of its own."""

    steps_per_level: int = attrs.field(default=10, validator=positive_int)

    def __call__(self, score, x_init, *, sigmas=None, generator=None, callback=None):
        inner = AnnealedLangevin(step_size=0.01, steps_per_level=self.steps_per_level)
        return inner(score, x_init, sigmas=sigmas, generator=generator, callback=callback)


def test_the_contract_passes_the_sigmas_to_initial_noise():
    SEEN.clear()
    options = {"step_size": 0.01, "steps_per_level": 10}
    report = check_sampler(PriorLangevin, options=options, sigmas=CONTRACT_SIGMAS)
    assert "initial_noise" in report.passed
    assert SEEN and all(s is not None and torch.allclose(s.float(), CONTRACT_SIGMAS) for s in SEEN)


def test_the_contract_catches_an_initial_noise_that_ignores_its_generator():
    with pytest.raises(ContractViolation, match="different noise for the same generator seed") as err:
        check_sampler(GlobalRNGPrior, options={"step_size": 0.01, "steps_per_level": 10}, sigmas=CONTRACT_SIGMAS)
    assert err.value.rule == "initial_noise"


def test_the_contract_skips_initial_noise_for_a_sampler_without_one():
    report = check_sampler(NoInitialNoise, sigmas=CONTRACT_SIGMAS, options={"steps_per_level": 10})
    assert dict(report.skipped)["initial_noise"].startswith("the sampler has no initial_noise")
    with pytest.raises(ContractViolation, match="no initial noise to sample from") as err:
        check_sampler(NoInitialNoise, sigmas=None)
    assert err.value.rule == "builds"
