"""Instance normalisation, per-example affine, activation and the next convolution as one autograd node.

``conv(act(gamma * (x - mu) / s + shift))`` for ``[B, C, H, W]`` maps, with ``mu`` and ``s`` each map's spatial
mean and ``sqrt(var + eps)``, ``gamma`` and ``shift`` of shape ``[B, C, 1, 1]`` (the CondInstanceNorm++ of
:mod:`scorekit_ncsn.normalization` selects them by noise level), and ``conv`` optional. Composed from separate
ops, autograd keeps up to four full-size tensors per layer for the backward pass: the input (group norm), the
normalised maps (the affine's product), the pre-activation (the activation) and the convolution's input. This
node keeps the input alone and recomputes the rest in its backward (a few element-wise passes beside the
convolution's own backward): the NCSN training step keeps 535 MiB for backward instead of 1511 MiB at CIFAR-10
width and batch 16, and peaks at 0.60x the authors' memory (docs/results.md, "Issue 16: one autograd node per
norm, activation and convolution").

Everything a score estimator needs still works: a first-order backward takes the fused native kernels, one
that will be differentiated again (reverse-mode sliced score matching) composed differentiable ops;
:meth:`NormActivation.jvp` gives forward mode its tangent (``torch.func.jvp``) and ``generate_vmap_rule`` lets
``torch.func.vmap`` batch several tangents. The composed ops stay as :func:`composed_norm_activation`: the tests
compare the node against it in float64, and the networks use it under ``torch.compile`` (Dynamo cannot trace a
Function with a custom jvp) and with ``fused_norm=False``, where memory is no concern and the node's per-layer
Python costs more than it saves (small feature maps: docs/results.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ACTIVATION_RULES", "ConvSpec", "composed_norm_activation", "norm_activation"]


def _elu(z: torch.Tensor) -> torch.Tensor:
    """ELU as ``max(z, exp(min(z, 0)) - 1)``.

    Same function as ``F.elu`` to within 6e-8 (``exp(z) - 1`` against ``expm1``), several times faster on
    CPU, where this torch build evaluates ``expm1`` without SIMD. Out of place, so that the backward
    pass, which recomputes the convolution's input with it, can itself be differentiated.
    """
    return torch.maximum(torch.exp(z.clamp(max=0)) - 1, z)


def _elu_grad(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    # one fused native pass, itself differentiable (double backprop goes through it)
    return torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, False, z)


def _silu_grad(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    if not torch.is_grad_enabled():  # a first-order backward: the fused native kernel
        return torch.ops.aten.silu_backward(grad, z)
    # to be differentiated again (aten's silu_backward has no derivative): act'(z) = sig (1 + z (1 - sig))
    sig = torch.sigmoid(z)
    return grad * sig * (1 + z * (1 - sig))


def _identity(z: torch.Tensor) -> torch.Tensor:
    return z


def _identity_grad(grad: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return grad


#: activation name (None: no activation) -> (the activation, ``(grad, z) -> grad * act'(z)``).
ACTIVATION_RULES: dict[str | None, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[..., torch.Tensor]]] = {
    None: (_identity, _identity_grad),
    "elu": (_elu, _elu_grad),
    "silu": (F.silu, _silu_grad),
}


def _map_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each map's spatial mean and ``1 / sqrt(var + eps)`` (biased variance), shaped ``[B, C, 1, 1]``.

    Through group norm's native kernel, one group per map (a tenth of ``torch.var_mean``'s time over the
    spatial dims on CPU); the normalised output it also returns is dropped.
    """
    b, c = x.shape[:2]
    _, mean, rstd = torch.native_group_norm(x, None, None, b, c, x.shape[2] * x.shape[3], c, eps)
    return mean.reshape(b, c, 1, 1), rstd.reshape(b, c, 1, 1)


def _norm_dtype(x: torch.Tensor, gamma: torch.Tensor) -> torch.dtype:
    """The precision the normalisation runs in: that of ``x`` or of the norm's parameters, the wider."""
    return torch.promote_types(x.dtype, gamma.dtype)


