"""compose(): the public contract, and the errors it and the model raise."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import scorekit
from scorekit.errors import CompositionError, DataError, DivergenceError, OptionError


def test_the_users_bare_line():
    model = scorekit.compose(estimator="dsm", sampler="annealed_langevin")
    torch.testing.assert_close(model.sigmas, scorekit.geometric_sigmas(1.0, 0.01, 10))
    assert model.names == {"network": "mlp", "estimator": "dsm", "sampler": "annealed_langevin"}
    x = torch.rand(8, 1, 6, 6)
    loss = model.loss(x)  # the default network sizes itself from this first batch
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert model.network.dim == 36
    # the paper's sampler settings are the defaults of annealed_langevin
    assert model.sampler.step_size == 2e-5 and model.sampler.steps_per_level == 100
    assert model.sampler.final_denoise is False


def test_components_are_attributes(host):
    model = scorekit.compose(estimator="ssm", sampler=None, sigmas=None, host=host)
    assert isinstance(model.network, torch.nn.Module)
    assert type(model.estimator).__name__ == "SlicedScoreMatching" and model.sampler is None
    assert model.sigmas is None


def test_sigmas_accept_any_1d_sequence(host):
    for sigmas in ([3.0, 2.0, 1.0], (3.0, 2.0, 1.0), torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)):
        model = scorekit.compose(sampler=None, sigmas=sigmas, host=host)
        assert model.sigmas.tolist() == [3.0, 2.0, 1.0]


@pytest.mark.parametrize(
    ("sigmas", "message"),
    [([1.0, 2.0], "strictly decreasing"), ([1.0, 0.0], "> 0"), ([], "non-empty"),
     ([[1.0]], "1-D"), ([1.0, float("nan")], "finite"), ("abc", "1-D sequence")],
)
def test_bad_sigmas_raise_from_compose(host, sigmas, message):
    with pytest.raises(CompositionError, match=message):
        scorekit.compose(sampler=None, sigmas=sigmas, host=host)


def test_geometric_sigmas_paper_schedule():
    s = scorekit.geometric_sigmas(1.0, 0.01, 10)
    assert s.shape == (10,) and s.dtype == torch.get_default_dtype()
    assert s[0].item() == 1.0 and s[-1].item() == pytest.approx(0.01)
    ratios = s[1:] / s[:-1]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 0.01 ** (1 / 9)))


@given(first=st.floats(0.01, 100), ratio=st.floats(1.01, 1000), n=st.integers(2, 50))
def test_geometric_sigmas_properties(first, ratio, n):
    s = scorekit.geometric_sigmas(first, first / ratio, n).double()
    assert (s[1:] < s[:-1]).all() and s.numel() == n
    assert s[0].item() == pytest.approx(first, rel=1e-6) and s[-1].item() == pytest.approx(first / ratio, rel=1e-6)


def test_geometric_sigmas_rejects_bad_arguments():
    with pytest.raises(ValueError, match="first .* must be > last"):
        scorekit.geometric_sigmas(0.01, 1.0, 10)
    with pytest.raises(ValueError, match="n must be"):
        scorekit.geometric_sigmas(1.0, 0.01, 0)


def test_ncsnv2_sigma_max_is_largest_pairwise_distance():
    data = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    assert scorekit.ncsnv2_sigma_max(data) == pytest.approx(5.0)


def test_estimator_none_composes_for_sampling_only(host):
    model = scorekit.compose(estimator=None, sampler=None, host=host)
    with pytest.raises(CompositionError, match="no estimator.*estimator='dsm'"):
        model.loss(torch.randn(2, 3))


def test_sampler_none_is_training_only(host):
    model = scorekit.compose(sampler=None, host=host)
    with pytest.raises(CompositionError, match="no sampler"):
        model.sample(torch.randn(2, 3))


def test_ready_module_network(host):
    with pytest.raises(OptionError, match="network_options apply to a registered network name, not to a ready nn.Module"):
        scorekit.compose(network=torch.nn.Identity(), network_options={"a": 1}, sampler=None, host=host)
    net = _Neg()
    model = scorekit.compose(network=net, sampler=None, host=host)
    assert model.network is net  # used as given: neither copied nor rebuilt
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.score(x, torch.full((4,), 0.1)), -x)  # and it is what the model calls


class _Neg(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, sigma):
        return -self.w * x


class _WrongShape(torch.nn.Module):
    def forward(self, x, sigma):
        return x.flatten(1)[:, :1]


def test_network_with_wrong_output_shape_raises_from_the_call(host):
    model = scorekit.compose(network=_WrongShape(), sampler=None, host=host)
    with pytest.raises(DataError, match=r"returned shape \(1, 1\) for input of shape \(1, 3\)"):
        model.loss(torch.randn(4, 3))


@pytest.mark.parametrize(
    ("x", "message"),
    [(torch.empty(0, 3), "non-empty batch"), (torch.tensor([[1.0, float("nan")]]), r"NaN or inf in examples \[0\]"),
     (torch.ones(2, 3, dtype=torch.long), "floating-point"), ([1.0, 2.0], "torch.Tensor")],
)
def test_bad_data_raises_from_loss(host, x, message):
    model = scorekit.compose(network=_Neg(), sampler=None, host=host)
    with pytest.raises(DataError, match=message):
        model.loss(x)


def test_dtype_mismatch_is_named(host):
    model = scorekit.compose(network=_Neg(), sampler=None, host=host)
    with pytest.raises(DataError, match="float32 but x is torch.float64"):
        model.loss(torch.randn(2, 3, dtype=torch.float64))


def test_non_finite_loss_is_reported(host):
    class Exploding(torch.nn.Module):
        def forward(self, x, sigma):
            return x * float("inf")

    model = scorekit.compose(network=Exploding(), sampler=None, host=host)
    with pytest.raises(DivergenceError, match="NaN or inf"):
        model.loss(torch.randn(2, 3))


def test_network_receives_sigma_per_example_in_data_dtype(host):
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, sigma):
            seen["sigma"] = sigma
            return -x

    sigmas = [2.0, 1.0, 0.5]
    model = scorekit.compose(network=Spy(), sampler=None, sigmas=sigmas, host=host).double()
    model.loss(torch.randn(64, 3, dtype=torch.float64), generator=torch.Generator().manual_seed(0))
    sigma = seen["sigma"]
    assert sigma.shape == (64,) and sigma.dtype == torch.float64
    assert set(sigma.tolist()) == set(sigmas)  # 64 uniform draws over 3 levels hit every level


def test_unconditional_network_receives_none(host):
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, sigma):
            seen["sigma"] = sigma
            return -x

    scorekit.compose(network=Spy(), estimator="ssm", sampler=None, sigmas=None, host=host).loss(torch.randn(2, 3))
    assert seen["sigma"] is None


def test_model_state_dict_roundtrip_with_lazy_mlp(host):
    model = scorekit.compose(sampler=None, host=host)
    model.loss(torch.randn(4, 5))
    fresh = scorekit.compose(sampler=None, host=host)
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(3, 5)
    sig = torch.full((3,), 0.1)
    torch.testing.assert_close(fresh.network(x, sig), model.network(x, sig))


# --- materialize and with_network: the public path the trainer uses ----------------------


class _Counting(torch.nn.Module):
    """Calls ``net`` and counts the calls (a stand-in for a DDP or torch.compile wrapper)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x, sigma):
        self.calls += 1
        return self.net(x, sigma)


