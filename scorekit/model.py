"""The composed model: one network, one estimator, one sampler and the noise levels."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from scorekit.batch_checks import check_batch, check_callback, check_generator, check_same_device_dtype
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
        # a state dict never replaces the noise levels the model was composed with
        self.register_load_state_dict_pre_hook(_check_sigmas_on_load)

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
            except (RuntimeError, IndexError) as exc:  # e.g. a layer sized for other data: say which input did it
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
        check_generator(generator)
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
        check_generator(generator)
        check_callback(callback)
        self._materialize(x_init)
        return sampler(self.score, x_init, sigmas=self._sigmas_for(x_init), generator=generator, callback=callback)

    def initial_noise(self, like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The sampler's default starting point for data shaped like ``like`` (uniform noise for NCSN)."""
        sampler = self._require_sampler("draw initial noise")
        init = getattr(sampler, "initial_noise", None)
        if init is None:
            raise CompositionError(f"sampler {self.names.get('sampler')!r} has no default initial noise; pass x_init")
        if not isinstance(like, torch.Tensor) or like.ndim < 2 or like.shape[0] == 0 or not like.is_floating_point():
            got = (f"{like.dtype} tensor of shape {tuple(like.shape)}" if isinstance(like, torch.Tensor)
                   else type(like).__name__)
            raise DataError(f"like must be a floating tensor [batch, ...] (the noise takes its shape, dtype and "
                            f"device), got {got}")
        check_same_device_dtype(self.network, like, "like")
        check_generator(generator)
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
        if not isinstance(y, torch.Tensor) or y.ndim < 2 or y.shape[0] == 0 or not y.is_floating_point():
            raise DataError(f"y must be a floating tensor [batch, ...], got {getattr(y, 'shape', type(y).__name__)}")
        check_same_device_dtype(self.network, y, "y")
        check_generator(generator)
        check_callback(callback)
        mask = check_mask(mask, y)
        check_known(y, mask)
        if x_init is not None:
            x_init = check_batch(x_init, "x_init")
            if x_init.shape != y.shape:
                raise DataError(f"x_init of shape {tuple(x_init.shape)} must have the shape of y, {tuple(y.shape)}")
            check_same_device_dtype(self.network, x_init, "x_init")
        return inpaint(
            self.score, y, mask, x_init=x_init, sigmas=self._sigmas_for(y), generator=generator, callback=callback
        )


# --- loading weights ----------------------------------------------------------------------


def _levels(t: torch.Tensor) -> str:
    values = [f"{v:.4g}" for v in t.detach().double().cpu().flatten().tolist()]
    shown = values if len(values) <= 5 else values[:3] + ["...", values[-1]]
    return f"{len(values)} levels [{', '.join(shown)}]"


def _sigma_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's noise-level tables: every buffer (or frozen parameter) named ``sigmas``, by state-dict name."""
    found = {name: t for name, t in module.named_buffers() if name.rsplit(".", 1)[-1] == "sigmas"}
    found.update({name: p for name, p in module.named_parameters()
                  if name.rsplit(".", 1)[-1] == "sigmas" and not p.requires_grad})
    return found


def _check_sigmas_on_load(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: a state dict whose noise levels differ from the model's is an error.

    Loading it would replace the composed sigmas (the model's buffer, or a network's own
    copy) without a word, and every loss and sample would then use other levels. Holds for
    ``strict=False`` too: that leaves keys out, it does not accept conflicting values.
    A state dict without the key keeps the model's own levels.
    """
    own = _sigma_tensors(module)
    for name, current in own.items():
        key = prefix + name
        if key not in state_dict:
            continue
        incoming = state_dict[key]
        if not isinstance(incoming, torch.Tensor):
            raise CompositionError(f"the state dict's noise levels {key!r} must be a tensor, "
                                   f"got {type(incoming).__name__} {incoming!r:.60}")
        if current.is_meta or incoming.is_meta:
            continue  # meta tensors hold no values to compare
        same = incoming.shape == current.shape and torch.allclose(
            incoming.detach().double().cpu(), current.detach().double().cpu(), rtol=1e-6, atol=0.0)
        if not same:
            raise CompositionError(
                f"the state dict's noise levels {key!r} ({_levels(incoming)}) differ from this model's "
                f"({_levels(current)}); loading them would replace the sigmas the model was composed with. "
                "Compose the model with the sigmas the weights were trained with (e.g. the run's model.sigmas), "
                f"or remove {key!r} from the state dict to keep this model's levels"
            )
    key = prefix + "sigmas"
    if isinstance(module, ScoreModel) and module.sigmas is None and isinstance(state_dict.get(key), torch.Tensor):
        raise CompositionError(
            f"the state dict holds noise levels {key!r} ({_levels(state_dict[key])}) but this model was composed "
            "without sigmas (unconditional); compose it with those sigmas to load these weights"
        )
