"""compose(): the one place where names become objects."""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import torch
from torch import nn

from scorekit.errors import CompositionError, OptionError
from scorekit.model import ScoreModel, no_start_message, start_kind
from scorekit.options import accepted_options, build
from scorekit.plugins import PluginHost, get_host
from scorekit.sigmas import as_sigmas, geometric_sigmas


class _PaperSigmas:
    """Sentinel default of ``compose(sigmas=...)``: the paper's 10 levels from 1 to 0.01."""

    def __repr__(self) -> str:
        return "geometric_sigmas(1.0, 0.01, 10)"


PAPER_SIGMAS: Any = _PaperSigmas()


def compose(
    *,
    network: str | nn.Module = "mlp",
    estimator: str | Any | None = "dsm",
    sampler: str | Any | None = "annealed_langevin",
    sigmas: Any = PAPER_SIGMAS,
    network_options: Mapping[str, Any] | None = None,
    estimator_options: Mapping[str, Any] | None = None,
    sampler_options: Mapping[str, Any] | None = None,
    host: PluginHost | None = None,
) -> ScoreModel:
    """Build a :class:`ScoreModel` from registered component names and their options.

    ``network``, ``estimator`` and ``sampler`` are registered names or ready objects
    (an ``nn.Module`` network; any estimator/sampler callable). ``sigmas`` defaults to
    the paper's ``geometric_sigmas(1.0, 0.01, 10)``; ``None`` composes an unconditional
    model. ``estimator=None`` composes a sampling-only model and ``sampler=None`` a
    training-only one. Everything the arguments alone can show to be wrong (unknown
    names, bad options or sigmas, components that do not fit together, a sampler that
    cannot start: no ``initial_noise``, no ``init_range`` and no sigmas) raises here.
    ``host`` is the plugin host to look names up in (default: the process-wide one).
    """
    for kind, options in (("network", network_options), ("estimator", estimator_options),
                          ("sampler", sampler_options)):
        if options is not None and not isinstance(options, Mapping):
            raise OptionError(f"{kind}_options must be a dict of option name -> value (or None), "
                              f"got {type(options).__name__} {options!r:.60}")
    host = host or get_host()
    levels = as_sigmas(geometric_sigmas(1.0, 0.01, 10) if sigmas is PAPER_SIGMAS else sigmas)
    names: dict[str, str] = {}

    net = _make_network(host, network, dict(network_options or {}), levels, names)
    est = _make_component(host, "estimator", estimator, estimator_options, names)
    samp = _make_component(host, "sampler", sampler, sampler_options, names)

    model = ScoreModel(net, est, samp, levels, names)
    for kind, component in (("estimator", est), ("sampler", samp)):
        check = getattr(component, "validate_composition", None)
        if check is not None:
            try:
                check(model.score, levels)
            except CompositionError as exc:
                raise CompositionError(f"{kind} {names[kind]!r}: {exc}") from None
    if samp is not None and start_kind(samp, levels, names["sampler"]) is None:  # caught now, not after training
        raise CompositionError(no_start_message(names["sampler"]))
    return model


def _make_network(
    host: PluginHost, network: str | nn.Module, options: dict[str, Any], sigmas: torch.Tensor | None, names: dict[str, str]
) -> nn.Module:
    if isinstance(network, nn.Module):
        if options:
            raise OptionError("network_options apply to a registered network name, not to a ready nn.Module")
        names["network"] = type(network).__name__
        _check_forward(network, f"network {type(network).__name__}")
        return network
    if not isinstance(network, str):
        raise CompositionError(f"network must be a registered name or a torch.nn.Module, got {type(network).__name__}")
    component = host.get("network", network)
    label = f"network {network!r} (from {component.owner})"
    if "sigmas" in options:
        raise OptionError(f"{label}: do not pass 'sigmas' in network_options; compose() gives the network its sigmas")
    accepted, _ = accepted_options(component.factory)
    if "sigmas" in accepted:  # a factory that names a `sigmas` keyword learns the levels
        options["sigmas"] = sigmas
    names["network"] = network
    net = build(label, component.factory, options, hidden=("sigmas",))
    if not isinstance(net, nn.Module):
        raise CompositionError(f"{label} built a {type(net).__name__}; a network factory must return a torch.nn.Module")
    _check_forward(net, label)
    return net


def _check_forward(network: nn.Module, label: str) -> None:
    """A score network is called as ``network(x, sigma)``: its ``forward`` must take those two arguments."""
    try:
        signature = inspect.signature(network.forward)
    except (TypeError, ValueError):  # no signature to read (a builtin): the first call will tell
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise CompositionError(
            f"{label} has forward{signature}, but a score network is called as forward(x, sigma) "
            "(sigma: a [B] tensor of noise levels, or None without sigmas) and returns a tensor shaped like x; "
            "wrap the module, e.g. a forward(self, x, sigma) that calls it"
        ) from None


def _make_component(
    host: PluginHost, kind: str, spec: str | Any | None, options: Mapping[str, Any] | None, names: dict[str, str]
) -> Any:
    if spec is None:
        if options:
            raise OptionError(f"{kind}_options were given but {kind}=None")
        names[kind] = "None"
        return None
    if not isinstance(spec, str):
        if options:
            raise OptionError(f"{kind}_options apply to a registered {kind} name, not to a ready {kind} object")
        if not callable(spec):
            raise CompositionError(f"{kind} must be a registered name or a callable, got {type(spec).__name__}")
        names[kind] = type(spec).__name__
        return spec
    component = host.get(kind, spec)
    names[kind] = spec
    return build(f"{kind} {spec!r} (from {component.owner})", component.factory, dict(options or {}))
