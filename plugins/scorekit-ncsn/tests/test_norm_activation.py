"""The fused norm -> activation -> convolution node against the same function from separate ops.

Every estimator differentiates the network differently (DSM: one backward; reverse-mode SSM: a backward
differentiated again; forward-mode SSM: ``torch.func.jvp``, alone or under ``vmap``, then a backward through
the tangent), so each of those is compared in float64, where the only difference is the order of rounding
(tolerance 1e-10 against values of order 1-100). ``gradcheck`` pins both against finite differences.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from scorekit_ncsn.layers import box_mean5
from scorekit_ncsn.norm_activation import (
    ConvSpec,
    composed_norm_activation,
    norm_activation,
)
from scorekit_ncsn.refinenet import NCSN
from torch import nn
from torch._dynamo.utils import counters

import scorekit

B, C, H, W = 2, 3, 5, 5
ACTS = [None, "elu", "silu"]
CONVS = [None, "dilated", "no_bias", "box"]


def make_inputs(conv_kind: str | None, seed: int = 0):
    """x, gamma, shift and the convolution's weights (all float64 leaves), with a spec builder for them."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, H, W, generator=gen, dtype=torch.float64)
    gamma = 1 + 0.2 * torch.randn(B, C, 1, 1, generator=gen, dtype=torch.float64)
    shift = 0.5 * torch.randn(B, C, 1, 1, generator=gen, dtype=torch.float64)
    if conv_kind in ("dilated", "no_bias"):
        dilation = 2 if conv_kind == "dilated" else 1
        conv = nn.Conv2d(C, 5, 3, padding=dilation, dilation=dilation, bias=conv_kind == "dilated").double()
        weights = [p.detach().clone() for p in conv.parameters()]

        def spec(*w: torch.Tensor) -> ConvSpec:
            return ConvSpec(w[0], w[1] if len(w) > 1 else None, conv.stride, conv.padding, conv.dilation, 1)
    elif conv_kind == "box":
        weights = []

        def spec(*w: torch.Tensor) -> ConvSpec:
            return box_mean5(x)
    else:
        weights = []

        def spec(*w: torch.Tensor) -> None:
            return None
    leaves = [t.requires_grad_() for t in (x, gamma, shift, *weights)]
    return leaves, spec


def functions(act: str | None, spec):
    def fused(x, gamma, shift, *w):
        return norm_activation(x, gamma, shift, act, conv=spec(*w))

    def reference(x, gamma, shift, *w):
        return composed_norm_activation(x, gamma, shift, act, conv=spec(*w))

    return fused, reference


def grads(loss: torch.Tensor, leaves) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True))