def test_materialize_sizes_a_lazy_network_once(host):
    model = scorekit.compose(estimator="ssm", sampler=None, host=host)  # the default mlp sizes itself lazily
    assert list(model.parameters()) == []
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    assert model.materialize(x) is model
    params = list(model.parameters())
    assert params and model.network.dim == 5
    counting = _Counting(model.network)
    model.score.network = counting  # count the calls the model makes from now on
    model.materialize(x)  # done already: no call
    assert counting.calls == 0
    model.loss(x, generator=torch.Generator().manual_seed(1))  # no dry run first; ssm's torch.func.jvp runs as is
    assert counting.calls == 1
    assert all(p is q for p, q in zip(params, model.parameters(), strict=True))  # the layers were built once


def test_materialize_checks_the_example_and_names_the_input_shape(host):
    with pytest.raises(DataError, match="NaN or inf"):
        scorekit.compose(sampler=None, host=host).materialize(torch.tensor([[1.0, float("nan")]]))
    model = scorekit.compose(network=_WrongShape(), sampler=None, host=host)
    with pytest.raises(DataError, match=r"returned shape \(1, 1\) for input of shape \(1, 3\)"):
        model.materialize(torch.randn(4, 3))


def test_with_network_computes_the_loss_through_a_wrapper(host):
    model = scorekit.compose(network_options={"dim": 3, "hidden": 8}, host=host).materialize(torch.randn(2, 3))
    wrapped = _Counting(model.network)
    view = model.with_network(wrapped)
    assert view.network is wrapped and view.sigmas is model.sigmas
    assert (view.estimator, view.sampler, view.names) == (model.estimator, model.sampler, model.names)
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0))
    loss = view.loss(x, generator=torch.Generator().manual_seed(1))
    assert wrapped.calls == 1  # no one-example dry run through the wrapper: the model was materialised
    assert torch.equal(loss, model.loss(x, generator=torch.Generator().manual_seed(1)))
    loss.backward()
    assert all(p.grad is not None for p in model.network.parameters())  # the gradients reach the plain network
