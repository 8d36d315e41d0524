"""Hook specifications: the only way components enter scorekit.

Built-in components (``scorekit.builtin``), third-party packages (entry-point group
``scorekit``) and in-process plugins (:func:`scorekit.register_plugin`) all implement
these hooks with :data:`hookimpl`. Each hook receives a ``register(name, factory,
*, replace=False)`` callback; ``factory(**options)`` builds the component.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import pluggy

PROJECT = "scorekit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback a hook receives. ``replace=True`` explicitly overrides another plugin's name."""

    def __call__(self, name: str, factory: Callable[..., Any], *, replace: bool = False) -> None: ...


@hookspec
def register_networks(register: Register) -> None:
    """Register score networks: ``factory(**options) -> torch.nn.Module``.

    The module is called as ``network(x, sigma)`` and returns a tensor shaped like ``x``.
    A factory that accepts a ``sigmas`` keyword receives the composition's noise levels.
    """


@hookspec
def register_estimators(register: Register) -> None:
    """Register score estimators: ``factory(**options)`` returns a callable
    ``estimator(score, x, *, sigmas, generator) -> per-example losses [batch]``."""


@hookspec
def register_samplers(register: Register) -> None:
    """Register samplers: ``factory(**options)`` returns a callable
    ``sampler(score, x_init, *, sigmas, generator, callback) -> samples shaped like x_init``.

    Optional ``initial_noise(like, generator)`` returns the sampler's start, shaped like
    ``like`` and drawn from ``generator``; one that also names a keyword ``sigmas``
    (``initial_noise(like, generator, *, sigmas)``) receives the composition's sigmas (a
    1-D tensor in ``like``'s dtype and device, largest first, or None). Without it,
    ``ScoreModel.initial_noise`` starts uniform in the sampler's ``init_range`` if it has
    one, else from N(mean, sigma_1^2 I) (sigma_1 the largest sigma, ``mean`` 0 unless the
    caller gives the data's); ``compose()`` rejects a sampler with neither composed
    without sigmas. Optional ``inpaint(score, y, mask, *, x_init, sigmas, generator,
    callback)`` fills in the entries where ``mask`` is 0.
    """


@hookspec
def register_presets(register: Register) -> None:
    """Register run presets: ``factory(**overrides)`` returns a :class:`scorekit.training.RunConfig`.

    The command calls it with the keywords given as ``preset.KEY=VALUE`` (none by default). A factory
    that accepts a ``data`` keyword derives its configuration from the data: it receives ``--data`` (or
    ``data.root``; None when neither is given) and, when it accepts ``data_options``, the ``data.options``
    overrides as one dict, so that it reads the data as the run will (e.g. ``image_size``). The config file
    and the other overrides are applied on top of what it returns (``scorekit_ncsn``'s ``auto``).
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: ``factory(root=None, train=True, **options)`` returns a
    ``torch.utils.data.Dataset`` of image tensors (C x H x W, in [0, 1])."""
