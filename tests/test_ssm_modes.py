"""Sliced score matching's three ways to ``v^T J v``: forward mode, reverse mode and finite differences.

Forward and reverse mode must agree in loss and gradients for every number of projections (they draw the same
numbers); forward mode with k projections runs the primal once; the finite-difference mode is exact for a linear
score and converges as eps^2 otherwise; every estimator draws its levels the same way.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import scorekit
from scorekit.errors import OptionError
from scorekit.estimators.common import log_normal_level_probs


class PolynomialScore(nn.Module):
    """``s(x) = A x + q * x^2 + r * x^3`` (elementwise powers): linear with ``q = r = 0``; smooth otherwise."""

    def __init__(self, dim: int, *, q: float = 0.0, r: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.A = nn.Parameter(torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim**0.5)
        self.q, self.r = q, r

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return x @ self.A.T + self.q * x**2 + self.r * x**3


def _loss_and_grads(network, estimator_options, x, *, sigmas=None, seed=2):
    model = scorekit.compose(network=network, estimator="ssm", sampler=None, sigmas=sigmas,
                             estimator_options=estimator_options)
    loss = model.loss(x, generator=torch.Generator().manual_seed(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params)
    return loss.detach(), grads


# --- forward and reverse mode agree, for any number of projections --------------------------------


@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("variance_reduction", [True, False])
@pytest.mark.parametrize("conditional", [False, True])
def test_forward_and_reverse_agree_for_k_projections(k, variance_reduction, conditional):
    x = torch.randn(12, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sigmas = scorekit.geometric_sigmas(1.0, 0.1, 4).double() if conditional else None
    results = []
    for mode in ("forward", "reverse"):
        torch.manual_seed(0)  # the same MLP weights
        net = scorekit.compose(network="mlp", estimator=None, sampler=None, sigmas=sigmas,
                               network_options={"dim": 5, "hidden": 16}).network.double()
        options = {"jacobian_mode": mode, "n_projections": k, "variance_reduction": variance_reduction}
        results.append(_loss_and_grads(net, options, x, sigmas=sigmas))
    (lf, gf), (lr, gr) = results
    torch.testing.assert_close(lf, lr, rtol=1e-12, atol=1e-12)
    for a, b in zip(gf, gr):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_forward_mode_runs_the_primal_once_for_all_projections():
    """k tangents share one primal pass: the network sees the batch once, not k times (reverse mode repeats it)."""
    seen: dict[str, list[int]] = {}
    for mode in ("forward", "reverse"):
        sizes: list[int] = []

        class Recording(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lin = nn.Linear(3, 3)

            def forward(self, x, sigma):
                sizes.append(x.shape[0])
                return self.lin(x)

        model = scorekit.compose(network=Recording(), estimator="ssm", sampler=None, sigmas=None,
                                 estimator_options={"jacobian_mode": mode, "n_projections": 4})
        model.loss(torch.randn(8, 3))  # the first call may also size or check the network on one example
        sizes.clear()
        model.loss(torch.randn(8, 3))
        seen[mode] = list(sizes)
    assert seen == {"forward": [8], "reverse": [32]}


# --- finite differences -------------------------------------------------------------------------


@pytest.mark.parametrize("variance_reduction", [True, False])
@pytest.mark.parametrize("k", [1, 3])
def test_finite_differences_are_exact_for_a_linear_score(variance_reduction, k):
    x = torch.randn(64, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    net = PolynomialScore(4)
    options = {"n_projections": k, "variance_reduction": variance_reduction}
    exact, exact_grads = _loss_and_grads(net, {**options, "jacobian_mode": "forward"}, x)
    for eps in (1e-1, 1e-3):
        fd, fd_grads = _loss_and_grads(net, {**options, "jacobian_mode": "finite_difference", "fd_eps": eps}, x)
        # exact up to rounding: (s(x + eps v) - s(x - eps v)) / 2 eps = A v for any eps
        torch.testing.assert_close(fd, exact, rtol=1e-10, atol=1e-10)
        for a, b in zip(fd_grads, exact_grads):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("q", "r"), [(0.3, 0.0), (0.0, 0.2), (0.3, 0.2)])
@pytest.mark.parametrize("variance_reduction", [True, False])
def test_finite_difference_bias_falls_as_eps_squared(q, r, variance_reduction):
    """For a quadratic or cubic score the bias is c eps^2 + O(eps^4): halving eps divides it by 4."""
    x = torch.randn(256, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    net = PolynomialScore(3, q=q, r=r)
    options = {"variance_reduction": variance_reduction}
    exact, _ = _loss_and_grads(net, {**options, "jacobian_mode": "forward"}, x)
    bias = [(_loss_and_grads(net, {**options, "jacobian_mode": "finite_difference", "fd_eps": eps}, x)[0] - exact).abs()
            for eps in (0.04, 0.02)]
    assert bias[0] > 1e-6  # the bias is real at this eps (not an exact case in disguise)
    # 4 +- 0.2: the O(eps^4) remainder is (eps^2 * 3 r / q-ish)-relative, below 5 % at eps = 0.04 here
    assert 3.8 < (bias[0] / bias[1]).item() < 4.2, bias


def test_finite_differences_work_on_a_noise_conditional_image_network():
    x = torch.rand(6, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigmas = scorekit.geometric_sigmas(1.0, 0.1, 3).double()
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 1, 3, padding=1).double()

    class Conditional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x, sigma):
            return torch.tanh(self.conv(x)) / sigma[:, None, None, None]

    forward, _ = _loss_and_grads(Conditional(), {"jacobian_mode": "forward", "n_projections": 2}, x, sigmas=sigmas)
    fd, _ = _loss_and_grads(Conditional(), {"jacobian_mode": "finite_difference", "n_projections": 2, "fd_eps": 1e-4},
                            x, sigmas=sigmas)
    torch.testing.assert_close(fd, forward, rtol=1e-6, atol=0)


def test_fd_eps_is_checked():
    with pytest.raises(OptionError, match=r"fd_eps.*> 0.*-1"):
        scorekit.compose(estimator="ssm", estimator_options={"jacobian_mode": "finite_difference", "fd_eps": -1})
    with pytest.raises(OptionError, match=r"jacobian_mode.*'forward', 'reverse', 'finite_difference'"):
        scorekit.compose(estimator="ssm", estimator_options={"jacobian_mode": "central"})


# --- one level draw for every estimator --------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["dsm", "ssm", "exact"])
def test_every_estimator_draws_levels_as_often_as_their_probability(estimator):
    from scorekit.estimators import DenoisingScoreMatching, ExactScoreMatching, SlicedScoreMatching

    cls = {"dsm": DenoisingScoreMatching, "ssm": SlicedScoreMatching, "exact": ExactScoreMatching}[estimator]
    sigmas = scorekit.geometric_sigmas(5.0, 0.01, 20)
    drawn: list[torch.Tensor] = []

    def recording_score(x, sigma):
        drawn.append(sigma)
        return torch.zeros_like(x)

    n = 60_000
    cls(level_median=0.5)(recording_score, torch.zeros(n, 1), sigmas=sigmas, generator=torch.Generator().manual_seed(0))
    level = (drawn[0][:, None] - sigmas[None, :]).abs().argmin(1)
    counts = torch.bincount(level, minlength=20).double()
    p = log_normal_level_probs(sigmas, median=0.5, std=1.2, uniform=0.5)
    se = (n * p * (1 - p)).sqrt()
    # 5 binomial SE per level: a false alarm has probability ~1e-5 over the 20 levels, while the uniform draw
    # (p = 0.05 everywhere) misses the peak level's p = 0.083 by ~30 SE at this n
    assert ((counts - n * p).abs() <= 5 * se).all(), (counts, n * p)
    uniform = cls()
    drawn.clear()
    uniform(recording_score, torch.zeros(n, 1), sigmas=sigmas, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount((drawn[0][:, None] - sigmas[None, :]).abs().argmin(1), minlength=20).double()
    assert ((counts - n / 20).abs() <= 5 * (n * 0.05 * 0.95) ** 0.5).all(), counts
