"""The estimators against quantities known in closed form."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import scorekit
from scorekit.errors import CompositionError, DataError, OptionError
from scorekit.targets import LinearScore, StandardGaussianScore
from tests.helpers import mean_and_stderr

# Six standard errors: a correct estimator fails with probability ~2e-9 per check, while
# every bug we guard against (a lost 1/2, a sign, a missing trace term) moves the mean by
# far more than 6 SE at these sample sizes.
Z = 6.0

matrices = st.lists(st.floats(-1.5, 1.5, allow_nan=False), min_size=9, max_size=9).map(
    lambda v: torch.tensor(v, dtype=torch.float64).reshape(3, 3)
)


def _linear_model(host, A, estimator, **options):
    return scorekit.compose(
        network=LinearScore(A.shape[0], matrix=A), estimator=estimator, sampler=None, sigmas=None, estimator_options=options, host=host
    ).double()


ESTIMATORS = [
    ("exact", {}),
    ("ssm", {"projection": "gaussian", "variance_reduction": True}),
    ("ssm", {"projection": "gaussian", "variance_reduction": False}),
    ("ssm", {"projection": "rademacher", "variance_reduction": True}),
    ("ssm", {"projection": "rademacher", "variance_reduction": False}),
    ("ssm", {"projection": "rademacher", "variance_reduction": False, "jacobian_mode": "reverse", "n_projections": 3}),
]


@pytest.mark.parametrize(("estimator", "options"), ESTIMATORS)
@given(A=matrices)
def test_linear_score_matches_hyvarinen_objective(builtin_host, estimator, options, A):
    """For s(x) = A x and x ~ N(0, I): E[loss] = tr(A) + 1/2 ||A||_F^2 (Eq. 1 and Eq. 3)."""
    model = _linear_model(builtin_host, A, estimator, **options)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 3, generator=g, dtype=torch.float64)
    mean, se = mean_and_stderr(model.losses(x, generator=g))
    expected = torch.trace(A).item() + 0.5 * A.pow(2).sum().item()
    assert abs(mean - expected) <= Z * se + 1e-9, (mean, expected, se)


def test_exact_trace_is_exact_per_example(host):
    """With a linear score the trace term is deterministic: loss - 1/2||Ax||^2 == tr(A)."""
    A = torch.tensor([[1.0, 2.0, 0.0], [0.5, -3.0, 1.0], [0.0, 0.0, 4.0]], dtype=torch.float64)
    model = _linear_model(host, A, "exact")
    x = torch.randn(7, 3, dtype=torch.float64)
    per = model.losses(x)
    expected = torch.trace(A) + 0.5 * (x @ A.T).pow(2).sum(1)
    torch.testing.assert_close(per, expected)


@pytest.mark.parametrize("dim", [1, 5, 40])
def test_dsm_with_optimal_network_matches_closed_form(host, dim):
    """N(0, I) data, s = -x~/(1+sigma^2): E[DSM] = mean_i D / (2 (1 + sigma_i^2)) (Eq. 5, 6)."""
    sigmas = scorekit.geometric_sigmas(1.0, 0.01, 10).double()
    model = scorekit.compose(network=StandardGaussianScore(), estimator="dsm", sampler=None, sigmas=sigmas, host=host).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20000, dim, generator=g, dtype=torch.float64)
    mean, se = mean_and_stderr(model.losses(x, generator=g))
    expected = (dim / (2 * (1 + sigmas**2))).mean().item()
    assert abs(mean - expected) <= Z * se, (mean, expected, se)


def test_dsm_unweighted_is_sigma2_weighted_over_sigma2(host):
    """weighting='none' divides each example's loss by its sigma^2 (lambda = 1)."""
    sigmas = torch.tensor([2.0, 0.5])
    net = StandardGaussianScore()
    x = torch.randn(64, 3)
    weighted = scorekit.compose(network=net, estimator="dsm", sampler=None, sigmas=sigmas, host=host)
    plain = scorekit.compose(network=net, estimator="dsm", sampler=None, sigmas=sigmas, host=host,
                             estimator_options={"weighting": "none"})
    a = weighted.losses(x, generator=torch.Generator().manual_seed(5))
    b = plain.losses(x, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    drawn = sigmas[torch.randint(0, 2, (64,), generator=g)]
    torch.testing.assert_close(b * drawn**2, a)


@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
@pytest.mark.parametrize("variance_reduction", [True, False])
def test_ssm_forward_and_reverse_modes_agree(host, conditional, projection, variance_reduction):
    """Same generator seed: forward-mode JVP and double backprop give the same loss and gradients."""
    results = []
    for mode in ("forward", "reverse"):
        torch.manual_seed(0)
        model = scorekit.compose(
            network="mlp", estimator="ssm", sampler=None, host=host,
            sigmas=scorekit.geometric_sigmas(1.0, 0.1, 4) if conditional else None,
            network_options={"dim": 6, "hidden": 32},
            estimator_options={"jacobian_mode": mode, "projection": projection,
                               "variance_reduction": variance_reduction, "n_projections": 2},
        ).double()
        x = torch.randn(16, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        loss = model.loss(x, generator=torch.Generator().manual_seed(2))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l_f, g_f), (l_r, g_r) = results
    torch.testing.assert_close(l_f, l_r)
    for a, b in zip(g_f, g_r):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("estimator", ["dsm", "ssm", "exact"])
def test_same_generator_seed_same_loss(host, estimator):
    model = scorekit.compose(estimator=estimator, sampler=None, host=host, network_options={"hidden": 16})
    x = torch.randn(8, 4)
    a = model.loss(x, generator=torch.Generator().manual_seed(3))
    b = model.loss(x, generator=torch.Generator().manual_seed(3))
    c = model.loss(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_exact_refuses_high_dimensions_and_suggests_ssm(host):
    model = scorekit.compose(estimator="exact", sampler=None, sigmas=None, host=host,
                             estimator_options={"max_dim": 10})
    with pytest.raises(DataError, match="ssm"):
        model.loss(torch.randn(2, 11))


def test_exact_chunked_equals_unchunked(host):
    A = torch.randn(5, 5, dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64)
    a = _linear_model(host, A, "exact").losses(x)
    b = _linear_model(host, A, "exact", chunk_size=2).losses(x)
    torch.testing.assert_close(a, b)


def test_dsm_without_sigmas_is_a_composition_error(host):
    with pytest.raises(CompositionError, match="needs noise levels"):
        scorekit.compose(estimator="dsm", sampler=None, sigmas=None, host=host)


@pytest.mark.parametrize("estimator", ["dsm", "ssm", "exact"])
def test_estimators_work_on_images(host, estimator):
    """Rank-agnostic: [B, C, H, W] data through the default MLP."""
    model = scorekit.compose(estimator=estimator, sampler=None, host=host, network_options={"hidden": 8})
    x = torch.rand(3, 1, 4, 4)
    per = model.losses(x)
    assert per.shape == (3,)
    per.mean().backward()


def test_energy_network_trains_with_every_estimator(host):
    for estimator in ("dsm", "ssm", "exact"):
        model = scorekit.compose(network="energy_mlp", estimator=estimator, sampler=None, host=host,
                                 network_options={"dim": 2, "hidden": 16})
        model.loss(torch.randn(4, 2)).backward()
        # the score -dE/dx does not see the energy's constant offset (the head's bias)
        first = model.network.energy_net.features.body[0].weight
        assert first.grad is not None and first.grad.abs().sum() > 0


# --- non-uniform level draws (dsm's level_median) -------------------------------------------


@pytest.mark.parametrize("dim", [1, 40])
def test_dsm_level_draws_weight_eq6_by_their_probabilities(host, dim):
    """N(0, I) data and the optimal score: E[DSM] = sum_i p_i D / (2 (1 + sigma_i^2)), with p_i the
    log-normal mixture, not the uniform mean (here 12.4 against 15.6 for D = 40, 28 SE apart)."""
    from scorekit.estimators.common import log_normal_level_probs

    sigmas = scorekit.geometric_sigmas(1.0, 0.01, 10).double()
    options = {"level_median": 0.8, "level_std": 0.5, "level_uniform": 0.2}
    model = scorekit.compose(network=StandardGaussianScore(), estimator="dsm", sampler=None, sigmas=sigmas,
                             estimator_options=options, host=host).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(20000, dim, generator=g, dtype=torch.float64)
    mean, se = mean_and_stderr(model.losses(x, generator=g))
    probs = log_normal_level_probs(sigmas, median=0.8, std=0.5, uniform=0.2)
    expected = (probs * dim / (2 * (1 + sigmas**2))).sum().item()
    assert abs(mean - expected) <= Z * se, (mean, expected, se)


def test_dsm_draws_each_level_as_often_as_its_probability(host):
    from scorekit.estimators.common import log_normal_level_probs

    sigmas = scorekit.geometric_sigmas(5.0, 0.01, 20)
    drawn: list[torch.Tensor] = []

    def recording_score(x, sigma):
        drawn.append(sigma)
        return torch.zeros_like(x)

    dsm = scorekit.estimators.DenoisingScoreMatching(level_median=0.5)
    n = 100_000
    dsm(recording_score, torch.zeros(n, 1), sigmas=sigmas, generator=torch.Generator().manual_seed(0))
    level = (drawn[0][:, None] - sigmas[None, :]).abs().argmin(1)
    counts = torch.bincount(level, minlength=20).double()
    p = log_normal_level_probs(sigmas, median=0.5, std=1.2, uniform=0.5)
    se = (n * p * (1 - p)).sqrt()
    # 5 binomial SE per level: a false alarm has probability ~1e-5 over the 20 levels; a uniform
    # draw (p = 0.05 everywhere) misses the peak level's p = 0.083 by ~40 SE
    assert ((counts - n * p).abs() <= 5 * se).all(), (counts, n * p)


@given(
    median=st.floats(1e-3, 1e3), std=st.floats(0.05, 5.0), uniform=st.floats(0.0, 1.0),
    n=st.integers(1, 40),
)
def test_level_probabilities_are_a_distribution_peaked_at_the_median(median, std, uniform, n):
    from scorekit.estimators.common import log_normal_level_probs

    sigmas = scorekit.geometric_sigmas(10.0, 0.01, n) if n > 1 else torch.tensor([1.0])
    p = log_normal_level_probs(sigmas, median=median, std=std, uniform=uniform)
    assert torch.isclose(p.sum(), torch.tensor(1.0, dtype=p.dtype))
    assert (p >= uniform / n - 1e-12).all()  # the uniform share keeps every level trained
    peak = int(p.argmax())
    assert (p[:peak].diff() >= -1e-12).all() and (p[peak:].diff() <= 1e-12).all()  # one bump
    nearest = int((sigmas.log() - torch.tensor(median).log()).abs().argmin())
    assert p[nearest] >= p.max() - 1e-12


def test_dsm_level_options_are_checked(host):
    with pytest.raises(OptionError, match=r"level_uniform.*\[0, 1\].*1.5"):
        scorekit.compose(estimator="dsm", estimator_options={"level_median": 0.5, "level_uniform": 1.5}, host=host)
    with pytest.raises(OptionError, match=r"level_median.*positive|level_median.*> 0"):
        scorekit.compose(estimator="dsm", estimator_options={"level_median": 0.0}, host=host)
