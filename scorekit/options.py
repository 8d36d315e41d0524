"""From a factory and a dict of options to a component: the machinery behind :func:`scorekit.compose`.

A component's options are the fields of an ``@attrs.frozen(kw_only=True)`` class (see
:mod:`scorekit.validators`); the defaults written there are the only place a default
lives. :func:`build` turns a factory and a dict of options into a component, turning
every mistake into an :class:`~scorekit.errors.OptionError` that names the component,
the option and what is allowed; :func:`accepted_options` and :func:`option_defaults`
serve listings (``scorekit plugins``) and compose's ``sigmas`` hand-over.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterable, Mapping

import attrs

from scorekit.errors import OptionError


def _options_class(factory: Callable[..., Any]) -> type | None:
    """The attrs class holding ``factory``'s options: the factory itself, or its ``options_class``
    attribute (for a factory function that forwards ``**options`` to a config)."""
    if attrs.has(factory):
        return factory  # type: ignore[return-value]
    declared = getattr(factory, "options_class", None)
    return declared if declared is not None and attrs.has(declared) else None


def accepted_options(factory: Callable[..., Any]) -> tuple[list[str], bool]:
    """The option names ``factory`` accepts, and whether it takes arbitrary ``**kwargs``."""
    options_class = _options_class(factory)
    if options_class is not None:
        names = [a.alias or a.name for a in attrs.fields(options_class) if a.init]
        if options_class is not factory:  # keywords of the function itself, e.g. `sigmas`
            names += [n for n in inspect.signature(factory).parameters if n not in names and n != "options"]
        return names, False
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return [], True
    names = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def option_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The default of every option of ``factory`` that has one (for listings and docs)."""
    options_class = _options_class(factory)
    if options_class is not None:
        out = {}
        for a in attrs.fields(options_class):
            if not a.init:
                continue
            if isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
                out[a.alias or a.name] = a.default.factory()  # type: ignore[union-attr]
            elif a.default is not attrs.NOTHING:
                out[a.alias or a.name] = a.default
        return out
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not p.empty}


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to ``name`` (for 'did you mean' hints), or None."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def build(label: str, factory: Callable[..., Any], options: Mapping[str, Any], *, hidden: Iterable[str] = ()) -> Any:
    """Call ``factory(**options)``; wrong names or values raise :class:`OptionError`.

    ``label`` names the component in messages (e.g. ``"sampler 'hmc'"``); ``hidden``
    lists options that scorekit passes itself (such as ``sigmas``) and that are not
    shown to the user as allowed.
    """
    if not isinstance(options, Mapping):
        raise OptionError(f"{label}: options must be a dict of name -> value, got {type(options).__name__}")
    names, open_ended = accepted_options(factory)
    if not open_ended:
        public = [n for n in names if n not in set(hidden)]
        for key in options:
            if key not in names:
                hint = closest(key, public)
                raise OptionError(
                    f"{label} has no option {key!r}; allowed: {', '.join(public) or '(none)'}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                )
    try:
        return factory(**options)
    except OptionError:
        raise
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{label}: {exc}") from exc
