"""Noise-conditional building blocks of the NCSN RefineNet (Song & Ermon 2019, appendix A).

Every block takes ``(x, level)`` where ``level`` is a long tensor [B] of noise-level
indices, and conditions every normalisation on it through
:class:`~scorekit_ncsn.normalization.CondInstanceNormPlusPlus`. Activations are ELU, as in
the paper; the residual block also takes SiLU (:data:`ACTIVATIONS`) for ``cond_resnet``.

Which convolutions carry a bias follows the authors' code exactly (it decides the
parameter count): the encoder's residual blocks and the fusion (MSF) convolutions
have biases; the convolutions inside the refine path's residual units (RCU) and
chained residual pooling (CRP) do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .norm_activation import ACTIVATION_RULES, ConvSpec
from .normalization import CondInstanceNormPlusPlus

__all__ = [
    "ACTIVATIONS",
    "CondCRPBlock",
    "CondMSFBlock",
    "CondRCUBlock",
    "CondRefineBlock",
    "CondResidualBlock",
    "ConvMeanPool",
    "box_mean5",
    "check_activation",
    "conv3x3",
]


#: the activations a block takes after its norms (computed inside the norm's autograd node,
#: :data:`~scorekit_ncsn.norm_activation.ACTIVATION_RULES`). ELU is the paper's; SiLU costs far less on
#: CPU (this torch build evaluates ELU's expm1 without SIMD: 1.9 ms against 0.12 ms for SiLU on a
#: 128 x 48 x 8 x 8 tensor, 2 threads) and trained ``cond_resnet`` to a lower held-out loss.
ACTIVATIONS: tuple[str, ...] = tuple(sorted(name for name in ACTIVATION_RULES if name is not None))


def check_activation(name: str, owner: str) -> str:
    """``name`` if it is one of :data:`ACTIVATIONS`; otherwise a ValueError naming the known ones."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"{owner} got activation={name!r}; known: {list(ACTIVATIONS)}")
    return name


def conv3x3(in_channels: int, out_channels: int, *, dilation: int = 1, bias: bool) -> nn.Conv2d:
    """A 3x3 convolution, stride 1, padded to keep the spatial size (for any dilation)."""
    return nn.Conv2d(
        in_channels, out_channels, kernel_size=3, padding=dilation, dilation=dilation, bias=bias
    )


