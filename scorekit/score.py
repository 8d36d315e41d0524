"""The score function that estimators and samplers call: a network with its contract checked.

A network is ``network(x, sigma) -> tensor shaped like x``. :class:`ScoreFunction` wraps
one, checks that contract on every call (a shape mismatch is an error, never a silent
broadcast) and exposes ``energy(x, sigma)`` when the network has one, for samplers
that need a Metropolis correction. :func:`sampling_mode` is the grad mode every sampler
runs under, and :func:`ordinary` turns what it made there into a tensor the caller owns.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from scorekit.errors import CompositionError, DataError

#: what torch says when a network uses autograd under ``torch.inference_mode()``
_AUTOGRAD_OFF = ("inference tensor", "does not require grad and does not have a grad_fn")


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a per-example ``[B]`` tensor broadcasts against ``[B, ...]``."""
    missing = ndim - t.ndim
    if missing < 0:
        raise ValueError(f"append_dims: tensor has {t.ndim} dims, more than the target {ndim}")
    return t.reshape(t.shape + (1,) * missing)


def rows(t: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` as ``[B, n]`` (one row per example; ``[B]`` data gives ``[B, 1]``)."""
    return t.reshape(t.shape[0], -1)


def sigma_batch(sigma: float | torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """A noise level as the ``[B]`` tensor a network receives, in the dtype and on the device of ``x``."""
    if sigma is None:
        return None
    return torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0]).contiguous()


class ScoreFunction:
    """``score(x, sigma)``: calls ``network`` and checks its output shape.

    ``label`` names the network in error messages. A network that uses autograd inside
    its forward (``torch.autograd.grad``, ``torch.func.grad``) must say so with a class
    attribute ``score_needs_autograd = True``, unless it has an ``energy`` (such a network
    is assumed to compute its score as ``-grad E``; an analytic one may declare
    ``score_needs_autograd = False``): see :attr:`needs_autograd` and :func:`sampling_mode`.
    """

    def __init__(self, network: nn.Module, label: str = "network") -> None:
        self.network = network
        self.label = label

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        try:
            out = self.network(x, sigma)
        except ValueError as exc:  # networks report input they cannot take with ValueError
            raise DataError(f"{self.label} rejected input of shape {tuple(x.shape)}: {exc}") from exc
        except RuntimeError as exc:
            self._explain_autograd_off(exc)
            raise
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise DataError(
                f"{self.label} returned shape {got} for input of shape {tuple(x.shape)}; "
                "a score network must return a tensor shaped like its input"
            )
        return out

    @property
    def has_energy(self) -> bool:
        """Whether the network exposes ``energy(x, sigma) -> [B]`` (needed for Metropolis tests)."""
        return callable(getattr(self.network, "energy", None))

    @property
    def needs_autograd(self) -> bool:
        """Whether computing the score needs autograd: the network's ``score_needs_autograd``
        attribute when it has one, else whether it has an energy (score = -grad E)."""
        declared = getattr(self.network, "score_needs_autograd", None)
        return self.has_energy if declared is None else bool(declared)

    def _explain_autograd_off(self, exc: RuntimeError) -> None:
        """Raise a :class:`CompositionError` naming the fix if ``exc`` is torch refusing autograd
        under :func:`sampling_mode`'s ``torch.inference_mode()``; return otherwise."""
        if torch.is_inference_mode_enabled() and any(m in str(exc).lower() for m in _AUTOGRAD_OFF):
            raise CompositionError(
                f"{self.label} uses autograd to compute its score, and samplers run a network that does not "
                "declare it under torch.inference_mode(), where autograd is off (torch said: "
                f"{str(exc).splitlines()[0]}). Set the class attribute score_needs_autograd = True on the "
                "network: samplers then run it under torch.no_grad()"
            ) from exc

    def energy(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """Per-example energy ``E(x, sigma)`` with ``score = -dE/dx``."""
        if not self.has_energy:
            raise DataError(f"{self.label} has no energy(x, sigma); only its score is available")
        try:
            out = self.network.energy(x, sigma)
        except RuntimeError as exc:
            self._explain_autograd_off(exc)
            raise
        if out.shape != x.shape[:1]:
            raise DataError(f"{self.label}.energy returned shape {tuple(out.shape)}; expected [batch] = {tuple(x.shape[:1])}")
        return out


def as_score(score: Any) -> ScoreFunction:
    """``score`` as a :class:`ScoreFunction` (a bare network or callable ``f(x, sigma)`` is wrapped)."""
    return score if isinstance(score, ScoreFunction) else ScoreFunction(score)


def sampling_mode(score: Any) -> AbstractContextManager[Any]:
    """The grad mode a sampler runs its loop under, for ``score`` (a :class:`ScoreFunction` or a network).

    ``torch.inference_mode()`` when the score needs no autograd (a plain score network): it
    skips autograd's bookkeeping (version counters, view tracking; no faster than
    ``torch.no_grad()`` on ncsn-digits, docs/results.md). ``torch.no_grad()`` when it does (:attr:`ScoreFunction.needs_autograd`:
    an energy network's score is ``-grad E``, which autograd computes and inference mode would
    forbid). Tensors made under inference mode are inference tensors, which cannot be modified
    in place outside it nor saved for backward: a sampler returns :func:`ordinary` of its
    result, called after the block. A network that needs autograd but does not declare it
    fails with a :class:`CompositionError` naming ``score_needs_autograd``.
    """
    return torch.no_grad() if as_score(score).needs_autograd else torch.inference_mode()


def ordinary(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` as an ordinary tensor: a clone, made with inference mode off, of an inference tensor
    (see :func:`sampling_mode`); any other tensor, or None, as it is."""
    if t is None or not t.is_inference():
        return t
    with torch.inference_mode(False):
        return t.clone()
