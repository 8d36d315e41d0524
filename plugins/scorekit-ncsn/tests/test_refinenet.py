"""Tests of the NCSN RefineNet and its CondInstanceNorm++ (fast, CPU, seeded)."""

from __future__ import annotations

import pytest
import torch

from scorekit_ncsn import NCSN, CondInstanceNormPlusPlus

SIGMAS = torch.logspace(0, -2, 10)  # the paper's 10 geometric levels, 1 -> 0.01


@pytest.fixture(scope="module")
def tiny_cifar() -> NCSN:
    torch.manual_seed(1)
    return NCSN(sigmas=SIGMAS, channels=3, image_size=32, ngf=8).eval()


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    ("channels", "image_size", "ngf", "expected"),
    [
        (3, 32, 128, 30_117_635),  # CIFAR-10 / CelebA, reference CondRefineNetDilated
        (1, 28, 64, 7_638_657),  # MNIST
    ],
)
def test_parameter_count_matches_reference(
    channels: int, image_size: int, ngf: int, expected: int, n_params
) -> None:
    net = NCSN(sigmas=SIGMAS, channels=channels, image_size=image_size, ngf=ngf)
    assert n_params(net) == expected


def test_sigmas_is_a_buffer() -> None:
    net = NCSN(sigmas=[1.0, 0.1, 0.01], ngf=4)
    assert "sigmas" in dict(net.named_buffers())
    assert "sigmas" in net.state_dict()
    assert net.num_levels == 3
    torch.testing.assert_close(net.sigmas, torch.tensor([1.0, 0.1, 0.01]))


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize(("channels", "image_size"), [(3, 32), (1, 28)])
def test_output_shape_equals_input_shape(channels: int, image_size: int) -> None:
    net = NCSN(sigmas=SIGMAS, channels=channels, image_size=image_size, ngf=8)
    x = torch.rand(2, channels, image_size, image_size)
    out = net(x, SIGMAS[[0, 5]])
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_backward_reaches_every_parameter(tiny_cifar: NCSN) -> None:
    x = torch.rand(2, 3, 32, 32)
    tiny_cifar.zero_grad()
    tiny_cifar(x, SIGMAS[[0, 9]]).square().sum().backward()
    missing = [n for n, p in tiny_cifar.named_parameters() if p.grad is None]
    assert not missing
    tiny_cifar.zero_grad()


# ---------------------------------------------------------------- sigma -> level


def test_different_levels_give_different_outputs(tiny_cifar: NCSN) -> None:
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a = tiny_cifar(x, SIGMAS[[0]])
        b = tiny_cifar(x, SIGMAS[[6]])
        a_again = tiny_cifar(x, SIGMAS[[0]])
    assert not torch.allclose(a, b)
    torch.testing.assert_close(a, a_again)


def test_sigma_to_level_mapping(tiny_cifar: NCSN) -> None:
    levels = tiny_cifar.sigma_to_level(SIGMAS.flip(0))
    assert levels.tolist() == list(range(9, -1, -1))


def test_sigma_within_relative_tolerance_is_accepted(tiny_cifar: NCSN) -> None:
    x = torch.rand(2, 3, 32, 32)
    exact = SIGMAS[[2, 7]]
    nudged = exact * torch.tensor([1 + 5e-5, 1 - 5e-5])
    assert tiny_cifar.sigma_to_level(nudged).tolist() == [2, 7]
    with torch.no_grad():
        torch.testing.assert_close(tiny_cifar(x, nudged), tiny_cifar(x, exact))


def test_unknown_sigma_raises_naming_the_levels(tiny_cifar: NCSN) -> None:
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="not among its noise levels") as info:
        tiny_cifar(x, torch.tensor([1.0, 0.5]))
    message = str(info.value)
    assert "0.5" in message
    assert "levels: [1.0" in message and "0.01" in message
    # just outside the tolerance
    with pytest.raises(ValueError, match="noise levels"):
        tiny_cifar(x, SIGMAS[[0, 3]] * (1 + 3e-4))


def test_missing_sigma_raises(tiny_cifar: NCSN) -> None:
    with pytest.raises(ValueError, match="noise-conditional"):
        tiny_cifar(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="noise-conditional"):
        tiny_cifar(torch.rand(1, 3, 32, 32), None)


def test_sigma_of_wrong_shape_raises(tiny_cifar: NCSN) -> None:
    with pytest.raises(ValueError, match=r"sigma of shape \[B\] = \[2\]"):
        tiny_cifar(torch.rand(2, 3, 32, 32), SIGMAS[:3])


def test_scalar_sigma_is_used_for_the_whole_batch(tiny_cifar: NCSN) -> None:
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            tiny_cifar(x, SIGMAS[4]), tiny_cifar(x, SIGMAS[4].repeat(2))
        )


def test_batch_with_a_different_sigma_per_example(tiny_cifar: NCSN) -> None:
    """Each example is conditioned on its own level, as if it were run alone."""
    x = torch.rand(4, 3, 32, 32)
    idx = torch.tensor([9, 0, 4, 7])
    with torch.no_grad():
        batched = tiny_cifar(x, SIGMAS[idx])
        one_by_one = torch.cat(
            [tiny_cifar(x[i : i + 1], SIGMAS[idx[i : i + 1]]) for i in range(4)]
        )
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- input validation


def test_wrong_channel_count_raises(tiny_cifar: NCSN) -> None:
    expected = r"NCSN\(channels=3, image_size=32\) got input of shape \(2, 1, 32, 32\)"
    with pytest.raises(ValueError, match=expected):
        tiny_cifar(torch.rand(2, 1, 32, 32), SIGMAS[:2])


