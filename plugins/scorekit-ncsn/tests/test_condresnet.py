"""Tests of the light noise-conditional residual network ``cond_resnet`` (fast, CPU, seeded)."""

from __future__ import annotations

import pytest
import torch

import scorekit
from scorekit.plugins import PluginHost
from scorekit_ncsn import plugin
from scorekit_ncsn.condresnet import CondResNet, cond_resnet_num_parameters
from scorekit_ncsn.refinenet import NCSN

SIGMAS = torch.logspace(0, -2, 10)


@pytest.fixture(scope="module")
def net() -> CondResNet:
    torch.manual_seed(1)
    return CondResNet(sigmas=SIGMAS, channels=1, image_size=8, ngf=8, n_blocks=2).eval()


# ---------------------------------------------------------------- shapes and parameters


@pytest.mark.parametrize(("channels", "image_size", "dilations"), [(1, 8, None), (3, 16, [1, 2, 1])])
def test_output_shape_equals_input_shape(channels: int, image_size: int, dilations) -> None:
    model = CondResNet(sigmas=SIGMAS, channels=channels, image_size=image_size, ngf=8, n_blocks=3,
                       dilations=dilations)
    x = torch.rand(4, channels, image_size, image_size)
    out = model(x, SIGMAS[[0, 3, 5, 9]])
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("channels", "ngf", "n_blocks", "levels"), [(1, 64, 4, 20), (3, 16, 0, 1), (1, 8, 6, 10)])
def test_parameter_count_formula(channels: int, ngf: int, n_blocks: int, levels: int, n_params) -> None:
    sigmas = torch.logspace(0, -2, levels) if levels > 1 else torch.tensor([0.1])
    model = CondResNet(sigmas=sigmas, channels=channels, ngf=ngf, n_blocks=n_blocks)
    expected = cond_resnet_num_parameters(channels=channels, ngf=ngf, n_blocks=n_blocks, num_levels=levels)
    assert n_params(model) == expected


def test_parameter_count_by_hand(n_params) -> None:
    # C=1, F=64, N=4, L=20: stem 640; blocks 4 * (7,680 + 73,856); head 3,840 + 577
    model = CondResNet(sigmas=torch.logspace(0, -2, 20), channels=1, ngf=64, n_blocks=4)
    assert n_params(model) == 640 + 4 * (2 * 3 * 20 * 64 + 2 * (9 * 64 * 64 + 64)) + 3 * 20 * 64 + 9 * 64 + 1
    assert n_params(model) == 331_201


def test_sigmas_is_a_buffer(net: CondResNet) -> None:
    assert "sigmas" in net.state_dict()
    assert net.num_levels == 10


# ---------------------------------------------------------------- gradients


def test_backward_reaches_every_parameter() -> None:
    model = CondResNet(sigmas=SIGMAS, ngf=8, n_blocks=2)
    model(torch.rand(3, 1, 8, 8), SIGMAS[[0, 4, 9]]).square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_gradient_with_respect_to_the_input() -> None:
    model = CondResNet(sigmas=SIGMAS, ngf=8, n_blocks=1)
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    model(x, SIGMAS[[1, 2]]).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ---------------------------------------------------------------- sigma conditioning


def test_output_is_divided_by_sigma() -> None:
    model = CondResNet(sigmas=SIGMAS, ngf=8, n_blocks=1).eval()
    plain = CondResNet(sigmas=SIGMAS, ngf=8, n_blocks=1, scale_by_sigma=False).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.rand(2, 1, 8, 8)
    sigma = SIGMAS[[0, 9]]
    with torch.no_grad():
        torch.testing.assert_close(model(x, sigma) * sigma.reshape(-1, 1, 1, 1), plain(x, sigma))


def test_sigma_data_adds_the_gaussian_score() -> None:
    model = CondResNet(sigmas=SIGMAS, ngf=8, n_blocks=1, sigma_data=0.4, data_mean=0.3).eval()
    with torch.no_grad():  # f = 0: the score is that of N(0.3, sigma^2 + 0.4^2)
        model.end_conv.weight.zero_()
        model.end_conv.bias.zero_()
    x = torch.rand(2, 1, 8, 8)
    sigma = SIGMAS[[0, 9]]
    expected = -(x - 0.3) / (sigma.square() + 0.16).reshape(-1, 1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x, sigma), expected)


