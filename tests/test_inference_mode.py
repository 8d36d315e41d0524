"""Sampling runs under torch.inference_mode() for a plain score network (issue 16), under torch.no_grad()
for one whose score needs autograd, and returns ordinary tensors either way."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import scorekit
from scorekit.errors import CompositionError
from scorekit.plugins import PluginHost
from scorekit.samplers import HMC, AnnealedHMC, AnnealedLangevin, Langevin
from scorekit.score import ScoreFunction, ordinary, sampling_mode
from scorekit.sigmas import geometric_sigmas

SIGMAS = geometric_sigmas(1.0, 0.1, 4)

#: small, fast options for every built-in sampler (score-only networks: no Metropolis test)
SAMPLERS: dict[str, dict[str, Any]] = {
    "langevin": {"n_steps": 3, "step_size": 1e-3},
    "annealed_langevin": {"steps_per_level": 2},
    "hmc": {"n_warmup": 2, "n_steps": 2, "n_leapfrog": 2, "step_size": 0.01, "metropolis": False},
    "annealed_hmc": {"steps_per_level": 2, "n_leapfrog": 2, "metropolis": False},
    "consistent_annealed": {"step_size": 0.6},
    "predictor_corrector": {},
}


class Spy(nn.Module):
    """Wraps a network; records whether inference mode was on at each call (forward and energy)."""

    def __init__(self, net: nn.Module, *, declare: bool | None = None) -> None:
        super().__init__()
        self.net = net
        self.modes: list[bool] = []
        if declare is not None:
            self.score_needs_autograd = declare
        if callable(getattr(net, "energy", None)):
            self.energy = self._energy

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        self.modes.append(torch.is_inference_mode_enabled())
        return self.net(x, sigma)

    def _energy(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        self.modes.append(torch.is_inference_mode_enabled())
        return self.net.energy(x, sigma)


def composed(sampler: str, options: dict[str, Any], network: str = "mlp") -> scorekit.ScoreModel:
    torch.manual_seed(0)
    model = scorekit.compose(network=network, network_options={"dim": 2, "hidden": 16, "depth": 2},
                             estimator=None, sampler=sampler, sampler_options=options, sigmas=SIGMAS)
    return model.materialize(torch.zeros(1, 2))


def run(model: scorekit.ScoreModel, spy: Spy, seed: int = 1) -> torch.Tensor:
    view = model.with_network(spy)
    x_init = view.initial_noise(torch.empty(6, 2), torch.Generator().manual_seed(seed))
    return view.sample(x_init, generator=torch.Generator().manual_seed(seed + 1))


def test_every_builtin_sampler_is_covered() -> None:
    assert sorted(SAMPLERS) == sorted(PluginHost(autoload=False).names("sampler"))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_plain_network_runs_under_inference_mode(name: str) -> None:
    model = composed(name, SAMPLERS[name])
    spy = Spy(model.network)
    x = run(model, spy)
    assert spy.modes and all(spy.modes), spy.modes
    assert not x.is_inference()
    x.add_(1.0)  # an in-place op outside inference mode fails on an inference tensor
    assert x.requires_grad_(True).requires_grad


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_inference_mode_gives_the_no_grad_samples(name: str) -> None:
    model = composed(name, SAMPLERS[name])
    plain, declared = Spy(model.network), Spy(model.network, declare=True)
    a, b = run(model, plain), run(model, declared)
    assert all(plain.modes) and declared.modes and not any(declared.modes)  # the two runs took the two modes
    assert torch.equal(a, b)


@pytest.mark.parametrize("sampler, options", [
    ("hmc", {"n_warmup": 3, "n_steps": 3, "n_leapfrog": 2, "step_size": 0.05}),
    ("hmc", {"n_warmup": 3, "n_steps": 3, "n_leapfrog": 2, "step_size": 0.05, "metropolis": False}),
    ("annealed_hmc", {"steps_per_level": 2, "n_leapfrog": 2}),
    ("langevin", {"n_steps": 3, "step_size": 1e-3}),
    ("annealed_langevin", {"steps_per_level": 2}),
])
def test_energy_network_samples_without_inference_mode(sampler: str, options: dict[str, Any]) -> None:
    model = composed(sampler, options, network="energy_mlp")
    spy = Spy(model.network)
    assert ScoreFunction(spy).has_energy
    x = run(model, spy)
    assert spy.modes and not any(spy.modes)
    assert torch.isfinite(x).all() and not x.is_inference()
    x.mul_(2.0)


def test_hmc_summary_holds_ordinary_tensors() -> None:
    model = composed("hmc", {"n_warmup": 20, "n_steps": 2, "n_leapfrog": 2, "step_size": 0.01, "metropolis": False,
                             "mass_matrix": "diagonal"})
    score = ScoreFunction(Spy(model.network))
    seen: list[Any] = []
    x, summary = model.sampler.run(score, torch.randn(6, 2, generator=torch.Generator().manual_seed(0)),
                                   sigmas=model.sigmas, generator=torch.Generator().manual_seed(1), callback=seen.append)
    assert all(score.network.modes)
    assert seen[-1].x.is_inference()  # what the callback gets during the run may be an inference tensor
    assert seen[-1].summary is summary
    assert summary.inverse_mass is not None and not summary.inverse_mass.is_inference()
    assert not x.is_inference()
    summary.inverse_mass.add_(1.0)


@pytest.mark.parametrize("sampler", [AnnealedLangevin(steps_per_level=2), AnnealedHMC(steps_per_level=2, n_leapfrog=2,
                                                                                        metropolis=False)])
def test_inpainting_returns_an_ordinary_tensor(sampler: Any) -> None:
    model = composed("annealed_langevin", {})
    spy = Spy(model.network)
    y = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 0]])
    x = sampler.inpaint(ScoreFunction(spy), y, mask, sigmas=SIGMAS, generator=torch.Generator().manual_seed(1))
    assert all(spy.modes) and not x.is_inference()
    assert torch.equal(x[:, 0], y[:, 0])
    x.zero_()


class AutogradScore(nn.Module):
    """A score computed with autograd inside forward, undeclared, in three ways that inference mode breaks."""

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.variant = variant

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        if self.variant == "enable_grad":  # autograd records nothing in inference mode: "no grad_fn"
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(0.5 * self.lin(xg).pow(2).sum(), xg)
            return -g
        with torch.inference_mode(False), torch.enable_grad():
            if self.variant == "requires_grad":  # "Setting requires_grad=True on inference tensor ..."
                xg = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(0.5 * self.lin(xg).pow(2).sum(), xg)
                return -g
            d = torch.zeros_like(x, requires_grad=True)  # "Inference tensors cannot be saved for backward"
            (g,) = torch.autograd.grad(0.5 * (x * (1.0 + d)).pow(2).sum(), d)
            return -g / (1.0 + x.abs())


@pytest.mark.parametrize("variant", ["enable_grad", "requires_grad", "saved_for_backward"])
@pytest.mark.parametrize("sampler", [Langevin(n_steps=2, step_size=1e-3), AnnealedLangevin(steps_per_level=1),
                                     HMC(n_warmup=1, n_steps=1, n_leapfrog=1, metropolis=False)])
def test_undeclared_autograd_gives_a_clear_error(variant: str, sampler: Any) -> None:
    net = AutogradScore(variant)
    x_init = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(CompositionError, match=r"score_needs_autograd = True") as info:
        sampler(ScoreFunction(net, label="network 'autograd'"), x_init, sigmas=SIGMAS)
    assert "network 'autograd'" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    net.score_needs_autograd = True  # the fix the message names
    x = sampler(ScoreFunction(net), x_init, sigmas=SIGMAS, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(x).all() and not x.is_inference()


def test_sampling_mode_follows_the_declaration() -> None:
    plain, energy = nn.Linear(2, 2), composed("langevin", {}, network="energy_mlp").network
    assert isinstance(sampling_mode(plain), torch.inference_mode)
    assert isinstance(sampling_mode(ScoreFunction(energy)), torch.no_grad)
    plain.score_needs_autograd = True
    assert isinstance(sampling_mode(plain), torch.no_grad)
    energy.score_needs_autograd = False  # an energy network whose score is analytic may say so
    assert isinstance(sampling_mode(energy), torch.inference_mode)


def test_ordinary() -> None:
    with torch.inference_mode():
        t = torch.ones(3)
        inner = ordinary(t)  # inference mode off for the clone, even inside a caller's inference_mode
    assert t.is_inference() and not inner.is_inference()
    out = ordinary(t)
    assert not out.is_inference() and torch.equal(out, t)
    normal = torch.ones(3)
    assert ordinary(normal) is normal and ordinary(None) is None


def test_template_sampler_runs_under_inference_mode() -> None:
    template = pytest.importorskip("scorekit_plugin_template.predictor_corrector")
    model = composed("langevin", {})
    spy = Spy(model.network)
    x = template.PredictorCorrector()(ScoreFunction(spy), torch.randn(4, 2), sigmas=SIGMAS,
                                       generator=torch.Generator().manual_seed(0))
    assert spy.modes and all(spy.modes) and not x.is_inference()