def test_wrong_image_size_raises(tiny_cifar: NCSN) -> None:
    expected = r"NCSN\(channels=3, image_size=32\) got input of shape \(2, 3, 28, 28\)"
    with pytest.raises(ValueError, match=expected):
        tiny_cifar(torch.rand(2, 3, 28, 28), SIGMAS[:2])
    with pytest.raises(ValueError, match=r"expected \[B, 3, 32, 32\]"):
        tiny_cifar(torch.rand(3, 32, 32), SIGMAS[:1])


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"sigmas": [0.01, 0.1, 1.0]}, "strictly descending"),
        ({"sigmas": [1.0, 1.0]}, "strictly descending"),
        ({"sigmas": []}, "non-empty 1-D"),
        ({"sigmas": [[1.0, 0.1]]}, "non-empty 1-D"),
        ({"sigmas": [1.0, -0.1]}, "positive"),
        ({"sigmas": [1.0, 0.1], "image_size": 31}, "even image_size"),
        ({"sigmas": [1.0, 0.1], "channels": 0}, "channels"),
        ({"sigmas": [1.0, 0.1], "ngf": 1}, "ngf"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs: dict, pattern: str) -> None:
    kwargs = {"ngf": 4, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        NCSN(**kwargs)


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError, match="positional"):
        NCSN(SIGMAS)  # type: ignore[misc]


# ---------------------------------------------------------------- CondInstanceNorm++


Value = float | torch.Tensor


def _set_norm(norm: CondInstanceNormPlusPlus, gamma: Value, alpha: Value, beta: Value) -> None:
    with torch.no_grad():
        norm.gamma.copy_(torch.as_tensor(gamma).expand_as(norm.gamma))
        norm.alpha.copy_(torch.as_tensor(alpha).expand_as(norm.alpha))
        norm.beta.copy_(torch.as_tensor(beta).expand_as(norm.beta))


def test_cond_instance_norm_pp_normalises_each_map() -> None:
    norm = CondInstanceNormPlusPlus(6, num_levels=3)
    _set_norm(norm, 1.0, 0.0, 0.0)
    offsets = torch.arange(6.0, dtype=torch.float64)[:, None, None]
    x = 3.0 * torch.randn(4, 6, 9, 9, dtype=torch.float64) + offsets
    norm = norm.double()
    z = norm(x, torch.tensor([0, 1, 2, 0]))
    torch.testing.assert_close(z.mean(dim=(2, 3)), torch.zeros(4, 6, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(
        z.std(dim=(2, 3), unbiased=False), torch.ones(4, 6, dtype=torch.float64), atol=1e-4, rtol=0
    )


def test_cond_instance_norm_pp_matches_the_formula() -> None:
    """z_k = gamma[i,k] (x_k - mu_k)/s_k + beta[i,k] + alpha[i,k] (mu_k - m)/v."""
    levels, c = 3, 5
    norm = CondInstanceNormPlusPlus(c, num_levels=levels).double()
    _set_norm(
        norm,
        torch.rand(levels, c, dtype=torch.float64) + 0.5,
        torch.randn(levels, c, dtype=torch.float64),
        torch.randn(levels, c, dtype=torch.float64),
    )
    offsets = torch.randn(1, c, 1, 1, dtype=torch.float64) * 3
    x = torch.randn(4, c, 7, 7, dtype=torch.float64) * 2 + offsets
    idx = torch.tensor([2, 0, 1, 2])
    z = norm(x, idx)

    eps = norm.eps
    expected = torch.empty_like(x)
    for b in range(x.shape[0]):
        i = int(idx[b])
        mu = torch.stack([x[b, k].mean() for k in range(c)])
        m = mu.mean()
        v = torch.sqrt(((mu - m) ** 2).sum() / (c - 1) + eps)  # std across maps (n - 1)
        for k in range(c):
            s = torch.sqrt(((x[b, k] - mu[k]) ** 2).mean() + eps)
            expected[b, k] = (
                norm.gamma[i, k] * (x[b, k] - mu[k]) / s
                + norm.beta[i, k]
                + norm.alpha[i, k] * (mu[k] - m) / v
            )
    torch.testing.assert_close(z, expected.detach())

    # With alpha non-zero the per-map means come back as the alpha term says.
    mu = x.mean(dim=(2, 3))
    mean_hat = (mu - mu.mean(1, keepdim=True)) / torch.sqrt(mu.var(1, keepdim=True) + eps)
    torch.testing.assert_close(
        z.mean(dim=(2, 3)), (norm.beta[idx] + norm.alpha[idx] * mean_hat).detach()
    )
    # ...and without alpha they are lost (all maps' means equal beta).
    _set_norm(norm, norm.gamma.detach(), 0.0, norm.beta.detach())
    torch.testing.assert_close(norm(x, idx).mean(dim=(2, 3)), norm.beta[idx].detach())


def test_cond_instance_norm_pp_initialisation(n_params) -> None:
    norm = CondInstanceNormPlusPlus(256, num_levels=10)
    assert n_params(norm) == 3 * 256 * 10
    # N(1, 0.02^2) over 2,560 entries (seeded by conftest): the SE of the mean is 0.02 / sqrt(2560) = 0.0004
    # and of the std about 0.02 / sqrt(2 * 2560) = 0.0003, so 0.002 and 0.0015 are 5 SE; a std of 0.01 or of
    # sqrt(0.02) (the variance taken for the std), or a mean of 0, fails by far
    for p in (norm.gamma, norm.alpha):
        assert abs(p.mean().item() - 1.0) < 0.002
        assert abs(p.std().item() - 0.02) < 0.0015
    assert torch.equal(norm.beta, torch.zeros_like(norm.beta))


def test_cond_instance_norm_pp_needs_two_maps() -> None:
    with pytest.raises(ValueError, match="num_features >= 2"):
        CondInstanceNormPlusPlus(1, num_levels=2)