class ConvSpec(NamedTuple):
    """A 2-D convolution applied after the activation inside the node: weights and hyper-parameters."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @classmethod
    def of(cls, conv: nn.Conv2d) -> ConvSpec:
        """The spec of ``conv`` (zero padding given as numbers, as every NCSN convolution has)."""
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"norm_activation takes convolutions with numeric zero padding, got {conv}")
        return cls(conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)  # type: ignore[arg-type]

    def apply(self, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(y, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class NormActivation(torch.autograd.Function):
    """The autograd node behind :func:`norm_activation` (see the module docstring)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(  # type: ignore[override]
        x: torch.Tensor, gamma: torch.Tensor, shift: torch.Tensor, weight: torch.Tensor | None,
        bias: torch.Tensor | None, act: str | None, eps: float, conv: ConvSpec | None,
    ) -> torch.Tensor:
        # group norm with one group per map is instance norm, by a fused native kernel; in the parameters'
        # precision at least (bf16 maps from an autocast convolution are normalised in float32)
        x_hat = F.group_norm(x.to(_norm_dtype(x, gamma)), x.shape[1], eps=eps)
        y = ACTIVATION_RULES[act][0](torch.addcmul(shift, gamma, x_hat))
        return y if conv is None else conv.apply(y, weight, bias)  # type: ignore[arg-type]

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, gamma, shift, weight, bias, act, eps, conv = inputs
        ctx.save_for_backward(x, gamma, shift, weight)
        ctx.save_for_forward(x, gamma, shift, weight)
        ctx.act, ctx.eps, ctx.conv = act, eps, conv
        ctx.has_bias = bias is not None
        ctx.out_dtype = output.dtype  # the convolution's precision (bfloat16 under autocast)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x_in, gamma, shift, weight = ctx.saved_tensors
        x = x_in.to(_norm_dtype(x_in, gamma))
        act, act_grad = ACTIVATION_RULES[ctx.act]
        mean, rstd = _map_stats(x, ctx.eps)
        scale = gamma * rstd
        z = torch.addcmul(shift - scale * mean, scale, x)  # gamma * x_hat + shift, one fused pass over x
        grad_weight = grad_bias = None
        if ctx.conv is not None:
            conv, dtype = ctx.conv, ctx.out_dtype
            # the convolution's input is recomputed, not saved (the largest of the node's savings)
            grad, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad, act(z).to(dtype), weight.to(dtype), [weight.shape[0]] if ctx.has_bias else None, conv.stride,
                conv.padding, conv.dilation, False, [0, 0], conv.groups,
                [True, ctx.needs_input_grad[3], ctx.needs_input_grad[4]],
            )
            grad = grad.to(z.dtype)
            grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
            grad_bias = None if grad_bias is None else grad_bias.to(weight.dtype)
        gz = act_grad(grad, z)
        sum_gz = gz.sum(dim=(2, 3), keepdim=True)
        sum_gz_xhat = rstd * ((gz * x).sum(dim=(2, 3), keepdim=True) - mean * sum_gz)
        # dL/dx = gamma rstd (gz - mean(gz) - x_hat mean(gz x_hat))
        if torch.is_grad_enabled():  # to be differentiated again: as a gz + b x + c with per-map b, c
            n = x.shape[2] * x.shape[3]
            b = -scale * rstd * sum_gz_xhat / n
            c = -scale * sum_gz / n - b * mean
            grad_x = torch.addcmul(c, b, x).addcmul_(scale, gz)
        else:  # a first-order backward: group norm's fused kernel, fed the gradient of x_hat
            grad_x = torch.ops.aten.native_group_norm_backward(
                gz * gamma, x, mean.reshape(x.shape[:2]), rstd.reshape(x.shape[:2]), None, x.shape[0], x.shape[1],
                x.shape[2] * x.shape[3], x.shape[1], [True, False, False],
            )[0]
        grad_x = grad_x.to(x_in.dtype)
        return (grad_x, _unbroadcast(sum_gz_xhat, gamma), _unbroadcast(sum_gz, shift), grad_weight, grad_bias,
                None, None, None)

    @staticmethod
    def jvp(ctx, dx, dgamma, dshift, dweight, dbias, _act, _eps, _conv):  # type: ignore[override]
        x_in, gamma, shift, weight = ctx.saved_tensors
        x = x_in.to(_norm_dtype(x_in, gamma))
        act, act_grad = ACTIVATION_RULES[ctx.act]
        mean, rstd = _map_stats(x, ctx.eps)
        scale = gamma * rstd
        # The tangent of z = gamma x_hat + shift as dz = scale dx + b x + c, with per-map coefficients b, c:
        # two full-size passes (and one reduction) where the textbook formula takes six, and as many fewer
        # tensors for the backward pass through the tangent. With m = mean(dx) and q = mean(x_hat dx):
        # dz = scale (dx - m - x_hat q) + dgamma x_hat + dshift.
        b = torch.zeros_like(scale)
        c = torch.zeros_like(scale)
        if dx is not None:
            dx = dx.to(x.dtype)
            m = dx.mean(dim=(2, 3), keepdim=True)
            q = rstd * ((x * dx).mean(dim=(2, 3), keepdim=True) - mean * m)
            b = -scale * rstd * q
            c = -scale * m - b * mean
        if dgamma is not None:
            b = b + dgamma * rstd
            c = c - dgamma * rstd * mean
        if dshift is not None:
            c = c + dshift
        dz = torch.addcmul(c, b, x)
        if dx is not None:
            dz = torch.addcmul(dz, scale, dx)  # out of place: addcmul_ has no vmap batching rule
        z = torch.addcmul(shift - scale * mean, scale, x)
        dy = act_grad(dz, z)
        if ctx.conv is None:
            return dy
        dtype = ctx.out_dtype
        out = ctx.conv.apply(dy.to(dtype), weight.to(dtype), None if dbias is None else dbias.to(dtype))
        if dweight is not None:
            out = out + ctx.conv.apply(act(z).to(dtype), dweight.to(dtype), None)
        return out


