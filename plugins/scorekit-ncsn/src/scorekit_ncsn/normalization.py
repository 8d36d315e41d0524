"""Conditional instance normalisation with mean information (CondInstanceNorm++).

Song & Ermon (2019), appendix A. Plain instance normalisation removes every feature
map's spatial mean, so the network cannot tell, say, a reddish image from a bluish one
(colour shifts in the samples). CondInstanceNorm++ normalises each map but adds back
the map's mean, *relative to the other maps' means*, through a learned per-level
coefficient ``alpha``:

    z_k = gamma[i, k] * (x_k - mu_k) / s_k + beta[i, k] + alpha[i, k] * (mu_k - m) / v

where ``i`` is the noise-level index, ``mu_k`` and ``s_k`` are the spatial mean and
standard deviation of map ``k``, and ``m`` and ``v`` are the mean and standard
deviation of the ``mu_k`` across the maps of one example.
"""

from __future__ import annotations

import torch
from torch import nn

from .norm_activation import (
    ACTIVATION_RULES,
    ConvSpec,
    composed_norm_activation,
    norm_activation,
)

__all__ = ["CondInstanceNormPlusPlus", "fuse_norms"]


class CondInstanceNormPlusPlus(nn.Module):
    """CondInstanceNorm++ over ``[B, C, H, W]`` feature maps, conditioned on a level index.

    Each of the ``num_levels`` noise levels has its own ``gamma``, ``alpha`` and ``beta``
    vectors of length ``num_features`` (``3 * num_levels * num_features`` parameters,
    as in the reference implementation).

    Numerical details follow the authors' code (github ermongroup/ncsn):

    * ``s_k`` is the biased spatial standard deviation, ``sqrt(var + eps)``, as in
      :class:`torch.nn.InstanceNorm2d`;
    * ``v`` is ``sqrt(var + eps)`` of the per-map means with the *unbiased* (n - 1)
      variance across maps, which is why at least two feature maps are required.

    One deliberate difference from the authors' code: the reference evaluates
    ``gamma * (x_hat + alpha * mu_hat) + beta``, i.e. its mean term is scaled by
    ``gamma * alpha``. This module evaluates the paper's formula, with ``alpha``
    alone. The two are the same family of functions (reference weights convert with
    ``alpha_here = gamma_ref * alpha_ref``) and have the same parameter count.

    Initialisation, as in the reference: ``gamma`` and ``alpha`` ~ N(1, 0.02**2),
    ``beta`` = 0.

    ``act`` (``"elu"``, ``"silu"`` or None) applies the activation that follows the norm in the same
    autograd node (:func:`~scorekit_ncsn.norm_activation.norm_activation`), and so may the convolution
    after it (``forward``'s ``conv``): the node keeps only its input for the backward pass instead of
    up to four full-size intermediates. ``fused=False`` computes the same function from separately
    differentiated ops instead (:func:`~scorekit_ncsn.norm_activation.composed_norm_activation`), and so does
    a network run through ``torch.compile``.
    """

    def __init__(
        self, num_features: int, num_levels: int, *, eps: float = 1e-5, act: str | None = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if num_features < 2:
            raise ValueError(
                f"CondInstanceNormPlusPlus needs num_features >= 2 (the spread of the "
                f"per-map means is undefined for one map), got {num_features}"
            )
        if num_levels < 1:
            raise ValueError(f"CondInstanceNormPlusPlus needs num_levels >= 1, got {num_levels}")
        if act not in ACTIVATION_RULES:
            known = sorted(a for a in ACTIVATION_RULES if a is not None)
            raise ValueError(f"CondInstanceNormPlusPlus got act={act!r}; known: {known} or None")
        self.act = act
        self.fused = fused
        self.num_features = num_features
        self.num_levels = num_levels
        self.eps = eps
        self.gamma = nn.Parameter(torch.empty(num_levels, num_features))
        self.alpha = nn.Parameter(torch.empty(num_levels, num_features))
        self.beta = nn.Parameter(torch.empty(num_levels, num_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Scales start near one (N(1, 0.02^2)) and shifts at zero, as in the reference."""
        with torch.no_grad():
            self.gamma.normal_(1.0, 0.02)
            self.alpha.normal_(1.0, 0.02)
            self.beta.zero_()

    def forward(
        self, x: torch.Tensor, level: torch.Tensor, conv: nn.Conv2d | ConvSpec | None = None
    ) -> torch.Tensor:
        """Normalise ``x`` ([B, C, H, W]) with the parameters of each example's level (then ``act``).

        ``level`` is a long tensor of shape [B] with values in ``[0, num_levels)``. ``conv``, the
        convolution that follows, joins the same autograd node, so that its input is recomputed in the
        backward pass rather than kept (the result is ``conv(norm(x))``).
        """
        # Where each map's mean sits among the maps of its example ([B, C, 1, 1]: cheap).
        map_mean = x.mean(dim=(2, 3), keepdim=True)  # mu_k
        across_mean = map_mean.mean(dim=1, keepdim=True)  # m
        across_var = map_mean.var(dim=1, keepdim=True, unbiased=True)
        mean_hat = (map_mean - across_mean) / torch.sqrt(across_var + self.eps)

        gamma = self.gamma[level][:, :, None, None]
        shift = self.beta[level][:, :, None, None] + self.alpha[level][:, :, None, None] * mean_hat
        # gamma * (x_k - mu_k) / s_k + shift (then the activation): the full-size work, one autograd node
        # Under torch.compile the composed ops: Dynamo cannot trace an autograd.Function with a custom jvp (a
        # graph break at every layer), and the compiler's partitioner recomputes element-wise work in the
        # backward pass by itself.
        fused = self.fused and not torch.compiler.is_compiling()
        combine = norm_activation if fused else composed_norm_activation
        return combine(x, gamma, shift, self.act, eps=self.eps, conv=conv)

    def extra_repr(self) -> str:
        act = "" if self.act is None else f", act={self.act!r}"
        return f"{self.num_features}, num_levels={self.num_levels}, eps={self.eps}{act}, fused={self.fused}"


def fuse_norms(network: nn.Module, fused: bool, owner: str) -> None:
    """Set ``fused`` on every :class:`CondInstanceNormPlusPlus` of ``network`` (its ``fused_norm`` option)."""
    if not isinstance(fused, bool):
        raise ValueError(f"{owner} needs fused_norm True or False, got {fused!r}")
    for module in network.modules():
        if isinstance(module, CondInstanceNormPlusPlus):
            module.fused = fused