class ConvMeanPool(nn.Module):
    """Convolution (size-preserving) followed by 2x2 average pooling: halves H and W.

    This is the only real subsampling in the network (first downsampling stage).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(x))

    @staticmethod
    def pool(h: torch.Tensor) -> torch.Tensor:
        """The 2x2 mean pooling after the convolution (for a caller that runs the convolution itself)."""
        return F.avg_pool2d(h, kernel_size=2)


class CondResidualBlock(nn.Module):
    """Pre-activation residual block: ``x + conv(act(norm(conv(act(norm(x))))))``.

    Args:
        in_channels, out_channels: feature maps in and out.
        num_levels: number of noise levels the norms are conditioned on.
        downsample: whether this block stands at a subsampling point of the encoder.
            Without ``dilation`` it halves the resolution (conv then mean-pool, on the
            main path and on a 1x1 shortcut). With ``dilation`` it keeps the
            resolution: the paper replaces every subsampling but the first by dilated
            convolutions; the block still gets a (3x3, dilated) shortcut convolution,
            as in the reference, even though in and out channels are equal.
        dilation: dilation of both 3x3 convolutions (and of the shortcut), or None for
            ordinary convolutions.
        act: the activation, a name in :data:`ACTIVATIONS` (the paper: ``"elu"``).

    All convolutions here carry a bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_levels: int,
        *,
        downsample: bool = False,
        dilation: int | None = None,
        act: str = "elu",
    ) -> None:
        super().__init__()
        check_activation(act, "CondResidualBlock")
        dil = 1 if dilation is None else dilation
        # each norm applies the activation after it in one autograd node (norm_activation.py)
        self.norm1 = CondInstanceNormPlusPlus(in_channels, num_levels, act=act)
        self.shortcut: nn.Module | None
        if downsample:
            # The first conv keeps the width; the second one changes it (and pools).
            self.conv1 = conv3x3(in_channels, in_channels, dilation=dil, bias=True)
            self.norm2 = CondInstanceNormPlusPlus(in_channels, num_levels, act=act)
            if dilation is None:
                self.conv2: nn.Module = ConvMeanPool(in_channels, out_channels, kernel_size=3)
                self.shortcut = ConvMeanPool(in_channels, out_channels, kernel_size=1)
            else:
                self.conv2 = conv3x3(in_channels, out_channels, dilation=dil, bias=True)
                self.shortcut = conv3x3(in_channels, out_channels, dilation=dil, bias=True)
        else:
            # The first conv changes the width; the second one keeps it.
            self.conv1 = conv3x3(in_channels, out_channels, dilation=dil, bias=True)
            self.norm2 = CondInstanceNormPlusPlus(out_channels, num_levels, act=act)
            self.conv2 = conv3x3(out_channels, out_channels, dilation=dil, bias=True)
            # Not used by the NCSN configuration (its non-downsampling blocks keep the
            # width, so the identity shortcut applies).
            self.shortcut = (
                conv3x3(in_channels, out_channels, dilation=dil, bias=True)
                if in_channels != out_channels
                else None
            )

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        # each convolution runs inside the norm's autograd node, which keeps only the norm's input
        h = self.norm1(x, level, conv=self.conv1)
        if isinstance(self.conv2, ConvMeanPool):
            h = self.conv2.pool(self.norm2(h, level, conv=self.conv2.conv))
        else:
            h = self.norm2(h, level, conv=self.conv2)
        skip = x if self.shortcut is None else self.shortcut(x)
        return skip + h


class CondRCUBlock(nn.Module):
    """Residual conv units (RCU) of RefineNet, made noise-conditional.

    ``num_units`` residual units in sequence; each applies ``layers_per_unit`` times
    (norm -> ELU -> 3x3 conv without bias) and adds its input back.
    """

    def __init__(
        self, channels: int, num_units: int, layers_per_unit: int, num_levels: int
    ) -> None:
        super().__init__()
        self.units = nn.ModuleList()
        for _ in range(num_units):
            layers = nn.ModuleList()
            for _ in range(layers_per_unit):
                layers.append(
                    nn.ModuleDict(
                        {
                            "norm": CondInstanceNormPlusPlus(channels, num_levels, act="elu"),
                            "conv": conv3x3(channels, channels, bias=False),
                        }
                    )
                )
            self.units.append(layers)

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            h = x
            for layer in unit:
                h = layer["norm"](h, level, conv=layer["conv"])
            x = x + h
        return x


