"""Exact (Hyvarinen) score matching, Eq. 1 of Song & Ermon (2019).

The Jacobian trace needs one tangent per data dimension; they run as one vectorised
forward-mode pass (``torch.func.vmap`` over ``torch.func.jvp``), not a Python loop.
It assumes the network treats examples independently (no batch norm across the batch).
"""

from __future__ import annotations

import attrs
import torch

from scorekit.errors import DataError
from scorekit.estimators.common import WEIGHTINGS, LevelDraw
from scorekit.score import ScoreFunction
from scorekit.validators import frozen, one_of, optional, positive_int


@frozen
class ExactScoreMatching(LevelDraw):
    """Per-example ``tr(ds/dx) + 1/2 ||s||^2`` (Eq. 1).

    Costs D tangent passes for D data dimensions, so inputs with more than ``max_dim``
    dimensions are refused (use ``ssm``). ``chunk_size`` bounds how many tangents run at
    once (memory). With sigmas it is noise-conditional like ``ssm``, drawing levels as ``dsm`` does.
    """

    max_dim: int = attrs.field(default=1024, validator=positive_int)
    chunk_size: int | None = attrs.field(default=None, validator=optional(positive_int))
    weighting: str = attrs.field(default="sigma2", validator=one_of(*WEIGHTINGS))

    def __call__(
        self, score: ScoreFunction, x: torch.Tensor, *, sigmas: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        dim = x[0].numel()
        if dim > self.max_dim:
            raise DataError(
                f"estimator 'exact' needs {dim} Jacobian passes for data of {dim} dimensions, above its "
                f"max_dim={self.max_dim}; use estimator='ssm' (sliced score matching), or raise max_dim"
            )
        sigma = weight = None
        if sigmas is not None:
            x, sigma, _ = self.perturb(x, sigmas, generator)
            weight = WEIGHTINGS[self.weighting](sigma)

        def f(inp: torch.Tensor) -> torch.Tensor:
            return score(inp, sigma)

        s = f(x)
        # tangent d: basis vector e_d for every example; jvp gives column d of each example's Jacobian
        basis = torch.eye(dim, dtype=x.dtype, device=x.device).reshape(dim, 1, *x.shape[1:]).expand(dim, *x.shape)
        columns = torch.func.vmap(lambda t: torch.func.jvp(f, (x,), (t,))[1], chunk_size=self.chunk_size)(basis)
        trace = columns.reshape(dim, x.shape[0], dim).diagonal(dim1=0, dim2=2).sum(-1)
        per_example = trace + 0.5 * s.pow(2).flatten(1).sum(1)
        return per_example if weight is None else weight * per_example
