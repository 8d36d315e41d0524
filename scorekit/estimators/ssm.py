"""Sliced score matching (Song et al. 2019), Eq. 3 of Song & Ermon (2019).

``v^T (ds/dx) v`` needs the Jacobian of the score along ``v``. Three ways to get it
(option ``jacobian_mode``):

- ``"forward"`` (default): forward-mode AD, ``torch.func.jvp``, one tangent pass beside the
  primal. With ``n_projections = k > 1`` the primal pass runs once and the k tangents run
  as one ``torch.func.vmap`` over them, instead of repeating the batch k times.
- ``"reverse"``: double backprop, the original implementation, kept as the measured
  baseline; it repeats the batch once per projection.
- ``"finite_difference"``: FD-SSM (Pang et al., NeurIPS 2020): ``s(x + eps v)`` and
  ``s(x - eps v)`` in one batched pass, no second-order autograd at all. Exact for a
  linear score, O(eps^2) biased otherwise.

All three draw the same random numbers in the same order, so for one generator seed the
forward and reverse modes give the same loss and gradients (to float rounding), and the
finite-difference mode the same up to its O(eps^2) bias.
"""

from __future__ import annotations

from typing import Callable

import attrs
import torch

from scorekit.estimators.common import WEIGHTINGS, LevelDraw
from scorekit.rng import rademacher_like, randn_like
from scorekit.score import ScoreFunction
from scorekit.validators import boolean, frozen, one_of, positive, positive_int

Projector = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]

#: distribution of the projections v (both have E[v v^T] = I)
PROJECTIONS: dict[str, Projector] = {"gaussian": randn_like, "rademacher": rademacher_like}

#: ``(score, x [B, ...], sigma [B] or None, projections v [k, B, ...], fd_eps) -> (s(x) [B, ...], J v [k, B, ...])``
JacobianMode = Callable[
    [ScoreFunction, torch.Tensor, "torch.Tensor | None", torch.Tensor, float], "tuple[torch.Tensor, torch.Tensor]"
]


def _tile(t: torch.Tensor, copies: int) -> torch.Tensor:
    """``copies`` copies of a batch ``[B, ...]`` stacked along the batch dimension: ``[copies * B, ...]``."""
    return t.unsqueeze(0).expand(copies, *t.shape).reshape(copies * t.shape[0], *t.shape[1:])


def forward_jvp(
    score: ScoreFunction, x: torch.Tensor, sigma: torch.Tensor | None, v: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s(x), J(x) v_j for each j)`` by forward-mode AD; the primal is computed once for all k tangents."""

    def f(inp: torch.Tensor) -> torch.Tensor:
        return score(inp, sigma)

    if v.shape[0] == 1:
        s, jv = torch.func.jvp(f, (x,), (v[0],))
        return s, jv.unsqueeze(0)
    return torch.func.vmap(lambda t: torch.func.jvp(f, (x,), (t,)), out_dims=(None, 0))(v)


def reverse_vjp(
    score: ScoreFunction, x: torch.Tensor, sigma: torch.Tensor | None, v: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s(x), v_j^T J(x) for each j)`` by double backprop on the batch repeated once per projection
    (``v^T J v`` is the same number whichever side ``v`` multiplies)."""
    k = v.shape[0]
    with torch.enable_grad():
        xs = _tile(x.detach(), k).requires_grad_(True)
        s = score(xs, None if sigma is None else _tile(sigma, k))
        (vjp,) = torch.autograd.grad((s * v.reshape(s.shape)).sum(), xs, create_graph=True)
    return s[: x.shape[0]], vjp.reshape(v.shape)


