"""attrs validators and converters for component options and run configs.

A component's options are the fields of a frozen, keyword-only attrs class
(:data:`frozen`); each validator here raises ``ValueError`` naming the option and what
is allowed, which :func:`scorekit.options.build` turns into an
:class:`~scorekit.errors.OptionError` naming the component too.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs

frozen = attrs.frozen(kw_only=True)


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must be a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"option '{attribute.name}' must be a finite number > 0, got {value!r}")


def positive_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must be an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"option '{attribute.name}' must be an integer >= 1, got {value!r}")


def non_negative_int(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must be an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"option '{attribute.name}' must be an integer >= 0, got {value!r}")


#: the largest seed accepted: what every generator (torch, numpy's SeedSequence) takes
MAX_SEED = 2**63 - 1


def seed_value(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must be an int in [0, 2**63 - 1]."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ValueError(f"option '{attribute.name}' must be an integer in [0, 2**63 - 1], got {value!r}")


def probability(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must lie strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"option '{attribute.name}' must be a number in (0, 1), got {value!r}")


def unit_interval(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must lie in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"option '{attribute.name}' must be a number in [0, 1], got {value!r}")


def positive_fraction(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must lie in (0, 1] (a fraction that may be all of it but not nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"option '{attribute.name}' must be a number in (0, 1], got {value!r}")


def one_of(*choices: Any) -> Callable[[Any, attrs.Attribute, Any], None]:
    """Value must be one of ``choices``."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ValueError(f"option '{attribute.name}' must be one of {list(choices)}, got {value!r}")

    return check


def boolean(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must be True or False (not a truthy string)."""
    if not isinstance(value, bool):
        raise ValueError(f"option '{attribute.name}' must be True or False, got {value!r}")


def string(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must be a str."""
    if not isinstance(value, str):
        raise ValueError(f"option '{attribute.name}' must be a string, got {value!r}")


def optional(validator: Callable[[Any, attrs.Attribute, Any], None]) -> Callable[[Any, attrs.Attribute, Any], None]:
    """``None`` or a value that passes ``validator``."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            validator(instance, attribute, value)

    return check


def value_range(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """``None`` or a pair ``(low, high)`` of finite numbers with low < high."""
    if value is None:
        return
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
        and value[0] < value[1]
    )
    if not ok:
        raise ValueError(f"option '{attribute.name}' must be None or a pair (low, high) with low < high, got {value!r}")


def half_open_unit_interval(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """Value must lie in [0, 1) (a fraction that may be 0 but never all of it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"option '{attribute.name}' must be a number in [0, 1), got {value!r}")


def required_range(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """A pair ``(low, high)`` of finite numbers with low < high (None not allowed)."""
    try:
        ok = value is not None
        value_range(instance, attribute, value)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"option '{attribute.name}' must be a pair (low, high) of finite numbers with low < high, got {value!r}"
        )


def as_pair(value: Any) -> Any:
    """attrs converter: a list pair (as TOML and JSON give it) becomes a tuple; anything else is left to the validator."""
    return tuple(value) if isinstance(value, list) else value
