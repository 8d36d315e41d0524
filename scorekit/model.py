"""The composed model: one network, one estimator, one sampler and the noise levels."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from scorekit import rng
from scorekit.batch_checks import check_batch, check_callback, check_generator, check_same_device_dtype
from scorekit.errors import CompositionError, DataError, DivergenceError
from scorekit.samplers.info import Callback, draw_initial_noise
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

    def initial_noise(
        self, like: torch.Tensor, generator: torch.Generator | None = None, *,
        mean: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """A start for :meth:`sample`, shaped like ``like`` ``[B, ...]`` (dtype, device), drawn from ``generator``.

        The first that applies:

        1. the sampler's own ``initial_noise(like, generator)``; one that takes a ``sigmas``
           keyword is called with ``sigmas=`` the composition's sigmas (a 1-D tensor in
           ``like``'s dtype and device, largest first, or None);
        2. uniform in the sampler's ``init_range`` (low, high), when it has one;
        3. the default start, N(mean, sigma_1^2 I) with sigma_1 the composition's largest
           sigma (the prior of the variance-exploding SDE). ``mean`` is a number or a tensor
           that broadcasts to ``like``, e.g. the data's mean ``data.mean(0)`` when the caller
           knows it; None is 0. Only this start uses ``mean`` (it is checked for every start).

        With none of them (no ``initial_noise``, no ``init_range``, no sigmas) there is no
        start: ``compose()`` rejects such a composition, and a ``ScoreModel`` built directly
        raises :class:`CompositionError` here (pass ``x_init`` to :meth:`sample` instead).
        """
        sampler = self._require_sampler("draw initial noise")
        if not isinstance(like, torch.Tensor) or like.ndim < 2 or like.shape[0] == 0 or not like.is_floating_point():
            got = (f"{like.dtype} tensor of shape {tuple(like.shape)}" if isinstance(like, torch.Tensor)
                   else type(like).__name__)
            raise DataError(f"like must be a floating tensor [batch, ...] (the noise takes its shape, dtype and "
                            f"device), got {got}")
        check_same_device_dtype(self.network, like, "like")
        check_generator(generator)
        shift = _check_mean(mean, like)
        name = self._sampler_name()
        kind = start_kind(sampler, self.sigmas, name)
        if kind == "own":
            return draw_initial_noise(sampler.initial_noise, like, generator, self._sigmas_for(like))
        if kind == "init_range":
            low, high = (float(v) for v in sampler.init_range)
            return rng.rand_like(like, generator).mul_(high - low).add_(low)
        if kind is None:
            raise CompositionError(no_start_message(name, x_init=True))
        assert self.sigmas is not None
        noise = rng.randn_like(like, generator).mul_(float(self.sigmas.max()))
        return noise if shift is None else noise.add_(shift)

    def has_initial_noise(self) -> bool:
        """Whether :meth:`initial_noise` can draw a start (the sampler's own, its ``init_range`` or the default)."""
        if self.sampler is None:
            return False
        return start_kind(self.sampler, self.sigmas, self._sampler_name()) is not None

    def _sampler_name(self) -> str:
        """The sampler's name in this composition, for messages."""
        return self.names["sampler"] if "sampler" in self.names else type(self.sampler).__name__

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


# --- initial noise ------------------------------------------------------------------------


def no_start_message(sampler_name: str, *, x_init: bool = False) -> str:
    """Why a composition has no initial noise, and the ways to give it one (``x_init``: passing one is a way)."""
    ways = ["compose with sigmas=... (the start is then N(0, sigma_1^2 I))",
            "give the sampler an initial_noise(like, generator) method or an init_range"]
    if x_init:
        ways.insert(0, "pass x_init to model.sample")
    return (f"sampler {sampler_name!r} has no initial_noise and no init_range, and the composition has no sigmas, "
            "so there is no initial noise to sample from (model.initial_noise, the trainer's grids, scorekit sample): "
            + ", ".join(ways[:-1]) + ", or " + ways[-1])


def start_kind(sampler: Any, sigmas: torch.Tensor | None, sampler_name: str) -> str | None:
    """Where :meth:`ScoreModel.initial_noise` takes its start: ``"own"`` (the sampler's ``initial_noise``),
    ``"init_range"``, ``"sigmas"`` (the default, N(mean, sigma_1^2 I)) or None (no start).

    A sampler's ``init_range`` that is not a pair of finite numbers, low < high, raises
    :class:`CompositionError`.
    """
    if callable(getattr(sampler, "initial_noise", None)):
        return "own"
    init_range = getattr(sampler, "init_range", None)
    if init_range is not None:
        _check_init_range(init_range, sampler_name)
        return "init_range"
    return None if sigmas is None else "sigmas"


def _check_init_range(init_range: Any, sampler_name: str) -> None:
    try:
        low, high = (float(v) for v in init_range)
        ok = math.isfinite(low) and math.isfinite(high) and low < high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CompositionError(f"sampler {sampler_name!r} has init_range {init_range!r:.60}; the uniform initial noise "
                               "needs a pair (low, high) of finite numbers with low < high")


def _check_mean(mean: torch.Tensor | float | None, like: torch.Tensor) -> torch.Tensor | None:
    """``mean`` of the default start as a tensor in ``like``'s dtype and device (None for 0)."""
    example = tuple(like.shape[1:])
    allowed = (f"mean must be a finite number or a finite tensor that broadcasts to one example of shape {example} "
               "(e.g. the data's mean over the batch, data.mean(0))")
    if mean is None:
        return None
    if isinstance(mean, (int, float)) and not isinstance(mean, bool):
        if not math.isfinite(mean):
            raise DataError(f"{allowed}, got {mean}")
        return torch.tensor(mean, dtype=like.dtype, device=like.device)
    if not isinstance(mean, torch.Tensor) or mean.dtype == torch.bool or mean.is_complex():
        raise DataError(f"{allowed}, got {getattr(mean, 'dtype', type(mean).__name__)} {mean!r:.60}")
    try:
        fits = torch.broadcast_shapes(mean.shape, like.shape) == like.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise DataError(f"{allowed}, got shape {tuple(mean.shape)}")
    mean = mean.to(device=like.device, dtype=like.dtype)
    if not torch.isfinite(mean).all():
        raise DataError(f"{allowed}, got NaN or inf")
    return mean


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
