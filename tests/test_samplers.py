"""Langevin and annealed Langevin: correctness on analytic targets, the shared interface, errors."""

from __future__ import annotations

import ast
import pathlib

import attrs
import pluggy
import pytest
import torch
from torch import nn

import scorekit
import scorekit.builtin
import scorekit.hookspecs
from scorekit.errors import CompositionError, DataError, DivergenceError
from scorekit.samplers import (
    HMC,
    AnnealedHMC,
    AnnealedLangevin,
    ConsistentAnnealed,
    Langevin,
    PredictorCorrector,
    SamplerStep,
)
from scorekit.score import ScoreFunction
from scorekit.sigmas import geometric_sigmas
from scorekit.targets import Gaussian, TargetEnergyNetwork, TargetScoreNetwork, paper_mixture

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY_SIGMAS = geometric_sigmas(20.0, 1.0, 10)  # Fig. 3


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def frac_near_heavy_mode(x: torch.Tensor) -> float:
    """Fraction of samples nearer (5, 5) than (-5, -5)."""
    return ((x - 5.0).norm(dim=1) < (x + 5.0).norm(dim=1)).float().mean().item()


class Counting(nn.Module):
    """Wraps a network and counts its calls."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        self.calls += 1
        return self.net(x, sigma)


# --- architecture ----------------------------------------------------------------------


def test_registered_through_the_hook() -> None:
    pm = pluggy.PluginManager(scorekit.hookspecs.PROJECT)
    pm.add_hookspecs(scorekit.hookspecs)
    pm.register(scorekit.builtin)
    pm.check_pending()
    found: dict[str, object] = {}
    pm.hook.register_samplers(register=lambda name, factory, *, replace=False: found.setdefault(name, factory))
    assert found == {"langevin": Langevin, "annealed_langevin": AnnealedLangevin, "hmc": HMC,
                     "annealed_hmc": AnnealedHMC, "consistent_annealed": ConsistentAnnealed,
                     "predictor_corrector": PredictorCorrector}


@pytest.mark.parametrize("package", ["samplers", "targets"])
def test_algorithm_modules_do_not_import_plugin_machinery(package: str) -> None:
    for path in (ROOT / "scorekit" / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            for name in names:
                assert not name.startswith(("pluggy", "scorekit.hookspecs", "scorekit.builtin")), (path, name)


def test_options_are_frozen_validated_attrs() -> None:
    for cls in (Langevin, AnnealedLangevin, HMC):
        assert attrs.has(cls)
        sampler = cls()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            sampler.step_size = 1.0  # type: ignore[misc]
        with pytest.raises(ValueError, match="'step_size'"):
            cls(step_size=0.0)
        with pytest.raises(TypeError, match="positional"):
            cls(0.1)  # keyword-only
    with pytest.raises(ValueError, match="'init_range'"):
        Langevin(init_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="'clamp'"):
        AnnealedLangevin(clamp=(0.0,))
    with pytest.raises(ValueError, match="'mass_matrix'.*identity"):
        HMC(mass_matrix="dense")
    assert AnnealedLangevin().step_size == 2e-5 and AnnealedLangevin().steps_per_level == 100  # the paper's
    assert Langevin(clamp=[0, 1]).clamp == (0, 1)


# --- correctness ---------------------------------------------------------------------


def test_annealed_langevin_recovers_the_mode_weights_of_fig3() -> None:
    # 4 x 1,280 chains in one batch. A correct sampler averages about 0.78 (measured over
    # seeds: 0.777-0.793 pooled) and the pooled SE is sqrt(.8 * .2 / 5120) = 0.006, so
    # 0.8 +- 0.04 leaves more than 3 SE around the sampler's own slight bias.
    score = ScoreFunction(TargetScoreNetwork(paper_mixture()))
    sampler = AnnealedLangevin(step_size=0.1, steps_per_level=100, init_range=(-8.0, 8.0))
    g = gen(0)
    x = sampler(score, sampler.initial_noise(torch.empty(4 * 1280, 2), g), sigmas=TOY_SIGMAS, generator=g)
    assert abs(frac_near_heavy_mode(x) - 0.8) < 0.04


def test_plain_langevin_gets_the_mode_weights_wrong() -> None:
    # eps 0.1, T 1000 from uniform [-8, 8]^2: chains stay in the basin they start in, so
    # about half go to each mode (measured 0.50-0.51); the paper's Fig. 3 failure.
    score = ScoreFunction(TargetScoreNetwork(paper_mixture()))
    sampler = Langevin(step_size=0.1, n_steps=1000, init_range=(-8.0, 8.0))
    g = gen(0)
    x = sampler(score, sampler.initial_noise(torch.empty(1280, 2), g), sigmas=None, generator=g)
    assert abs(frac_near_heavy_mode(x) - 0.8) > 0.15
    assert abs(frac_near_heavy_mode(x) - 0.5) < 0.06  # SE 0.014


def test_langevin_recovers_a_correlated_gaussian() -> None:
    # eps 0.02: the discretisation inflates variances by about eps / (4 lambda_min) = 1%;
    # 1,000 steps are ~7 relaxation times (2 lambda_max / eps = 150 steps). With 4,000
    # chains the SE of a mean is <= 0.02 and of a covariance entry <= 0.035.
    cov = torch.tensor([[1.5, 0.5], [0.5, 1.0]])
    mean = torch.tensor([2.0, -1.0])
    score = ScoreFunction(TargetScoreNetwork(Gaussian(mean, cov)))
    g = gen(0)
    x = Langevin(step_size=0.02, n_steps=1000)(score, torch.randn(4000, 2, generator=g), sigmas=None, generator=g)
    torch.testing.assert_close(x.mean(0), mean, atol=0.08, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.12, rtol=0)


def test_langevin_feeds_the_smallest_sigma_or_its_option() -> None:
    seen: list[torch.Tensor | None] = []

    class Spy(nn.Module):
        def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
            seen.append(sigma)
            return -x

    x = torch.zeros(3, 2, dtype=torch.float64)
    Langevin(n_steps=1)(Spy(), x, sigmas=torch.tensor([1.0, 0.1]))
    Langevin(n_steps=1, sigma=0.5)(Spy(), x, sigmas=torch.tensor([1.0, 0.1]))
    Langevin(n_steps=1)(Spy(), x, sigmas=None)
    assert seen[0] is not None and seen[0].dtype == torch.float64 and seen[0].tolist() == pytest.approx([0.1] * 3)
    assert seen[1] is not None and seen[1].tolist() == [0.5] * 3
    assert seen[2] is None


def test_annealed_needs_sigmas() -> None:
    score = ScoreFunction(TargetScoreNetwork(paper_mixture()))
    with pytest.raises(CompositionError, match="sigmas"):
        AnnealedLangevin().validate_composition(score, None)
    with pytest.raises(CompositionError, match="sigmas"):
        AnnealedLangevin()(score, torch.zeros(2, 2), sigmas=None)
    Langevin().validate_composition(score, None)  # fine without


def test_clamp_and_final_denoise() -> None:
    score = ScoreFunction(TargetScoreNetwork(Gaussian([0.0], [[1.0]])))
    x = Langevin(step_size=1.0, n_steps=20, clamp=(-0.5, 0.5))(score, torch.zeros(100, 1), generator=gen(0))
    assert x.min() >= -0.5 and x.max() <= 0.5
    sigmas = torch.tensor([1.0, 0.5])
    base = AnnealedLangevin(step_size=0.01, steps_per_level=5)
    x_plain = base(score, torch.zeros(4, 1), sigmas=sigmas, generator=gen(1))
    x_denoised = attrs.evolve(base, final_denoise=True)(score, torch.zeros(4, 1), sigmas=sigmas, generator=gen(1))
    torch.testing.assert_close(x_denoised, x_plain + 0.25 * score(x_plain, torch.full((4,), 0.5)))


def test_initial_noise_is_uniform_in_range() -> None:
    x = AnnealedLangevin(init_range=(-8.0, 8.0)).initial_noise(torch.empty(5000, 2, dtype=torch.float64), gen(0))
    assert x.dtype == torch.float64 and x.min() >= -8 and x.max() < 8
    assert abs(x.mean().item()) < 0.3  # SE 16 / sqrt(12 * 10000) = 0.05
    default = Langevin().initial_noise(torch.empty(100, 3), gen(0))
    assert default.min() >= 0 and default.max() < 1


# --- the shared interface --------------------------------------------------------------


def _score_energy() -> ScoreFunction:
    return ScoreFunction(TargetEnergyNetwork(Gaussian([0.0, 1.0], [[1.0, 0.3], [0.3, 0.5]])))


SAMPLERS = {
    "langevin": (Langevin(step_size=0.05, n_steps=20), None),
    "annealed_langevin": (AnnealedLangevin(step_size=0.01, steps_per_level=5), torch.tensor([2.0, 1.0, 0.5])),
    "hmc": (HMC(n_warmup=20, n_steps=10, n_leapfrog=3), None),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_seeded_runs_repeat_and_seeds_differ(name: str) -> None:
    sampler, sigmas = SAMPLERS[name]
    x0 = torch.randn(16, 2, generator=gen(123))
    a = sampler(_score_energy(), x0, sigmas=sigmas, generator=gen(0))
    b = sampler(_score_energy(), x0, sigmas=sigmas, generator=gen(0))
    c = sampler(_score_energy(), x0, sigmas=sigmas, generator=gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x0.shape and torch.isfinite(a).all()
    assert torch.equal(x0, torch.randn(16, 2, generator=gen(123)))  # x_init untouched


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_rank_agnostic(name: str) -> None:
    sampler, sigmas = SAMPLERS[name]
    score = ScoreFunction(TargetEnergyNetwork(Gaussian(torch.zeros(12), torch.eye(12))))
    x = sampler(score, torch.randn(3, 2, 3, 2, generator=gen(0)), sigmas=sigmas, generator=gen(0))
    assert x.shape == (3, 2, 3, 2)


def test_annealed_callback_fields() -> None:
    sigmas = torch.tensor([4.0, 2.0, 1.0])
    infos: list[SamplerStep] = []
    sampler = AnnealedLangevin(step_size=0.1, steps_per_level=3, final_denoise=True)
    out = sampler(_score_energy(), torch.zeros(5, 2), sigmas=sigmas, generator=gen(0), callback=infos.append)
    assert [i.step for i in infos] == list(range(10))
    assert [i.level for i in infos] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert [i.sigma for i in infos[:9:3]] == [4.0, 2.0, 1.0]
    assert [i.step_size for i in infos[:9:3]] == pytest.approx([1.6, 0.4, 0.1])  # alpha_i = eps sigma_i^2 / sigma_L^2
    assert infos[-1].step_size == 1.0  # the denoising step x + sigma_L^2 s
    assert all(isinstance(i.score_norm, float) and i.score_norm > 0 for i in infos)
    assert all(i.acceptance_rate is None and not i.warmup and i.divergent is None for i in infos)
    assert torch.equal(infos[-1].x, out)
    assert not torch.equal(infos[0].x, infos[1].x)  # each step hands over its own tensor


def test_langevin_callback_fields() -> None:
    infos: list[SamplerStep] = []
    Langevin(step_size=0.1, n_steps=4)(_score_energy(), torch.zeros(5, 2), generator=gen(0), callback=infos.append)
    assert [(i.step, i.level, i.sigma, i.step_size) for i in infos] == [(t, None, None, 0.1) for t in range(4)]


def test_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    Langevin(n_steps=3, progress=True)(_score_energy(), torch.zeros(2, 2), generator=gen(0))
    assert "3/3" in capsys.readouterr().err


# --- errors ----------------------------------------------------------------------------


def test_divergence_is_reported_early_with_chains_and_step() -> None:
    # N(0, 0.01 I) with eps 10: each step multiplies x by about -500, so float32 overflows within ~15 steps
    net = Counting(TargetScoreNetwork(Gaussian([0.0, 0.0], [[0.01, 0.0], [0.0, 0.01]])))
    with pytest.raises(DivergenceError, match=r"chains \[0, 1, 2, 3\].*step \d+"):
        Langevin(step_size=10.0, n_steps=1000)(net, torch.full((4, 2), 0.1), generator=gen(0))
    assert net.calls <= 50  # stopped at the first check, not after 1,000 steps


def test_divergence_names_only_the_bad_chains_and_the_level() -> None:
    class InfForChain2AtLevel1(nn.Module):
        def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
            s = -x.clone()
            if sigma is not None and sigma[0] == 1.0:
                s[2] = float("inf")
            return s

    with pytest.raises(DivergenceError, match=r"chains \[2\] .*step 5 \(level 1, sigma 1\)"):
        AnnealedLangevin(step_size=0.1, steps_per_level=5)(
            InfForChain2AtLevel1(), torch.zeros(4, 3), sigmas=torch.tensor([2.0, 1.0]), generator=gen(0)
        )


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_bad_x_init(name: str) -> None:
    # samplers trust x_init; the boundary that rejects it is the model (ScoreModel.sample)
    sampler, sigmas = SAMPLERS[name]
    model = scorekit.compose(network=_score_energy().network, estimator=None, sampler=sampler, sigmas=sigmas)
    with pytest.raises(DataError, match="NaN"):
        model.sample(torch.tensor([[0.0, float("nan")]]), generator=gen(0))
    with pytest.raises(DataError, match="non-empty"):
        model.sample(torch.zeros(0, 2), generator=gen(0))


def test_network_with_wrong_output_shape() -> None:
    with pytest.raises(DataError, match=r"returned shape \(2, 1\) for input of shape \(2, 2\)"):
        Langevin(n_steps=1)(lambda x, sigma: x[:, :1], torch.zeros(2, 2))
