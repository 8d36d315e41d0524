"""The composed model: one network, one estimator, one sampler and the noise levels."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from scorekit.batch_checks import check_batch, check_same_device_dtype
from scorekit.errors import CompositionError, DataError, DivergenceError
from scorekit.score import ScoreFunction

Callback = Callable[[Any], None]


class ScoreModel(nn.Module):
    """What :func:`scorekit.compose` returns.

    ``model.loss(x)`` trains, ``model.sample(x_init)`` generates, ``model.inpaint(y, mask)``
    fills in unknown entries. The network is a submodule and the sigmas a buffer, so
    ``model.to(device)``, ``model.parameters()`` and ``model.state_dict()`` work as usual.
    """

    sigmas: torch.Tensor | None

    def __init__(
        self,
        network: nn.Module,
        estimator: Callable[..., torch.Tensor] | None,
        sampler: Callable[..., torch.Tensor] | None,
        sigmas: torch.Tensor | None,
        names: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.estimator = estimator
        self.sampler = sampler
        self.register_buffer("sigmas", sigmas)
        self.names = dict(names or {})
        self.score = ScoreFunction(network, label=f"network {self.names.get('network', type(network).__name__)!r}")
        self._dry_run_done = False

    def _dry_run(self, x: torch.Tensor) -> None:
        """Call the network once on one example, outside any autograd transform.

        Networks that size themselves from the first batch (the default ``mlp``) build
        their layers here rather than inside ``torch.func.jvp``; a wrong output shape
        is reported before any work is done.
        """
        if self._dry_run_done:
            return
        sigmas = self._sigmas_for(x)
        sigma = None if sigmas is None else sigmas[:1]
        with torch.no_grad():
            try:
                self.score(x[:1], sigma)
            except RuntimeError as exc:  # e.g. a layer sized for other data: say which input did it
                raise DataError(f"{self.score.label} failed on input of shape {tuple(x.shape)}: {exc}") from exc
        self._dry_run_done = True

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v!r}" for k, v in self.names.items())
        levels = "None" if self.sigmas is None else f"{self.sigmas.numel()} levels {self.sigmas[0]:.3g}..{self.sigmas[-1]:.3g}"
        return f"ScoreModel({parts}, sigmas={levels})"

    # --- training ---------------------------------------------------------------------

    def losses(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-example losses ``[B]`` of the estimator (the caller reduces)."""
        if self.estimator is None:
            raise CompositionError(
                "this composition has no estimator (composed with estimator=None, for sampling only); "
                "compose with estimator='dsm', 'ssm' or 'exact' to train"
            )
        x = check_batch(x)
        check_same_device_dtype(self.network, x)
        self._dry_run(x)
        per_example = self.estimator(self.score, x, sigmas=self._sigmas_for(x), generator=generator)
        if per_example.shape != x.shape[:1]:
            raise DataError(
                f"estimator {self.names.get('estimator')!r} returned losses of shape {tuple(per_example.shape)}; "
                f"an estimator must return one loss per example, shape {tuple(x.shape[:1])}"
            )
        if not torch.isfinite(per_example).all():
            bad = (~torch.isfinite(per_example)).nonzero().flatten().tolist()
            raise DivergenceError(
                f"the loss is NaN or inf for examples {bad[:10]}: the network's output is not finite. "
                "Lower the learning rate, clip gradients, or check the data scaling"
            )
        return per_example

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Scalar loss: the mean of the per-example losses (Eq. 6 for ``dsm``)."""
        return self.losses(x, generator).mean()

    # --- sampling ---------------------------------------------------------------------

    def _require_sampler(self, what: str) -> Any:
        if self.sampler is None:
            raise CompositionError(
                f"this composition has no sampler (composed with sampler=None, for training only); cannot {what}. "
                "Compose with sampler='langevin', 'annealed_langevin' or 'hmc'"
            )
        return self.sampler

    def _sigmas_for(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.sigmas is None else self.sigmas.to(device=x.device, dtype=x.dtype)

    def sample(
        self, x_init: torch.Tensor, generator: torch.Generator | None = None, callback: Callback | None = None
    ) -> torch.Tensor:
        """Run the sampler from ``x_init`` (one chain per example); returns a tensor shaped like ``x_init``."""
        sampler = self._require_sampler("sample")
        x_init = check_batch(x_init, "x_init")
        check_same_device_dtype(self.network, x_init, "x_init")
        self._dry_run(x_init)
        return sampler(self.score, x_init, sigmas=self._sigmas_for(x_init), generator=generator, callback=callback)

    def initial_noise(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The sampler's default starting point for data shaped like ``like`` (uniform noise for NCSN)."""
        sampler = self._require_sampler("draw initial noise")
        init = getattr(sampler, "initial_noise", None)
        if init is None:
            raise CompositionError(f"sampler {self.names.get('sampler')!r} has no default initial noise; pass x_init")
        return init(like, generator)

    def inpaint(
        self,
        y: torch.Tensor,
        mask: torch.Tensor,
        x_init: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> torch.Tensor:
        """Fill the entries of ``y`` where ``mask`` is 0 (Algorithm 2); known entries come back equal to ``y``.

        ``mask`` (bool or 0/1 float) is 1 on known entries and broadcasts to ``y``; the
        unknown entries of ``y`` are ignored. They start from the sampler's initial
        noise unless ``x_init`` is given.
        """
        sampler = self._require_sampler("inpaint")
        inpaint = getattr(sampler, "inpaint", None)
        if inpaint is None:
            raise CompositionError(
                f"sampler {self.names.get('sampler')!r} does not support inpainting; "
                "use the Langevin family ('langevin' or 'annealed_langevin')"
            )
        if not isinstance(y, torch.Tensor) or y.ndim < 1 or y.shape[0] == 0 or not y.is_floating_point():
            raise DataError(f"y must be a floating tensor [batch, ...], got {getattr(y, 'shape', type(y).__name__)}")
        check_same_device_dtype(self.network, y, "y")
        if x_init is not None:
            x_init = check_batch(x_init, "x_init")
        return inpaint(
            self.score, y, mask, x_init=x_init, sigmas=self._sigmas_for(y), generator=generator, callback=callback
        )
