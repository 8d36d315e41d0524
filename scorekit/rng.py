"""Random draws that honour an explicit ``torch.Generator``.

All randomness in scorekit goes through these helpers, so that a seeded generator
reproduces a call exactly. ``generator=None`` uses torch's default generator.
A generator on another device than the data (e.g. a CPU generator for CUDA data)
draws on its own device and moves the result.
"""

from __future__ import annotations

import torch


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return device if generator is None else generator.device


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``."""
    dev = _draw_device(generator, x.device)
    return torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)


def rand_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform [0, 1) noise shaped like ``x``."""
    dev = _draw_device(generator, x.device)
    return torch.rand(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)


def rademacher_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random signs (+1 / -1) shaped like ``x``."""
    dev = _draw_device(generator, x.device)
    bits = torch.randint(0, 2, x.shape, generator=generator, device=dev)
    return (bits.to(x.dtype) * 2 - 1).to(x.device)


def randint(high: int, size: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """``size`` integers uniform in ``[0, high)``, on ``device``."""
    dev = _draw_device(generator, device)
    return torch.randint(0, high, (size,), generator=generator, device=dev).to(device)


def categorical(
    probs: torch.Tensor, size: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``size`` indices drawn with replacement from the probabilities ``probs`` (1-D), on ``device``."""
    dev = _draw_device(generator, device)
    return torch.multinomial(probs.to(dev), size, replacement=True, generator=generator).to(device)


def uniform(n: int, device: torch.device, dtype: torch.dtype, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` uniform [0, 1) draws (e.g. for Metropolis tests)."""
    dev = _draw_device(generator, device)
    return torch.rand((n,), generator=generator, device=dev, dtype=dtype).to(device)