def assert_close_lists(a, b) -> None:
    for got, want in zip(a, b, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("conv_kind", CONVS)
@pytest.mark.parametrize("act", ACTS)
def test_value_and_gradients_match_finite_differences(act, conv_kind) -> None:
    leaves, spec = make_inputs(conv_kind)
    fused, reference = functions(act, spec)
    torch.testing.assert_close(fused(*leaves), reference(*leaves), rtol=1e-12, atol=1e-12)
    # fast mode: the Jacobians projected on random vectors (a wrong entry still shows, with probability 1)
    assert torch.autograd.gradcheck(fused, tuple(leaves), fast_mode=True)
    assert torch.autograd.gradgradcheck(fused, tuple(leaves), fast_mode=True)
    assert torch.autograd.gradcheck(fused, tuple(leaves), check_forward_ad=True, check_backward_ad=False,
                                    check_undefined_grad=False, check_batched_grad=False, fast_mode=True)


@pytest.mark.parametrize("conv_kind", CONVS)
@pytest.mark.parametrize("act", ACTS)
def test_every_estimator_s_derivative_matches_the_composed_ops(act, conv_kind) -> None:
    leaves, spec = make_inputs(conv_kind, seed=1)
    x, rest = leaves[0], leaves[1:]
    v = torch.randn_like(x)
    vs = torch.randn(4, *x.shape, dtype=x.dtype)

    def forward_mode(f):  # forward-mode SSM, one projection
        out, tangent = torch.func.jvp(lambda xx: f(xx, *rest), (x,), (v,))
        return (tangent * tangent).sum() + 0.5 * out.square().sum()

    def forward_mode_vmap(f):  # forward-mode SSM, four projections sharing the primal pass
        tangents = torch.func.vmap(lambda t: torch.func.jvp(lambda xx: f(xx, *rest), (x,), (t,))[1])(vs)
        return tangents.square().sum()

    def double_backprop(f):  # reverse-mode SSM
        out = f(x, *rest)
        (gx,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        return (gx * v).sum()

    fused, reference = functions(act, spec)
    for loss in (forward_mode, forward_mode_vmap, double_backprop):
        got, want = loss(fused), loss(reference)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        assert_close_lists(grads(got, leaves), grads(want, leaves))


@pytest.mark.parametrize("act", ACTS)
def test_the_node_keeps_only_its_input_for_the_backward_pass(act) -> None:
    """Saved full-size tensors: the input alone (the composed ops keep 3-4: input, normalised maps,
    pre-activation, the convolution's input)."""
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    gamma, shift = torch.ones(2, 8, 1, 1, requires_grad=True), torch.zeros(2, 8, 1, 1, requires_grad=True)
    conv = nn.Conv2d(8, 8, 3, padding=1)

    def full_size_saved(f) -> set[int]:
        storages: set[int] = set()

        def pack(t):
            if t.shape == x.shape:
                storages.add(t.untyped_storage().data_ptr())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            f(x, gamma, shift, act, conv=conv)
        return storages

    assert full_size_saved(norm_activation) == {x.untyped_storage().data_ptr()}
    assert len(full_size_saved(composed_norm_activation)) >= 2


def test_box_mean5_is_average_pooling_with_counted_zero_padding() -> None:
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    box = box_mean5(x)
    got = F.conv2d(x, box.weight, None, box.stride, box.padding, box.dilation, box.groups)
    torch.testing.assert_close(got, F.avg_pool2d(x, 5, stride=1, padding=2), rtol=1e-12, atol=1e-12)


def test_unknown_activation_and_string_padding_are_refused() -> None:
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"act='relu'.*known"):
        norm_activation(x, torch.ones(1, 2, 1, 1), torch.zeros(1, 2, 1, 1), "relu")
    with pytest.raises(ValueError, match="numeric zero padding"):
        norm_activation(x, torch.ones(1, 2, 1, 1), torch.zeros(1, 2, 1, 1), conv=nn.Conv2d(2, 2, 3, padding="same"))


@pytest.mark.parametrize("network", ["ncsn", "cond_resnet"])
def test_networks_train_under_bf16_autocast(network) -> None:
    """``train.bf16``: the convolutions run in bfloat16, the norms in float32, gradients reach the float32
    weights. Tolerance 0.1 relative: bfloat16 keeps 8 bits of mantissa (0.4 % per rounding) and the error
    compounds over the 10-70 layers; a broken dtype path fails outright or is off by far more."""
    sigmas = scorekit.geometric_sigmas(1.0, 0.01, 10)
    options = {"ngf": 8, "image_size": 8, "channels": 1}
    model = scorekit.compose(network=network, estimator="dsm", sampler="annealed_langevin", sigmas=sigmas,
                             network_options=options)
    net = model.network
    x, sigma = torch.rand(4, 1, 8, 8), sigmas[torch.tensor([0, 3, 6, 9])]
    exact = net(x, sigma)
    exact.square().sum().backward()
    exact_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = net(x, sigma)
    assert low.dtype == torch.bfloat16
    low.float().square().sum().backward()
    assert torch.linalg.vector_norm(low.float() - exact) <= 0.1 * torch.linalg.vector_norm(exact)
    got = torch.cat([p.grad.flatten() for p in net.parameters()])
    want = torch.cat([g.flatten() for g in exact_grads])
    assert got.dtype == torch.float32 and torch.linalg.vector_norm(got - want) <= 0.1 * torch.linalg.vector_norm(want)


@pytest.mark.parametrize("network", ["ncsn", "cond_resnet"])
def test_fused_norm_option_computes_the_same_network_with_less_saved(network) -> None:
    """``fused_norm=False`` (the composed ops) and the default node: the same outputs and gradients (in float64,
    where only the order of rounding differs), and the node keeps well under half the bytes for backward."""
    sigmas = scorekit.geometric_sigmas(1.0, 0.01, 10)
    nets = {}
    for fused in (True, False):
        torch.manual_seed(0)
        nets[fused] = scorekit.compose(network=network, estimator="dsm", sampler="annealed_langevin", sigmas=sigmas,
                                       network_options={"ngf": 8, "image_size": 8, "channels": 1,
                                                        "fused_norm": fused}).network.double()
    x, sigma = torch.rand(4, 1, 8, 8, dtype=torch.float64), sigmas[torch.tensor([0, 3, 6, 9])].double()
    saved, outs, grads_ = {}, {}, {}
    for fused, net in nets.items():
        storages: dict[int, int] = {}

        def pack(t, storages=storages):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            outs[fused] = net(x, sigma)
        saved[fused] = sum(storages.values()) - sum(p.numel() * p.element_size() for p in net.parameters())
        grads_[fused] = torch.autograd.grad(outs[fused].square().sum(), list(net.parameters()))
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-10, atol=1e-10)
    for a, b in zip(grads_[True], grads_[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    assert saved[True] < 0.5 * saved[False]
    assert "fused_norm=False" in repr(nets[False])


def test_fused_norm_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="fused_norm True or False, got 'yes'"):
        NCSN(sigmas=[1.0, 0.1], channels=1, image_size=8, ngf=4, fused_norm="yes")


def test_torch_compile_traces_the_networks_without_graph_breaks_at_the_norms() -> None:
    """``train.compile`` / ``sample.compile``: Dynamo cannot trace a Function with a custom jvp, so compiled
    networks take the composed ops; the fused node would break the graph at every layer. The eager backend
    traces without compiling (fast); the outputs must equal the eager network's up to float32 rounding (the
    eager network runs the node, whose ELU is exp - 1 rather than expm1: 1e-4 over a handful of layers)."""
    torch._dynamo.reset()
    counters.clear()
    sigmas = scorekit.geometric_sigmas(1.0, 0.01, 10)
    net = scorekit.compose(network="cond_resnet", estimator="dsm", sampler="annealed_langevin", sigmas=sigmas,
                           network_options={"ngf": 8, "image_size": 8, "channels": 1, "n_blocks": 2}).network
    x, sigma = torch.rand(4, 1, 8, 8), sigmas[torch.tensor([0, 3, 6, 9])]
    compiled = torch.compile(net, backend="eager")
    torch.testing.assert_close(compiled(x, sigma), net(x, sigma), rtol=1e-4, atol=1e-4)
    breaks = [reason for reason in counters["graph_break"] if "jvp" in reason]
    assert not breaks, breaks
    torch._dynamo.reset()
