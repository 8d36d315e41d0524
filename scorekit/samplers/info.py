"""What every sampler hands its ``callback`` after each step, and how its ``initial_noise`` is called."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import attrs
import torch

from scorekit.score import rows

#: the ``callback`` of samplers and of ``ScoreModel.sample`` / ``inpaint``: called with a :class:`SamplerStep`
Callback = Callable[[Any], None]


@attrs.frozen(kw_only=True, eq=False)
class SamplerStep:
    """One step of a sampler, as passed to ``callback(info)``.

    The float fields are computed only when a callback is given, so a run without one
    costs nothing extra. ``x`` is the state after the step; the sampler never modifies
    it afterwards, so a callback may keep it without copying. For a plain score network it is
    an inference tensor (:func:`scorekit.score.sampling_mode`): it can be read, but modifying
    it in place or using it in autograd needs ``x.clone()`` first (``summary`` holds ordinary tensors).
    """

    #: step index, counting from 0 over the whole run (all levels, warm-up included)
    step: int
    #: noise-level index from 0 (largest sigma) to L-1, or None for a single-level run
    level: int | None
    #: the noise level fed to the network, or None for an unconditional network
    sigma: float | None
    #: the step size of this step (annealed Langevin: alpha_i of Algorithm 1; HMC: leapfrog step)
    step_size: float
    #: mean over the batch of the per-example L2 norm of the score used in this step
    score_norm: float
    #: mean Metropolis acceptance probability of this step over the chains (None: no accept test)
    acceptance_rate: float | None = None
    #: whether the step belongs to an adaptation (warm-up) phase
    warmup: bool = False
    #: number of chains whose transition diverged in this step (None: not tracked)
    divergent: int | None = None
    #: the current samples, shaped like ``x_init``
    x: torch.Tensor
    #: the run's summary, on the last step of samplers that keep one (HMC: :class:`HMCSummary`)
    summary: Any = None


def mean_norm(t: torch.Tensor) -> float:
    """Mean over the batch of the per-example L2 norm of ``t`` ([B, ...])."""
    return rows(t.detach()).norm(dim=1).mean().item()


def takes_sigmas(initial_noise: Callable[..., Any]) -> bool:
    """Whether a sampler's ``initial_noise`` names a ``sigmas`` keyword (it then receives the composition's)."""
    try:
        param = inspect.signature(initial_noise).parameters.get("sigmas")
    except (TypeError, ValueError):  # no signature to read: the old call, (like, generator)
        return False
    return param is not None and param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD)


def draw_initial_noise(
    initial_noise: Callable[..., torch.Tensor], like: torch.Tensor, generator: torch.Generator | None,
    sigmas: torch.Tensor | None,
) -> torch.Tensor:
    """Call a sampler's ``initial_noise`` as the contract says: ``(like, generator)``, plus ``sigmas=`` when it
    names that keyword (one written before the keyword existed is called as it always was)."""
    if takes_sigmas(initial_noise):
        return initial_noise(like, generator, sigmas=sigmas)
    return initial_noise(like, generator)
