"""The composed model: one network, one estimator, one sampler and the noise levels."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from scorekit.batch_checks import check_batch, check_same_device_dtype
from scorekit.errors import CompositionError, DataError, DivergenceError
from scorekit.samplers.info import Callback
from scorekit.samplers.inpaint import check_known, check_mask
from scorekit.score import ScoreFunction


class ScoreModel(nn.Module):
    """What :func:`scorekit.compose` returns.

    ``model.loss(x)`` trains, ``model.sample(x_init)`` generates, ``model.inpaint(y, mask)``
    fills in unknown entries. The network is a submodule and the sigmas a buffer, so
    ``model.to(device)``, ``model.parameters()`` and ``model.state_dict()`` work as usual.

    These methods are the boundary: they check their inputs once, and the estimator and
    sampler they call trust them (as they trust the sigmas, validated by ``compose()``).
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
        self._materialized = False

    def materialize(self, example: torch.Tensor) -> ScoreModel:
        """Call the network once, under ``torch.no_grad()``, on the first example of ``example``
        (``[B, ...]``) at the largest sigma; returns the model.

        A network that sizes itself from its first batch (the default ``mlp``) builds its
        layers here, outside any autograd transform (``torch.func.jvp`` of ``ssm`` and
        ``exact``): call it before collecting the parameters (an optimizer, an EMA, DDP).
        A network that cannot take this data, or returns the wrong shape, fails here with a
        :class:`DataError` naming the input shape, before any work is done. ``loss``,
        ``losses`` and ``sample`` call it on their first batch; once done it does nothing.
        """
        if not self._materialized:
            x = check_batch(example, "example")
            check_same_device_dtype(self.network, x, "example")
            self._materialize(x)
        return self

    def with_network(self, network: nn.Module) -> ScoreModel:
        """This composition calling ``network`` instead of ``self.network``.

        For a module that wraps this model's network (``DistributedDataParallel``,
        ``torch.compile``): ``model.with_network(wrapped).loss(x)`` trains through the
        wrapper while the optimizer, the EMA and checkpoints keep ``model``. The view
        shares the estimator, the sampler, the names and the sigmas buffer itself (not a
        copy); it counts as materialised when this model is, so :meth:`materialize` this
        model first rather than running the wrapper on a one-example batch.
        """
        view = ScoreModel(network, self.estimator, self.sampler, self.sigmas, self.names)
        view._materialized = self._materialized
        return view

    def _materialize(self, x: torch.Tensor) -> None:
        """:meth:`materialize` on a batch the caller has checked."""
        if self._materialized:
            return
        sigmas = self._sigmas_for(x)
        sigma = None if sigmas is None else sigmas[:1]
        with torch.no_grad():
            try:
                self.score(x[:1], sigma)
            except RuntimeError as exc:  # e.g. a layer sized for other data: say which input did it
                raise DataError(f"{self.score.label} failed on input of shape {tuple(x.shape)}: {exc}") from exc
        self._materialized = True

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
        self._materialize(x)
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
        self._materialize(x_init)
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
        noise unless ``x_init`` (shaped like ``y``) is given. The sampler receives ``mask``
        as a bool tensor on ``y``'s device.
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
        mask = check_mask(mask, y)
        check_known(y, mask)
        if x_init is not None:
            x_init = check_batch(x_init, "x_init")
            if x_init.shape != y.shape:
                raise DataError(f"x_init of shape {tuple(x_init.shape)} must have the shape of y, {tuple(y.shape)}")
        return inpaint(
            self.score, y, mask, x_init=x_init, sigmas=self._sigmas_for(y), generator=generator, callback=callback
        )
