"""``--preset auto``: NCSNv2's rules (Song & Ermon 2020) as functions, the time plan, and the derived configs."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import scorekit
from scorekit.errors import DataError, OptionError
from scorekit.plugins import PluginHost
from scorekit.training import RunConfig, build_model
from scorekit_ncsn import auto, plugin, presets


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# --- technique 1 ---------------------------------------------------------------------------------

def test_sigma_1_is_the_exact_largest_distance_on_small_data():
    images = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert auto.max_pairwise_distance(images) == pytest.approx(scorekit.ncsnv2_sigma_max(images), rel=1e-6)


def test_sigma_1_estimate_is_within_a_few_percent_on_larger_data():
    images = torch.rand(2500, 784, generator=torch.Generator().manual_seed(1)) ** 2
    exact = scorekit.ncsnv2_sigma_max(images)
    estimate = auto.max_pairwise_distance(images)
    assert exact * 0.97 <= estimate <= exact * (1 + 1e-6)


def test_sigma_1_finds_a_far_pair_that_no_random_anchor_hits():
    """The ends of the largest distance are found through the images farthest from the anchors, not by luck."""
    images = 0.4 + 0.2 * torch.rand(3000, 784, generator=torch.Generator().manual_seed(2))
    images[1234], images[2345] = 0.0, 1.0  # the farthest pair: distance sqrt(784) = 28
    estimate = auto.max_pairwise_distance(images, n_anchors=20, n_candidates=5, seed=3)
    assert estimate == pytest.approx(28.0, rel=1e-9)


def test_sigma_1_needs_two_images():
    with pytest.raises(DataError, match="at least 2 images, got 1"):
        auto.max_pairwise_distance(torch.rand(1, 4))


# --- technique 2 ---------------------------------------------------------------------------------

@given(st.integers(5, 1_000_000))
def test_gamma_solves_the_technique_2_equation(dim):
    gamma = auto.noise_ratio(dim)
    k = math.sqrt(2 * dim)
    assert gamma > 1
    assert _phi(k * (gamma - 1) + 3 * gamma) - _phi(k * (gamma - 1) - 3 * gamma) == pytest.approx(0.5, abs=1e-7)


def test_gamma_for_known_dimensions():
    assert auto.noise_ratio(64) == pytest.approx(1.36, abs=0.005)  # digits: docs/results.md's 1.36
    assert auto.noise_ratio(784) == pytest.approx(1.082, abs=0.001)  # 28 x 28 grayscale
    assert auto.noise_ratio(3072) == pytest.approx(1.040, abs=0.001)  # 32 x 32 RGB


@given(st.integers(5, 200_000), st.integers(1, 200_000))
def test_levels_grow_with_the_dimension(dim, extra):
    small, large = (auto.num_levels(30.0, 0.01, auto.noise_ratio(d)) for d in (dim, dim + extra))
    assert large >= small


def test_levels_for_images():
    levels = [auto.num_levels(30.0, 0.01, auto.noise_ratio(d)) for d in (64, 784, 3072, 12288)]
    assert levels == sorted(levels) and len(set(levels)) == 4


@given(st.floats(0.05, 500.0), st.floats(1.001, 3.0))
def test_the_schedule_ratio_is_at_most_gamma_with_the_fewest_levels(first, gamma):
    n = auto.num_levels(first, 0.01, gamma)
    assert auto.schedule_ratio(first, 0.01, n) <= gamma * (1 + 1e-9)
    if n > 2:
        assert auto.schedule_ratio(first, 0.01, n - 1) > gamma


def test_dimension_and_sigma_errors():
    with pytest.raises(OptionError, match="D to be an integer >= 5, got 4"):
        auto.noise_ratio(4)
    with pytest.raises(DataError, match="all the same"):
        auto.num_levels(0.005, 0.01, 1.1)


# --- technique 4 ---------------------------------------------------------------------------------

@given(st.floats(1.01, 3.0), st.integers(1, 50))
def test_epsilon_minimises_the_variance_ratio(gamma, steps):
    """Technique 4: Eq. 4 of NCSNv2 (its ratio exceeds 1 everywhere) is closest to 1 at the derived epsilon."""
    eps = auto.langevin_step_size(gamma=gamma, sigma_last=0.01, steps=steps)
    best = auto.variance_ratio(eps, gamma=gamma, sigma_last=0.01, steps=steps)
    grid = np.linspace(1e-4, 2.0, 2001) * 0.01**2
    ratios = [auto.variance_ratio(float(e), gamma=gamma, sigma_last=0.01, steps=steps) for e in grid]
    assert min(ratios) > 1
    assert best <= min(ratios) + 1e-12


def test_epsilon_is_ncsnv2s_for_cifar10():
    """NCSNv2's CIFAR-10: sigmas 50 -> 0.01 in 232 levels, T = 5, step_lr 6.2e-6 for its update
    x + alpha s + sqrt(2 alpha) z; scorekit's x + alpha/2 s + sqrt(alpha) z takes twice that."""
    eps = auto.langevin_step_size(gamma=auto.schedule_ratio(50.0, 0.01, 232), sigma_last=0.01, steps=5)
    assert eps / 2 == pytest.approx(6.2e-6, rel=0.01)


