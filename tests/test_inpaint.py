"""Inpainting (Algorithm 2): conditional law of the unknown entries, exact known entries, masks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import scorekit
from scorekit.errors import DataError
from scorekit.samplers import AnnealedLangevin, Langevin
from scorekit.score import ScoreFunction
from scorekit.sigmas import geometric_sigmas
from scorekit.targets import Gaussian, StandardGaussianScore, TargetScoreNetwork

# a strongly correlated 4-D Gaussian (eigenvalues 0.017 .. 3.3)
COV = torch.tensor([[1.0, 0.9, 0.7, 0.5], [0.9, 1.0, 0.9, 0.7], [0.7, 0.9, 1.0, 0.9], [0.5, 0.7, 0.9, 1.0]])
MEAN = torch.tensor([0.5, -1.0, 0.0, 2.0])
KNOWN = torch.tensor([True, False, True, False])


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_unknown_entries_follow_the_conditional_gaussian() -> None:
    # Annealed inpainting from 3 to 0.02 (8 levels x 100 steps, eps 1e-3; alpha_1 = 22.5 stays
    # stable: < 4 (lambda_min + sigma_1^2) = 36). The conditional stds are 0.22 and 0.40, so with
    # 4,000 chains the SE of the means is 0.0034 and 0.0063; perturbing by sigma_L = 0.02
    # shifts the conditional mean by < 0.0013 and Langevin's discretisation leaves a
    # Gaussian's mean unbiased. Over 6 seeds: mean error (0.000, 0.003), largest 0.016;
    # tolerance 0.03 (4.7 SE).
    tgt = Gaussian(MEAN, COV)
    y = torch.tensor([[1.5, float("nan"), -0.5, float("nan")]]).expand(4000, 4)
    cond_mean, cond_cov = tgt.conditional(y[:1], KNOWN)
    sampler = AnnealedLangevin(step_size=1e-3, steps_per_level=100, init_range=(-3.0, 3.0))
    x = sampler.inpaint(ScoreFunction(TargetScoreNetwork(tgt)), y, KNOWN, sigmas=geometric_sigmas(3.0, 0.02, 8),
                        generator=gen(0))
    torch.testing.assert_close(x[:, ~KNOWN].mean(0), cond_mean[0, ~KNOWN], atol=0.03, rtol=0)
    # covariance: ULA inflates it by ~ eps / (4 * 0.033) = 0.8% (SE about 2.5% relative; measured <= 0.008)
    torch.testing.assert_close(torch.cov(x[:, ~KNOWN].T), cond_cov.float(), atol=0.02, rtol=0)
    assert torch.equal(x[:, KNOWN], y[:, KNOWN])


@pytest.mark.parametrize("as_float", [False, True])
def test_known_entries_come_back_exactly(as_float: bool) -> None:
    y = torch.randn(6, 4, generator=gen(0))
    mask = KNOWN.expand(6, 4)
    mask = mask.float() if as_float else mask
    x = AnnealedLangevin(step_size=0.01, steps_per_level=3).inpaint(
        StandardGaussianScore(), y, mask, sigmas=torch.tensor([1.0, 0.1]), generator=gen(0)
    )
    assert torch.equal(x[:, KNOWN], y[:, KNOWN])
    assert not torch.equal(x[:, ~KNOWN], y[:, ~KNOWN]) and torch.isfinite(x).all()


def test_mask_broadcasts_and_unknown_y_is_ignored() -> None:
    y = torch.randn(5, 4, generator=gen(0))
    y_nan = y.clone()
    y_nan[:, ~KNOWN] = float("nan")
    sampler = Langevin(step_size=0.01, n_steps=5, sigma=0.1)
    a = sampler.inpaint(StandardGaussianScore(), y, KNOWN.reshape(1, 4), generator=gen(0))
    b = sampler.inpaint(StandardGaussianScore(), y_nan, KNOWN, generator=gen(0))  # [D] mask for [B, D] data
    assert torch.equal(a, b)
    assert torch.equal(a[:, KNOWN], y[:, KNOWN])


def test_x_init_sets_the_start_of_unknown_entries() -> None:
    y = torch.zeros(3, 2)
    mask = torch.tensor([True, False])
    seen: list[torch.Tensor] = []

    class Spy(StandardGaussianScore):
        def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
            seen.append(x.clone())
            return super().forward(x, sigma)

    Langevin(n_steps=1).inpaint(Spy(), y, mask, x_init=torch.full((3, 2), 7.0), generator=gen(0))
    assert (seen[0][:, 1] == 7.0).all() and (seen[0][:, 0] == 0.0).all()  # projected before the first update
    # the sampler trusts x_init; the boundary that rejects it is the model (ScoreModel.inpaint)
    model = scorekit.compose(network=Spy(), estimator=None, sampler=Langevin(n_steps=1), sigmas=None)
    with pytest.raises(DataError, match="shape of y"):
        model.inpaint(y, mask, x_init=torch.zeros(3, 3))


def test_same_seed_same_inpainting() -> None:
    y = torch.randn(4, 3, generator=gen(0))
    mask = torch.tensor([True, False, False])
    run = lambda seed: AnnealedLangevin(steps_per_level=4, step_size=0.01).inpaint(  # noqa: E731
        StandardGaussianScore(), y, mask, sigmas=torch.tensor([1.0, 0.5]), generator=gen(seed)
    )
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


def test_bad_masks_and_data() -> None:
    # the sampler trusts its mask and y; the boundary that checks them is the model (ScoreModel.inpaint)
    y = torch.zeros(4, 3)
    model = scorekit.compose(network=StandardGaussianScore(), estimator=None, sampler=Langevin(n_steps=1), sigmas=None)
    with pytest.raises(DataError, match=r"mask of shape \(2,\) .* y of shape \(4, 3\)"):
        model.inpaint(y, torch.ones(2, dtype=torch.bool))
    with pytest.raises(DataError, match=r"mask of shape \(8, 3\)"):
        model.inpaint(y, torch.ones(8, 3, dtype=torch.bool))
    with pytest.raises(DataError, match="0 and 1"):
        model.inpaint(y, torch.full((4, 3), 0.5))
    y_bad = y.clone()
    y_bad[0, 0] = float("nan")
    with pytest.raises(DataError, match="known entries"):
        model.inpaint(y_bad, torch.ones(4, 3, dtype=torch.bool))


@st.composite
def data_and_mask(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    # each mask dim is either the data's or 1 (broadcast); leading dims may be dropped
    mask_shape = [draw(st.sampled_from([n, 1])) for n in shape][draw(st.integers(0, len(shape) - 1)):]
    numel = 1
    for n in mask_shape:
        numel *= n
    bits = draw(st.lists(st.booleans(), min_size=numel, max_size=numel))
    seed = draw(st.integers(0, 2**16))
    y = torch.randn(shape, generator=gen(seed)) * 3
    return y, torch.tensor(bits, dtype=torch.bool).reshape(mask_shape)


@settings(max_examples=40, deadline=None)
@given(data_and_mask(), st.booleans())
def test_any_shape_and_mask_keeps_known_entries_exact(case: tuple[torch.Tensor, torch.Tensor], annealed: bool) -> None:
    y, mask = case
    if annealed:
        sampler = AnnealedLangevin(step_size=0.05, steps_per_level=2)
        x = sampler.inpaint(StandardGaussianScore(), y, mask, sigmas=torch.tensor([1.0, 0.3]), generator=gen(0))
    else:
        x = Langevin(step_size=0.05, n_steps=3, sigma=0.3).inpaint(StandardGaussianScore(), y, mask, generator=gen(0))
    full = mask.expand(y.shape)
    assert x.shape == y.shape
    assert torch.equal(x[full], y[full])
