"""``tweedie_mlp``: an MLP denoiser ``D(x, sigma)`` seen as a score through Tweedie's formula.

For data perturbed by N(0, sigma^2 I), the best denoiser is ``E[x | x~]`` and Tweedie's
formula turns it into the score: ``s(x~, sigma) = (D(x~, sigma) - x~) / sigma^2``. The
denoiser uses EDM's preconditioning (Karras et al. 2022) with data scale ``sigma_data``:
``D = c_skip x + c_out F(c_in x, log(sigma) / 4)``.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from scorekit.options import build
from scorekit.validators import frozen, optional, positive, positive_int


def at_least_two(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An integer >= 2 (an input and an output layer)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(f"option '{attribute.name}' must be an integer >= 2, got {value!r}")


@frozen
class TweedieMLPConfig:
    """Options of ``tweedie_mlp``.

    Options:
        dim: features per example (examples are flattened); None sizes the network from the first batch.
        hidden: width of the hidden layers.
        depth: number of linear layers (>= 2).
        sigma_data: the data's standard deviation, for the preconditioning.
    """

    dim: int | None = attrs.field(default=None, validator=optional(positive_int))
    hidden: int = attrs.field(default=64, validator=positive_int)
    depth: int = attrs.field(default=3, validator=at_least_two)
    sigma_data: float = attrs.field(default=1.0, validator=positive)


class TweedieMLP(nn.Module):
    """``network(x, sigma) -> score shaped like x`` from the denoiser ``denoise(x, sigma)``.

    With the output layer initialised to zero, the untrained network is the exact score of
    N(0, sigma_data^2 I) perturbed by sigma: a sensible start for training and for samplers.
    """

    def __init__(self, config: TweedieMLPConfig) -> None:
        super().__init__()
        self.config = config
        self.body: nn.Sequential | None = None
        if config.dim is not None:
            self._build(config.dim)

    def _build(self, dim: int, **factory: Any) -> None:
        widths = [dim + 1] + [self.config.hidden] * (self.config.depth - 1) + [dim]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            if i:
                layers.append(nn.SiLU())
            layers.append(nn.Linear(n_in, n_out, **factory))
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.body = nn.Sequential(*layers)

    def _residual(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``F(c_in x, c_noise)``, shaped like ``x``."""
        flat = x.flatten(1)
        if self.body is None:
            self._build(flat.shape[1], device=x.device, dtype=x.dtype)
        c_in = (sigma.pow(2) + self.config.sigma_data**2).rsqrt()
        h = torch.cat([flat * c_in.unsqueeze(1), sigma.log().unsqueeze(1) / 4], dim=1)
        return self.body(h).reshape(x.shape)  # type: ignore[misc]

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """``D(x, sigma)``: the denoised estimate of the clean data, shaped like ``x``."""
        sigma = _require(sigma)
        s2, d2 = _per_example(sigma.pow(2), x), self.config.sigma_data**2
        c_skip, c_out = d2 / (s2 + d2), s2.sqrt() * self.config.sigma_data / (s2 + d2).sqrt()
        return c_skip * x + c_out * self._residual(x, sigma)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        sigma = _require(sigma)
        # (D - x) / sigma^2, simplified by hand: the subtraction D - x would lose digits at small sigma
        s2, d = _per_example(sigma.pow(2), x), self.config.sigma_data
        return -x / (s2 + d**2) + d * self._residual(x, sigma) / (s2.sqrt() * (s2 + d**2).sqrt())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # a checkpoint of a lazily sized network restores the size before the weights
        last = state_dict.get(f"{prefix}body.{2 * (self.config.depth - 1)}.weight")
        if self.body is None and last is not None:
            self._build(last.shape[0], device=last.device, dtype=last.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _require(sigma: torch.Tensor | None) -> torch.Tensor:
    if sigma is None:
        raise ValueError("tweedie_mlp is noise-conditional and needs sigma, got None")
    return sigma


def _per_example(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ``[B]`` tensor shaped to broadcast against ``x`` ``[B, ...]``."""
    return t.reshape(t.shape + (1,) * (x.ndim - 1))


def tweedie_mlp(*, sigmas: torch.Tensor | None = None, **options: Any) -> TweedieMLP:
    """Factory of the ``tweedie_mlp`` network (options: :class:`TweedieMLPConfig`).

    ``compose()`` passes the composition's ``sigmas``; the network only checks that there are
    some, since a Tweedie denoiser needs a noise level.
    """
    if sigmas is None:
        raise ValueError("network 'tweedie_mlp' is noise-conditional: compose it with sigmas (e.g. the default)")
    return TweedieMLP(build("network 'tweedie_mlp'", TweedieMLPConfig, options))


#: lets scorekit list and check the options this factory forwards (``scorekit plugins``, the contract suite)
tweedie_mlp.options_class = TweedieMLPConfig  # type: ignore[attr-defined]


__all__ = ["TweedieMLP", "TweedieMLPConfig", "tweedie_mlp"]