def finite_difference(
    score: ScoreFunction, x: torch.Tensor, sigma: torch.Tensor | None, v: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """FD-SSM: ``s(x + eps v)`` and ``s(x - eps v)`` in one pass of ``2 k B`` examples, then
    ``J v ~ (s+ - s-) / (2 eps)`` and ``s ~ (s+ + s-) / 2`` (averaged over the k projections).

    Both are exact for an affine score. Otherwise the difference is biased by O(eps^2)
    (``eps^2 / 6`` times the third derivative along v) and the mean by ``eps^2 / 2`` times
    the second derivative along v.
    """
    k = v.shape[0]
    points = torch.cat([x.unsqueeze(0) + eps * v, x.unsqueeze(0) - eps * v])  # [2k, B, ...]
    s = score(points.reshape(2 * k * x.shape[0], *x.shape[1:]), None if sigma is None else _tile(sigma, 2 * k))
    plus, minus = s.reshape(2, k, *x.shape).unbind(0)
    return (0.5 * (plus + minus)).mean(0), (plus - minus) / (2.0 * eps)


#: how ``(s, J v)`` is computed, by option value
JACOBIAN_MODES: dict[str, JacobianMode] = {
    "forward": forward_jvp,
    "reverse": reverse_vjp,
    "finite_difference": finite_difference,
}


def _per_projection_dot(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``v_j . t_j`` per projection and example: ``[k, B, ...] x [k or 1, B, ...] -> [k, B]``."""
    return (v * t).flatten(2).sum(2)


@frozen
class SlicedScoreMatching(LevelDraw):
    """Per-example SSM loss ``v^T (ds/dx) v + 1/2 ||s||^2`` (SSM-VR, Eq. 3 as the paper prints it)
    or ``v^T (ds/dx) v + 1/2 (v^T s)^2`` (plain SSM, ``variance_reduction=False``).

    ``n_projections`` projections per example are averaged. With ``sigmas=None`` it matches
    the score of the clean data; with sigmas it is noise-conditional: each example draws a
    level (uniformly, or by ``level_median`` / ``level_std`` / ``level_uniform`` as in
    ``dsm``), is perturbed with ``N(0, sigma^2 I)`` and its loss is weighted by lambda(sigma).
    ``jacobian_mode`` picks how ``J v`` is computed (see the module docstring); ``fd_eps`` is
    the step of ``"finite_difference"`` along each projection (the points are ``x +- fd_eps v``).
    """

    projection: str = attrs.field(default="gaussian", validator=one_of(*PROJECTIONS))
    n_projections: int = attrs.field(default=1, validator=positive_int)
    variance_reduction: bool = attrs.field(default=True, validator=boolean)
    jacobian_mode: str = attrs.field(default="forward", validator=one_of(*JACOBIAN_MODES))
    fd_eps: float = attrs.field(default=1e-3, validator=positive)
    weighting: str = attrs.field(default="sigma2", validator=one_of(*WEIGHTINGS))

    def __call__(
        self, score: ScoreFunction, x: torch.Tensor, *, sigmas: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        k, batch = self.n_projections, x.shape[0]
        sigma = weight = None
        if sigmas is not None:
            x, sigma, _ = self.perturb(x, sigmas, generator)
            weight = WEIGHTINGS[self.weighting](sigma)
        # drawn as one [B k, ...] block, example-major: the order every mode has always drawn in
        v = PROJECTIONS[self.projection](x.repeat_interleave(k, dim=0) if k > 1 else x, generator)
        v = v.reshape(batch, k, *x.shape[1:]).transpose(0, 1)  # [k, B, ...]
        s, jv = JACOBIAN_MODES[self.jacobian_mode](score, x, sigma, v, self.fd_eps)
        vjv = _per_projection_dot(v, jv)  # [k, B]
        if self.variance_reduction:
            per_example = vjv.mean(0) + 0.5 * s.pow(2).flatten(1).sum(1)  # ||s||^2 is the same for every v
        else:
            per_example = (vjv + 0.5 * _per_projection_dot(v, s.unsqueeze(0)).pow(2)).mean(0)
        return per_example if weight is None else weight * per_example
