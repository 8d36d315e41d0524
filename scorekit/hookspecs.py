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
    ``sampler(score, x_init, *, sigmas, generator, callback) -> samples shaped like x_init``."""


@hookspec
def register_presets(register: Register) -> None:
    """Register run presets: ``factory(**overrides)`` returns a :class:`scorekit.training.RunConfig`."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: ``factory(root=None, train=True, **options)`` returns a
    ``torch.utils.data.Dataset`` of image tensors (C x H x W, in [0, 1])."""
