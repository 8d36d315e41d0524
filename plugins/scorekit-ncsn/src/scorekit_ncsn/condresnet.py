"""A light noise-conditional residual network for small images (``cond_resnet``).

The NCSN RefineNet (:mod:`scorekit_ncsn.refinenet`) is built for 28-32 pixel images and
costs about 1-2 s per training step on two CPU cores even on 8 x 8 digits. This network
keeps the RefineNet's ingredients and drops the cascade:

* input rescaled from [0, 1] to [-1, 1], then a 3x3 conv (stem) to ``ngf`` maps;
* ``n_blocks`` pre-activation residual blocks at full resolution and constant width
  (:class:`~scorekit_ncsn.layers.CondResidualBlock`: CondInstanceNorm++ -> activation
  -> 3x3 conv, twice, identity shortcut), with optional per-block ``dilations``;
* a final CondInstanceNorm++, activation and 3x3 conv back to the image channels;
* the activation is the paper's ELU or SiLU (``activation``), which is about 25 % cheaper
  per training step on CPU and trained to a lower held-out loss in equal time;
* the output divided by the example's sigma (NCSNv2, Song & Ermon 2020, technique 3):
  ``s(x, sigma) = f(x, sigma) / sigma``.

Two kinds of conditioning, on purpose. Dividing by sigma gives the output the right
scale at every level from the first step (a trained score has norm ~ 1/sigma, from
about 0.2 to 100 here; the DSM target ``sigma * s = -z`` then becomes an O(1) noise
prediction at every level), so nothing has to learn a 500-fold range of output scales
through the norms' gains. The CondInstanceNorm++ layers still see the level index, as in
NCSN: they cost ``3 * L * ngf`` parameters each (a few percent of the network) and
let the same convolutions behave differently at large and small noise.

With L levels, C channels, width ``ngf`` (= F) and N blocks, the parameter count is::

      (9 C F + F)                          stem
    + N * (2 * 3 L F + 2 * (9 F^2 + F))    residual blocks (two norms, two convs each)
    + 3 L F + (9 F C + C)                  output norm and conv

(:func:`cond_resnet_num_parameters`). ``image_size`` only fixes the input check; the
convolutions keep the resolution, so the cost per image grows with ``H * W * F^2 * N``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import layers
from .layers import CondResidualBlock
from .levels import as_level_sigmas, check_images, sigma_batch, sigma_to_level
from .normalization import CondInstanceNormPlusPlus, fuse_norms

__all__ = ["CondResNet", "cond_resnet_num_parameters"]


def cond_resnet_num_parameters(*, channels: int, ngf: int, n_blocks: int, num_levels: int) -> int:
    """The parameter count of :class:`CondResNet` (the formula in the module docstring)."""
    c, f, n, levels = channels, ngf, n_blocks, num_levels
    stem = 9 * c * f + f
    blocks = n * (2 * 3 * levels * f + 2 * (9 * f * f + f))
    head = 3 * levels * f + 9 * f * c + c
    return stem + blocks + head


class CondResNet(nn.Module):
    """Noise-conditional residual score network ``s_theta(x, sigma) = f(x, level(sigma)) / sigma``.

    Args:
        sigmas: the noise levels, strictly descending (kept as the buffer ``sigmas``).
        channels: image channels C.
        image_size: image height and width (square images); checked on input.
        ngf: the width (feature maps of every block).
        n_blocks: number of residual blocks (0 allowed: stem, norm, conv).
        dilations: dilation of each block's convolutions, one int per block
            (default: 1 everywhere).
        scale_by_sigma: divide the output by sigma (NCSNv2); without it the network
            must learn the 1/sigma scale through its conditional norms, as in NCSN.
        sigma_data: None (default), or the data's spread: then the score is the Gaussian
            one plus a learned correction (Karras et al. 2022's skip preconditioning,
            written as a score): ``s = -(x - data_mean) / (sigma^2 + sigma_data^2)
            + sigma_data / (sigma * sqrt(sigma^2 + sigma_data^2)) * f``. The first term
            restores far-out chains in proportion to their distance, which the
            instance-normalised (nearly scale-invariant) ``f`` cannot do; for
            ``sigma << sigma_data`` it reduces to ``f / sigma``. Needs ``scale_by_sigma``.
        data_mean: the centre of the Gaussian term (pixel value), used with ``sigma_data``.
        activation: ``"elu"`` (default, as in NCSN) or ``"silu"``.
        fused_norm: compute each CondInstanceNorm++, its activation and the convolution after it as one
            autograd node that keeps only its input for the backward pass (default; about a third of the
            activation memory, docs/results.md), or from separately differentiated ops (``False``: more
            memory, less Python per layer, faster for small feature maps). The same function either way.

    ``forward(x, sigma)``: ``x`` of shape [B, C, image_size, image_size], pixels in
    [0, 1] (perturbed data may leave that range); ``sigma`` of shape [B] or a scalar,
    each entry one of ``sigmas`` up to a relative tolerance of 1e-4.
    """

    def __init__(
        self,
        *,
        sigmas: torch.Tensor | Sequence[float],
        channels: int = 1,
        image_size: int = 8,
        ngf: int = 64,
        n_blocks: int = 6,
        dilations: Sequence[int] | None = None,
        scale_by_sigma: bool = True,
        sigma_data: float | None = None,
        data_mean: float = 0.5,
        activation: str = "elu",
        fused_norm: bool = True,
    ) -> None:
        super().__init__()
        sigmas_t = as_level_sigmas(sigmas, "CondResNet")
        if channels < 1:
            raise ValueError(f"CondResNet needs channels >= 1, got {channels}")
        if image_size < 1:
            raise ValueError(f"CondResNet needs image_size >= 1, got {image_size}")
        if ngf < 2:
            raise ValueError(f"CondResNet needs ngf >= 2 (CondInstanceNorm++ needs two maps), got {ngf}")
        if n_blocks < 0:
            raise ValueError(f"CondResNet needs n_blocks >= 0, got {n_blocks}")
        dils = [1] * n_blocks if dilations is None else [int(d) for d in dilations]
        if len(dils) != n_blocks or any(d < 1 for d in dils):
            raise ValueError(
                f"CondResNet needs one dilation >= 1 per block ({n_blocks}), got {list(dilations or [])}"
            )

        self.channels, self.image_size, self.ngf, self.n_blocks = channels, image_size, ngf, n_blocks
        if sigma_data is not None and not (sigma_data > 0 and scale_by_sigma):
            raise ValueError(f"CondResNet needs sigma_data > 0 and scale_by_sigma=True, got {sigma_data!r}")
        layers.check_activation(activation, "CondResNet")  # before any block is built
        self.activation = activation
        self.dilations = tuple(dils)
        self.scale_by_sigma = bool(scale_by_sigma)
        self.sigma_data = None if sigma_data is None else float(sigma_data)
        self.data_mean = float(data_mean)
        self.register_buffer("sigmas", sigmas_t)
        self.num_levels = num_levels = sigmas_t.numel()

        self.begin_conv = nn.Conv2d(channels, ngf, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(
            CondResidualBlock(ngf, ngf, num_levels, dilation=None if d == 1 else d, act=activation) for d in dils
        )
        self.end_norm = CondInstanceNormPlusPlus(ngf, num_levels, act=activation)
        self.end_conv = nn.Conv2d(ngf, channels, kernel_size=3, padding=1)
        fuse_norms(self, fused_norm, "CondResNet")
        self.fused_norm = fused_norm

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, image_size={self.image_size}, ngf={self.ngf}, "
            f"n_blocks={self.n_blocks}, dilations={self.dilations}, num_levels={self.num_levels}, "
            f"scale_by_sigma={self.scale_by_sigma}, sigma_data={self.sigma_data}, activation={self.activation!r}, "
            f"fused_norm={self.fused_norm}"
        )

    def sigma_to_level(self, sigma: torch.Tensor) -> torch.Tensor:
        """Indices (long, [B]) of the stored levels that the entries of ``sigma`` match (rtol 1e-4)."""
        return sigma_to_level(self.sigmas, sigma, "CondResNet")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Score estimate at ``x`` (pixels in [0, 1]) for each example's noise level ``sigma``."""
        check_images(x, "CondResNet", self.channels, self.image_size)
        level = self.sigma_to_level(sigma_batch(sigma, x, self.sigmas, "CondResNet"))

        h = self.begin_conv(2.0 * x - 1.0)
        for block in self.blocks:
            h = block(h, level)
        out = self.end_norm(h, level, conv=self.end_conv)
        if not self.scale_by_sigma:
            return out
        sig = self.sigmas.to(out.dtype)[level].reshape(-1, 1, 1, 1)
        if self.sigma_data is None:
            return out / sig
        total = sig.square() + self.sigma_data**2
        return (self.sigma_data / (sig * total.sqrt())) * out - (x - self.data_mean) / total