def _unbroadcast(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``grad`` ([B, C, 1, 1]) summed over the dimensions that ``like`` broadcast."""
    if grad.shape == like.shape:
        return grad
    return grad.sum_to_size(like.shape)


def norm_activation(
    x: torch.Tensor, gamma: torch.Tensor, shift: torch.Tensor, act: str | None = None, *, eps: float = 1e-5,
    conv: nn.Conv2d | ConvSpec | None = None,
) -> torch.Tensor:
    """``conv(act(gamma * (x - mu) / sqrt(var + eps) + shift))`` per map of ``x`` ([B, C, H, W]); saves only ``x``.

    ``gamma`` and ``shift`` broadcast to ``[B, C, 1, 1]``; ``act`` is a key of :data:`ACTIVATION_RULES`;
    ``conv`` (optional) is the convolution that follows, whose input is then recomputed in the backward
    pass instead of kept.
    """
    if act not in ACTIVATION_RULES:
        raise ValueError(f"norm_activation got act={act!r}; known: {sorted(map(str, ACTIVATION_RULES))}")
    spec = ConvSpec.of(conv) if isinstance(conv, nn.Conv2d) else conv
    weight, bias = (None, None) if spec is None else (spec.weight, spec.bias)
    return NormActivation.apply(x, gamma, shift, weight, bias, act, eps, spec)


def composed_norm_activation(
    x: torch.Tensor, gamma: torch.Tensor, shift: torch.Tensor, act: str | None = None, *, eps: float = 1e-5,
    conv: nn.Conv2d | ConvSpec | None = None,
) -> torch.Tensor:
    """The same function from separately differentiated ops: autograd keeps every intermediate, and no Python
    runs per layer in the backward pass, the cheaper choice for small feature maps (``fused_norm=False``); the
    tests compare :func:`norm_activation` against it."""
    z = torch.addcmul(shift, gamma, F.group_norm(x, x.shape[1], eps=eps))
    y = F.elu(z) if act == "elu" else ACTIVATION_RULES[act][0](z)
    spec = ConvSpec.of(conv) if isinstance(conv, nn.Conv2d) else conv
    return y if spec is None else spec.apply(y, spec.weight, spec.bias)