class CondMSFBlock(nn.Module):
    """Multi-resolution fusion: norm -> 3x3 conv (with bias) on each input, resize, sum.

    Each input path is brought to ``features`` channels and bilinearly resized (with
    ``align_corners=True``, as in the reference) to the requested output size.
    """

    def __init__(self, in_channels: Sequence[int], features: int, num_levels: int) -> None:
        super().__init__()
        self.features = features
        self.norms = nn.ModuleList(CondInstanceNormPlusPlus(c, num_levels) for c in in_channels)
        self.convs = nn.ModuleList(conv3x3(c, features, bias=True) for c in in_channels)

    def forward(
        self, xs: Sequence[torch.Tensor], level: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        total: torch.Tensor | None = None
        for x, norm, conv in zip(xs, self.norms, self.convs, strict=True):
            h = norm(x, level, conv=conv)
            if tuple(h.shape[2:]) != tuple(size):
                h = F.interpolate(h, size=size, mode="bilinear", align_corners=True)
            total = h if total is None else total + h
        assert total is not None
        return total


def box_mean5(like: torch.Tensor) -> ConvSpec:
    """5x5 mean of each map, stride 1, zero padding that counts (``AvgPool2d(5, 1, 2)``), for maps like ``like``.

    A depthwise convolution with a constant 1/25 kernel: the same numbers to float rounding, about 8x
    faster than ``avg_pool2d`` with stride 1 on CPU, forward and backward (docs/results.md), and as a
    convolution it joins the preceding norm's autograd node. Built per call (a few hundred floats), so it
    adds nothing to the state dict.
    """
    channels = like.shape[1]
    kernel = torch.full((channels, 1, 5, 5), 1 / 25, dtype=like.dtype, device=like.device)
    return ConvSpec(kernel, None, (1, 1), (2, 2), (1, 1), channels)


class CondCRPBlock(nn.Module):
    """Chained residual pooling with *average* pooling (the paper's choice over max).

    After an ELU, a chain of ``num_stages`` (norm -> 5x5 average pool, stride 1 ->
    3x3 conv without bias) stages runs; each stage's output is added to the running
    result, so the block gathers context from growing neighbourhoods.
    The pooling pads with zeros that count in the average (PyTorch's default, as in
    the reference).
    """

    def __init__(self, channels: int, num_stages: int, num_levels: int) -> None:
        super().__init__()
        self.act = nn.ELU()
        self.norms = nn.ModuleList(
            CondInstanceNormPlusPlus(channels, num_levels) for _ in range(num_stages)
        )
        self.convs = nn.ModuleList(conv3x3(channels, channels, bias=False) for _ in range(num_stages))

    def forward(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        x = self.act(x)  # the block's input comes from a sum, not a norm: a plain ELU
        path = x
        for norm, conv in zip(self.norms, self.convs, strict=True):
            path = conv(norm(path, level, conv=box_mean5(path)))
            x = x + path
        return x


class CondRefineBlock(nn.Module):
    """A RefineNet refine block: RCU adaptation per input, fusion, CRP, output RCU.

    Args:
        in_channels: channels of each input path (one path for the first, coarsest
            block; two — encoder skip and previous refine output — for the others).
        features: channels of the block's output.
        num_levels: number of noise levels.
        is_last: the last (finest) block has three output residual units instead of one.

    With a single input there is no fusion step, so ``in_channels[0]`` must equal
    ``features``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        features: int,
        num_levels: int,
        *,
        is_last: bool = False,
    ) -> None:
        super().__init__()
        in_channels = list(in_channels)
        if not in_channels:
            raise ValueError("CondRefineBlock needs at least one input path")
        self.adapt = nn.ModuleList(
            CondRCUBlock(c, num_units=2, layers_per_unit=2, num_levels=num_levels)
            for c in in_channels
        )
        self.fuse: CondMSFBlock | None
        if len(in_channels) > 1:
            self.fuse = CondMSFBlock(in_channels, features, num_levels)
        else:
            if in_channels[0] != features:
                raise ValueError(
                    f"a single-input refine block keeps the width: in_channels "
                    f"{in_channels[0]} != features {features}"
                )
            self.fuse = None
        self.crp = CondCRPBlock(features, num_stages=2, num_levels=num_levels)
        self.out = CondRCUBlock(
            features, num_units=3 if is_last else 1, layers_per_unit=2, num_levels=num_levels
        )

    def forward(
        self, xs: Sequence[torch.Tensor], level: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        if len(xs) != len(self.adapt):
            raise ValueError(f"CondRefineBlock expects {len(self.adapt)} inputs, got {len(xs)}")
        hs = [adapt(x, level) for adapt, x in zip(self.adapt, xs, strict=True)]
        h = hs[0] if self.fuse is None else self.fuse(hs, level, size)
        h = self.crp(h, level)
        return self.out(h, level)