def test_levels_condition_the_norms(net: CondResNet) -> None:
    with torch.no_grad():
        for block in net.blocks:  # give every level its own norm parameters
            block.norm1.beta.normal_()
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        a = net(x, SIGMAS[[0]]) * SIGMAS[0]
        b = net(x, SIGMAS[[6]]) * SIGMAS[6]
    assert not torch.allclose(a, b)


def test_sigma_to_level_mapping_matches_the_refinenet(net: CondResNet) -> None:
    ref = NCSN(sigmas=SIGMAS, channels=1, image_size=8, ngf=2)
    query = torch.cat([SIGMAS.flip(0), SIGMAS[[2, 7]] * torch.tensor([1 + 5e-5, 1 - 5e-5])])
    assert net.sigma_to_level(query).tolist() == list(range(9, -1, -1)) + [2, 7]
    assert net.sigma_to_level(query).tolist() == ref.sigma_to_level(query).tolist()


def test_scalar_sigma_applies_to_the_whole_batch(net: CondResNet) -> None:
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x, float(SIGMAS[4])), net(x, SIGMAS[[4, 4, 4]]))


def test_unknown_sigma_raises_naming_the_levels(net: CondResNet) -> None:
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="CondResNet got sigma value.*not among its noise levels") as info:
        net(x, torch.tensor([1.0, 0.5]))
    assert "0.5" in str(info.value) and "levels: [1.0" in str(info.value)
    with pytest.raises(ValueError, match="noise levels"):
        net(x, SIGMAS[[0, 3]] * (1 + 3e-4))


def test_missing_or_misshapen_sigma_raises(net: CondResNet) -> None:
    with pytest.raises(ValueError, match="noise-conditional"):
        net(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        net(torch.rand(2, 1, 8, 8), SIGMAS[:3])


def test_wrong_input_shape_raises(net: CondResNet) -> None:
    with pytest.raises(ValueError, match="expected"):
        net(torch.rand(2, 1, 7, 7), SIGMAS[[0, 1]])


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sigmas": [0.1, 1.0]}, "strictly descending"),  # ascending
        ({"sigmas": []}, "non-empty 1-D"),
        ({"ngf": 1}, r"ngf >= 2"),
        ({"n_blocks": -1}, r"n_blocks >= 0"),
        ({"n_blocks": 2, "dilations": [1]}, r"one dilation >= 1 per block \(2\), got \[1\]"),
        ({"n_blocks": 1, "dilations": [0]}, r"one dilation >= 1 per block \(1\), got \[0\]"),
        ({"sigma_data": 0.0}, r"sigma_data > 0 and scale_by_sigma=True, got 0.0"),
        ({"sigma_data": 0.4, "scale_by_sigma": False}, r"sigma_data > 0 and scale_by_sigma=True, got 0.4"),
    ],
)
def test_bad_options_raise(kwargs, pattern) -> None:
    options = {"sigmas": SIGMAS, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        CondResNet(**options)


# ---------------------------------------------------------------- registration


def test_silu_activation_changes_the_output_but_not_the_parameters() -> None:
    torch.manual_seed(3)
    elu = CondResNet(sigmas=SIGMAS, ngf=8, n_blocks=2)
    silu = CondResNet(sigmas=SIGMAS, ngf=8, n_blocks=2, activation="silu")
    silu.load_state_dict(elu.state_dict())  # same names and shapes
    norms = [silu.end_norm] + [n for b in silu.blocks for n in (b.norm1, b.norm2)]
    assert all(n.act == "silu" for n in norms)
    x = torch.rand(4, 1, 8, 8)
    assert not torch.allclose(elu(x, SIGMAS[2]), silu(x, SIGMAS[2]))
    assert "activation='silu'" in repr(silu)


def test_unknown_activation_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"activation='relu6'.*\['elu', 'silu'\]"):
        CondResNet(sigmas=SIGMAS, ngf=8, n_blocks=1, activation="relu6")


def test_registered_and_composes() -> None:
    host = PluginHost(autoload=False)
    host.register_plugin(plugin, "scorekit-ncsn")
    assert "cond_resnet" in host.names("network")
    model = scorekit.compose(network="cond_resnet", estimator="dsm", sampler="annealed_langevin", sigmas=SIGMAS,
                             network_options={"ngf": 8, "n_blocks": 1}, host=host)
    assert model.loss(torch.rand(4, 1, 8, 8)).isfinite()
    with pytest.raises(scorekit.OptionError, match="noise-conditional"):
        scorekit.compose(network="cond_resnet", sigmas=None, estimator="ssm", sampler=None, host=host)