class PointMass(nn.Module):
    """The score of data at the single point 0 perturbed by sigma: N(0, sigma^2 I)."""

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return -x / sigma.reshape(-1, 1) ** 2


@pytest.mark.parametrize(("gamma", "steps"), [(1.5, 3), (1.08, 5)])
def test_the_variance_ratio_is_what_scorekits_sampler_does(gamma, steps):
    """Proposition 3 in scorekit's convention, checked on annealed_langevin itself: the chains start at level 0
    with variance (gamma sigma_0)^2 and are measured after its T steps."""
    eps = auto.langevin_step_size(gamma=gamma, sigma_last=0.01, steps=steps)
    model = scorekit.compose(network=PointMass(), estimator=None, sampler="annealed_langevin", sigmas=[0.5, 0.01],
                             sampler_options={"step_size": eps, "steps_per_level": steps})
    gen = torch.Generator().manual_seed(0)
    x_init = gamma * 0.5 * torch.randn(200_000, 1, generator=gen, dtype=torch.float64)
    ends = []
    model.sample(x_init, generator=gen, callback=lambda info: ends.append(info.x) if info.level == 0 else None)
    measured = ends[-1].var().item() / 0.5**2
    assert len(ends) == steps
    assert measured == pytest.approx(auto.variance_ratio(eps, gamma=gamma, sigma_last=0.01, steps=steps), rel=0.01)


def test_step_size_errors():
    with pytest.raises(OptionError, match="gamma > 1"):
        auto.langevin_step_size(gamma=1.0, sigma_last=0.01, steps=5)
    with pytest.raises(OptionError, match="integer >= 1, got 0"):
        auto.langevin_step_size(gamma=1.1, sigma_last=0.01, steps=0)


# --- the network and the time plan ---------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 8, 16, 28, 32, 64, 128])
def test_network_covers_the_image(size):
    ngf, dilations = auto.network_shape(size)
    assert auto.receptive_field(dilations) >= size and len(dilations) >= 4
    assert ngf == (48 if size <= 16 else 64)
    assert auto.network_shape(8) == (48, (1, 1, 1, 1))  # ncsn-digits' network


