"""The paper's toy score network (section 3, Fig. 2): an MLP with softplus, optionally noise-conditional."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from scorekit.score import append_dims

#: activation by option value
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}


def _check(name: str, ok: bool, allowed: str, value: object) -> None:
    if not ok:
        raise ValueError(f"option {name!r} must be {allowed}, got {value!r}")


class MLP(nn.Module):
    """``depth`` linear layers of width ``hidden``: ``network(x, sigma) -> shaped like x``.

    Any data shape: each example is flattened to ``dim`` features. ``dim=None`` takes it
    from the first batch the network sees: ``ScoreModel.materialize(x)`` runs that forward
    before an optimizer collects the parameters (:func:`scorekit.training.train` calls it;
    ``model.loss`` and ``model.sample`` do on their first batch). With ``sigmas`` it
    is noise-conditional: ``log sigma`` is appended to the input and, with
    ``sigma_scaling``, the output is divided by sigma (NCSNv2's parametrisation, matching
    ``||s|| ~ 1/sigma`` of a trained model, section 4.2).
    """

    def __init__(
        self,
        *,
        dim: int | None = None,
        hidden: int = 128,
        depth: int = 3,
        activation: str = "softplus",
        sigmas: Sequence[float] | torch.Tensor | None = None,
        sigma_scaling: bool = True,
    ) -> None:
        super().__init__()
        _check("dim", dim is None or (isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1), "None or an integer >= 1", dim)
        _check("hidden", isinstance(hidden, int) and hidden >= 1, "an integer >= 1", hidden)
        _check("depth", isinstance(depth, int) and depth >= 2, "an integer >= 2 (input and output layers)", depth)
        _check("activation", activation in ACTIVATIONS, f"one of {list(ACTIVATIONS)}", activation)
        _check("sigma_scaling", isinstance(sigma_scaling, bool), "True or False", sigma_scaling)
        self.hidden, self.depth, self.activation = hidden, depth, activation
        self.conditional = sigmas is not None
        self.sigma_scaling = sigma_scaling and self.conditional
        self.dim = dim
        self.body: nn.Sequential | None = None
        if dim is not None:
            self._build(dim)

    def _build(self, dim: int, **factory: Any) -> None:
        widths = [dim + int(self.conditional)] + [self.hidden] * (self.depth - 1) + [dim]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            if i:
                layers.append(ACTIVATIONS[self.activation]())
            layers.append(nn.Linear(n_in, n_out, **factory))
        self.body = nn.Sequential(*layers)
        self.dim = dim

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        h = x.reshape(x.shape[0], -1)  # [B] data: B examples of one feature
        if self.body is None:
            self._build(h.shape[1], device=x.device, dtype=x.dtype)
        if h.shape[1] != self.dim:
            raise ValueError(f"MLP(dim={self.dim}) got examples of {h.shape[1]} features (input shape {tuple(x.shape)})")
        if self.conditional:
            if sigma is None:
                raise ValueError("this MLP is noise-conditional (composed with sigmas) and needs sigma, got None")
            h = torch.cat([h, sigma.log().unsqueeze(1)], dim=1)
        out = self.body(h).reshape(x.shape)  # type: ignore[misc]
        if self.sigma_scaling:
            out = out / append_dims(sigma, x.ndim)  # type: ignore[arg-type]
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # a checkpoint of a lazily sized MLP restores the size before the weights
        last = state_dict.get(f"{prefix}body.{2 * (self.depth - 1)}.weight")
        if self.body is None and last is not None:
            self._build(last.shape[0], device=last.device, dtype=last.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
