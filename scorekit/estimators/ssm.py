"""Sliced score matching (Song et al. 2019), Eq. 3 of Song & Ermon (2019).

``v^T (ds/dx) v`` is a Jacobian-vector product. The default computes it in forward mode
(``torch.func.jvp``: one extra tangent pass through the network) instead of the double
backprop of the original implementation (``jacobian_mode="reverse"``, kept as the
measured baseline). Both modes draw the same random numbers in the same order, so for
one generator seed they give the same loss and the same gradients.
"""

from __future__ import annotations

from typing import Callable

import attrs
import torch

from scorekit.estimators.common import WEIGHTINGS, perturb
from scorekit.rng import rademacher_like, randn_like
from scorekit.score import ScoreFunction
from scorekit.validators import boolean, frozen, one_of, positive_int

Projector = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]

#: distribution of the projections v (both have E[v v^T] = I)
PROJECTIONS: dict[str, Projector] = {"gaussian": randn_like, "rademacher": rademacher_like}

ScoreAt = Callable[[torch.Tensor], torch.Tensor]


def _forward(f: ScoreAt, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s(x), J(x) v)`` by forward-mode AD."""
    return torch.func.jvp(f, (x,), (v,))


def _reverse(f: ScoreAt, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s(x), v^T J(x))`` by double backprop (the original SSM implementation)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = f(x)
        (vjp,) = torch.autograd.grad((s * v).sum(), x, create_graph=True)
    return s, vjp


#: how ``(s, J v)`` (or ``v^T J``) is computed, by option value
JACOBIAN_MODES: dict[str, Callable[[ScoreAt, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "forward": _forward,
    "reverse": _reverse,
}


@frozen
class SlicedScoreMatching:
    """Per-example SSM loss ``v^T (ds/dx) v + 1/2 ||s||^2`` (SSM-VR, Eq. 3 as the paper prints it)
    or ``v^T (ds/dx) v + 1/2 (v^T s)^2`` (plain SSM, ``variance_reduction=False``).

    ``n_projections`` projections per example are averaged. With ``sigmas=None`` it matches
    the score of the clean data; with sigmas it is noise-conditional: each example draws a
    level, is perturbed with ``N(0, sigma^2 I)`` and its loss is weighted by lambda(sigma).
    """

    projection: str = attrs.field(default="gaussian", validator=one_of(*PROJECTIONS))
    n_projections: int = attrs.field(default=1, validator=positive_int)
    variance_reduction: bool = attrs.field(default=True, validator=boolean)
    jacobian_mode: str = attrs.field(default="forward", validator=one_of(*JACOBIAN_MODES))
    weighting: str = attrs.field(default="sigma2", validator=one_of(*WEIGHTINGS))

    def __call__(
        self, score: ScoreFunction, x: torch.Tensor, *, sigmas: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        batch, n = x.shape[0], self.n_projections
        sigma = weight = None
        if sigmas is not None:
            x, sigma, _ = perturb(x, sigmas, generator)
            weight = WEIGHTINGS[self.weighting](sigma)
        # n projections per example: repeat the batch so one network pass serves them all
        xs = x.repeat_interleave(n, dim=0) if n > 1 else x
        sig = sigma.repeat_interleave(n) if (sigma is not None and n > 1) else sigma
        v = PROJECTIONS[self.projection](xs, generator)
        s, jv = JACOBIAN_MODES[self.jacobian_mode](lambda inp: score(inp, sig), xs, v)
        vjv = (v * jv).flatten(1).sum(1)
        if self.variance_reduction:
            second = 0.5 * s.pow(2).flatten(1).sum(1)
        else:
            second = 0.5 * (v * s).flatten(1).sum(1).pow(2)
        per_example = (vjv + second).reshape(batch, n).mean(1)
        return per_example if weight is None else weight * per_example