@pytest.mark.parametrize("dilations", [(1,), (1, 1, 1, 1), (1, 2, 4, 1), (1, 2, 4, 8, 16)])
def test_receptive_field_is_that_of_cond_resnets_convolutions(dilations):
    """Stem, two convolutions per block, head: the support of an output pixel's input gradient."""
    convs = [nn.Conv2d(1, 1, 3, padding=1)]
    for d in dilations:
        convs += [nn.Conv2d(1, 1, 3, padding=d, dilation=d), nn.Conv2d(1, 1, 3, padding=d, dilation=d)]
    convs.append(nn.Conv2d(1, 1, 3, padding=1))
    for conv in convs:
        nn.init.constant_(conv.weight, 1.0)
    size = 2 * auto.receptive_field(dilations) + 1
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    nn.Sequential(*convs)(x)[0, 0, size // 2, size // 2].backward()
    support = (x.grad[0, 0].abs() > 0).any(dim=0).sum().item()
    assert support == auto.receptive_field(dilations)


def _costs(per_example: float, step: float = 0.1) -> auto.Costs:
    return auto.Costs(small=16, small_s=16 * per_example, large=500, large_s=500 * per_example, step_s=step,
                      load_s=2.0)


def test_the_plan_fits_the_total():
    costs = _costs(1e-4)
    plan = auto.plan_run(costs, total_s=1800, elapsed_s=20, levels=92, n_images=50_000)
    assert (plan.steps_per_level, plan.n_samples, plan.sample_batch) == (5, 1000, 500)
    assert plan.sampling_s == pytest.approx(1000 * (92 * 5 + 1) * 1e-4)
    assert plan.n_holdout == 2500
    assert 20 + plan.time_budget + plan.reserved_s == pytest.approx(1800, abs=1)
    assert plan.reserved_s >= auto.MARGIN * (plan.sampling_s + plan.evaluation_s)
    assert plan.estimated_steps == int(plan.time_budget / 0.1)
    assert plan.eval_every % plan.checkpoint_every == 0


def test_a_slow_machine_draws_fewer_samples_then_fewer_steps_per_level():
    slow = auto.plan_run(_costs(2e-3), total_s=1800, elapsed_s=20, levels=92, n_images=50_000)
    assert slow.steps_per_level == 5 and 100 <= slow.n_samples < 1000
    assert auto.MARGIN * slow.sampling_s <= auto.SAMPLING_SHARE * 1780
    assert slow.n_holdout < 2500  # the held-out Eq. 6 at 92 levels would take too long
    slower = auto.plan_run(_costs(1e-2), total_s=1800, elapsed_s=20, levels=92, n_images=50_000)
    assert slower.steps_per_level < 5 and slower.n_samples >= 100


def test_a_total_too_small_is_a_clear_error():
    with pytest.raises(OptionError, match=r"set preset.total_time to at least \d+"):
        auto.plan_run(_costs(1e-2), total_s=120, elapsed_s=20, levels=92, n_images=50_000)


# --- the preset ----------------------------------------------------------------------------------

@pytest.fixture
def ncsn_host():
    host = PluginHost(autoload=False)
    host.register_plugin(plugin, "scorekit-ncsn")
    return host


@pytest.fixture
def fixed_costs(monkeypatch):
    """Costs of a fast machine instead of timing the network here (the tests stay fast and deterministic)."""
    monkeypatch.setattr(presets, "_auto_step_seconds", lambda *args: 0.05)
    monkeypatch.setattr(presets, "_auto_costs", lambda *args: _costs(1e-4, step=0.05))


def write_folder(root, n, size, mode, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    for i in range(n):
        sub = root / f"class{i % 2}"  # class sub-folders: labels are ignored
        sub.mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((size, size, channels)) * 255).astype(np.uint8)
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(sub / f"{i}.png")
    return root


def test_auto_without_data_is_a_clear_error(ncsn_host):
    from scorekit.cli.config_files import resolve

    message = r"^--preset auto derives its configuration from your images: pass --data DIR$"
    with pytest.raises(OptionError, match=message):
        resolve(ncsn_host, "auto")


@pytest.mark.parametrize(("size", "mode", "channels"), [(28, "L", 1), (32, "RGB", 3)])
def test_the_derived_config_is_valid_and_trains(tmp_path, ncsn_host, fixed_costs, caplog, size, mode, channels):
    from PIL import Image

    from scorekit.cli import outputs
    from scorekit.cli.config_files import resolve

    folder = write_folder(tmp_path / "images", 24, size, mode)
    with caplog.at_level(logging.INFO, logger="scorekit.auto"):
        cfg = resolve(ncsn_host, "auto", data=str(folder))
    assert isinstance(cfg, RunConfig) and cfg.data.name == "folder" and cfg.data.root == str(folder)
    images = outputs.stack(outputs.load_dataset(ncsn_host, cfg.data, train=True))
    held = outputs.load_dataset(ncsn_host, cfg.data, train=False)
    assert images.shape[1:] == (channels, size, size) and len(held) + images.shape[0] == 24
    dim = channels * size * size
    sigmas = cfg.model.sigmas
    every = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert(mode), dtype=np.float32) / 255)
                         for p in sorted(folder.rglob("*.png"))])
    assert sigmas.first >= scorekit.ncsnv2_sigma_max(every) >= sigmas.first * 0.99  # technique 1, from all images
    assert sigmas.n == auto.num_levels(sigmas.first, 0.01, auto.noise_ratio(dim)) and sigmas.last == 0.01
    options = cfg.model.sampler_options
    ratio = auto.schedule_ratio(sigmas.first, sigmas.last, sigmas.n)
    assert options["step_size"] == pytest.approx(
        auto.langevin_step_size(gamma=ratio, sigma_last=0.01, steps=options["steps_per_level"]), rel=1e-3)
    assert cfg.model.network_options["channels"] == channels and cfg.model.network_options["activation"] == "silu"
    assert cfg.train.ema_decay == 0.999 and cfg.train.time_budget > 0 and cfg.train.n_iters >= 100_000
    text = caplog.text
    assert f"sigma_1 = {sigmas.first:.4g} (largest pairwise distance" in text
    assert f"L = {sigmas.n} levels" in text and "technique 2" in text and "technique 4" in text
    assert "train.time_budget" in text

    model = build_model(cfg, ncsn_host)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    loss = model.loss(images[:4], generator=torch.Generator().manual_seed(0))
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def test_data_options_reach_the_derivation(tmp_path, ncsn_host, fixed_costs):
    from PIL import Image

    from scorekit.cli.config_files import resolve

    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(12):
        side = 20 if i % 2 else 30
        Image.new("L", (side, side + 4), color=i * 20).save(folder / f"{i}.png")  # two sizes, not square
    with pytest.raises(DataError, match="image_size"):
        resolve(ncsn_host, "auto", data=str(folder))
    cfg = resolve(ncsn_host, "auto", overrides=["data.options={image_size = 16, channels = 3}"], data=str(folder))
    assert cfg.model.network_options["image_size"] == 16 and cfg.model.network_options["channels"] == 3
    assert cfg.data.options["image_size"] == 16 and cfg.data.options["channels"] == 3
    assert "holdout" in cfg.data.options  # the table merged into what the preset derived
    assert cfg.model.sigmas.n == auto.num_levels(cfg.model.sigmas.first, 0.01, auto.noise_ratio(3 * 16 * 16))


