"""The noise-conditional RefineNet score network of NCSN (Song & Ermon 2019, appendix A).

Architecture (ngf = width of the first cascade; 128 for CIFAR-10 / CelebA, 64 for MNIST):

* input rescaled from [0, 1] to [-1, 1], then a 3x3 conv to ``ngf`` maps;
* encoder, four stages of two pre-activation residual blocks each:
  stage 1 at full resolution, ``ngf`` maps; stage 2 halves the resolution (the only
  real subsampling) and doubles to ``2 ngf`` maps; stages 3 and 4 stay at that
  resolution and width and use dilation 2 and 4 instead of subsampling;
* decoder, a 4-cascade RefineNet: refine blocks go from the coarsest stage back to
  the finest, each fusing an encoder stage with the previous block's output;
* a final CondInstanceNorm++, ELU and a 3x3 conv back to the image channels.

Every normalisation is a CondInstanceNorm++ conditioned on the noise-level index.
The parameter count equals the authors' ``CondRefineNetDilated`` for the same
configuration (30,117,635 for CIFAR-10 at ngf=128 with 10 levels; 7,638,657 for
MNIST at ngf=64).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import CondRefineBlock, CondResidualBlock
from .levels import SIGMA_RTOL, as_level_sigmas, check_images, sigma_batch, sigma_to_level
from .normalization import CondInstanceNormPlusPlus, fuse_norms

__all__ = ["NCSN", "SIGMA_RTOL"]


class NCSN(nn.Module):
    """Noise-conditional score network ``s_theta(x, sigma)`` for images.

    Args:
        sigmas: the noise levels, a 1-D float tensor or sequence, strictly descending
            (sigma_1 > ... > sigma_L). Its length is the number of levels L; it is
            kept as the buffer ``sigmas`` (saved in the state dict).
        channels: image channels C.
        image_size: image height and width (square images); must be even, because
            the encoder halves the resolution once.
        ngf: width of the first cascade (the others use ``2 * ngf``).
        fused_norm: compute each CondInstanceNorm++, its activation and the convolution after it as one
            autograd node that keeps only its input for the backward pass (default; about a third of the
            activation memory, docs/results.md), or from separately differentiated ops (``False``: more
            memory, less Python per layer, faster for small feature maps). The same function either way.

    ``forward(x, sigma)`` takes ``x`` of shape [B, C, image_size, image_size] with
    pixels in [0, 1] (perturbed data may leave that range) and ``sigma`` of shape [B]
    (or a scalar, used for the whole batch), each entry one of ``sigmas`` up to a
    relative tolerance of 1e-4. It returns the estimated score, shaped like ``x``.
    """

    def __init__(
        self,
        *,
        sigmas: torch.Tensor | Sequence[float],
        channels: int = 3,
        image_size: int = 32,
        ngf: int = 128,
        fused_norm: bool = True,
    ) -> None:
        super().__init__()
        sigmas_t = as_level_sigmas(sigmas, "NCSN")
        if channels < 1:
            raise ValueError(f"NCSN needs channels >= 1, got {channels}")
        if image_size < 2 or image_size % 2:
            raise ValueError(
                f"NCSN needs an even image_size >= 2 (the encoder halves it once), got {image_size}"
            )
        if ngf < 2:
            raise ValueError(f"NCSN needs ngf >= 2, got {ngf}")

        self.channels = channels
        self.image_size = image_size
        self.ngf = ngf
        self.register_buffer("sigmas", sigmas_t)
        num_levels = sigmas_t.numel()
        self.num_levels = num_levels
        wide = 2 * ngf

        self.begin_conv = nn.Conv2d(channels, ngf, kernel_size=3, padding=1)

        def stage(c_in: int, c_out: int, *, downsample: bool, dilation: int | None) -> nn.ModuleList:
            """Two residual blocks; the first may subsample (or stand in for it)."""
            return nn.ModuleList(
                [
                    CondResidualBlock(
                        c_in, c_out, num_levels, downsample=downsample, dilation=dilation
                    ),
                    CondResidualBlock(c_out, c_out, num_levels, dilation=dilation),
                ]
            )

        self.stage1 = stage(ngf, ngf, downsample=False, dilation=None)
        self.stage2 = stage(ngf, wide, downsample=True, dilation=None)  # H/2
        self.stage3 = stage(wide, wide, downsample=True, dilation=2)  # dilated, still H/2
        self.stage4 = stage(wide, wide, downsample=True, dilation=4)  # dilated, still H/2

        self.refine4 = CondRefineBlock([wide], wide, num_levels)
        self.refine3 = CondRefineBlock([wide, wide], wide, num_levels)
        self.refine2 = CondRefineBlock([wide, wide], ngf, num_levels)
        self.refine1 = CondRefineBlock([ngf, ngf], ngf, num_levels, is_last=True)

        self.end_norm = CondInstanceNormPlusPlus(ngf, num_levels, act="elu")
        self.end_conv = nn.Conv2d(ngf, channels, kernel_size=3, padding=1)
        fuse_norms(self, fused_norm, "NCSN")
        self.fused_norm = fused_norm

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, image_size={self.image_size}, ngf={self.ngf}, "
            f"num_levels={self.num_levels}, fused_norm={self.fused_norm}"
        )

    def sigma_to_level(self, sigma: torch.Tensor) -> torch.Tensor:
        """Indices (long, shape [B]) of the stored levels that the entries of ``sigma`` match.

        A sigma matches level ``j`` when ``|sigma - sigmas[j]| <= 1e-4 * sigmas[j]``.
        Raises ValueError, naming the levels, for a sigma that matches none.
        """
        return sigma_to_level(self.sigmas, sigma, "NCSN")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Score estimate at ``x`` (pixels in [0, 1]) for each example's noise level ``sigma``."""
        check_images(x, "NCSN", self.channels, self.image_size)
        level = self.sigma_to_level(sigma_batch(sigma, x, self.sigmas, "NCSN"))

        h = self.begin_conv(2.0 * x - 1.0)  # [0, 1] -> [-1, 1], as the reference does

        skips: list[torch.Tensor] = []
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            for block in stage:
                h = block(h, level)
            skips.append(h)
        s1, s2, s3, s4 = skips

        def size(t: torch.Tensor) -> tuple[int, int]:
            return (t.shape[2], t.shape[3])

        r = self.refine4([s4], level, size(s4))
        r = self.refine3([s3, r], level, size(s3))
        r = self.refine2([s2, r], level, size(s2))
        r = self.refine1([s1, r], level, size(s1))

        return self.end_norm(r, level, conv=self.end_conv)