def test_preset_keywords(tmp_path, ncsn_host, fixed_costs):
    from scorekit.cli.config_files import resolve

    folder = write_folder(tmp_path / "images", 12, 8, "L")
    short = resolve(ncsn_host, "auto", data=str(folder))
    long = resolve(ncsn_host, "auto", overrides=["preset.total_time=3600"], data=str(folder))
    assert long.train.time_budget == pytest.approx(short.train.time_budget + 1800, abs=5)
    assert resolve(ncsn_host, "auto", overrides=["train.time_budget=60"], data=str(folder)).train.time_budget == 60
    with pytest.raises(OptionError, match="preset.total_tim: preset 'auto' has no option 'total_tim'; allowed: "
                                          "preset.total_time"):
        resolve(ncsn_host, "auto", overrides=["preset.total_tim=1"], data=str(folder))
    with pytest.raises(OptionError, match="preset 'ncsn-digits' has no option 'total_time'; allowed: [(]none[)]"):
        resolve(ncsn_host, "ncsn-digits", overrides=["preset.total_time=1"])
    with pytest.raises(OptionError, match="pass --preset NAME"):
        resolve(ncsn_host, None, overrides=["preset.total_time=1"])
    with pytest.raises(OptionError, match="preset.total_time must be a number of seconds > 0"):
        resolve(ncsn_host, "auto", overrides=["preset.total_time=-5"], data=str(folder))


def test_identical_images_and_bad_options_are_clear_errors(tmp_path, ncsn_host):
    from PIL import Image

    from scorekit.cli.config_files import resolve

    for i in range(5):
        Image.new("L", (8, 8), color=100).save(tmp_path / f"{i}.png")
    with pytest.raises(DataError, match="all the same"):
        resolve(ncsn_host, "auto", data=str(tmp_path))
    with pytest.raises(OptionError, match="option 'channels' must be one of"):
        resolve(ncsn_host, "auto", overrides=["data.options.channels=2"], data=str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        resolve(ncsn_host, "auto", data=str(tmp_path / "nowhere"))
