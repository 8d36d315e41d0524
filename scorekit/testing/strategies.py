"""Hypothesis strategies for property tests of components: data shapes, data, sigma schedules, options.

Needs ``hypothesis`` (scorekit's ``test`` extra). Example::

    from hypothesis import given
    from scorekit.testing import strategies as sks

    @given(shape=sks.data_shapes(), sigmas=sks.sigma_schedules(), options=sks.valid_options(MySampler, vary=["snr"]))
    def test_my_sampler(shape, sigmas, options): ...
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import attrs
import torch
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

__all__ = [
    "batches",
    "data_shapes",
    "image_shapes",
    "option_values",
    "sigma_schedules",
    "valid_options",
    "vector_shapes",
]


# --- data --------------------------------------------------------------------------------

def vector_shapes(min_dim: int = 1, max_dim: int = 8) -> SearchStrategy[tuple[int, ...]]:
    """Per-example shapes of vectors, ``(d,)``."""
    return st.tuples(st.integers(min_dim, max_dim))


def image_shapes(max_channels: int = 3, min_side: int = 2, max_side: int = 8) -> SearchStrategy[tuple[int, ...]]:
    """Per-example shapes of small images, ``(channels, height, width)``."""
    side = st.integers(min_side, max_side)
    return st.tuples(st.integers(1, max_channels), side, side)


def data_shapes(max_dim: int = 8, max_channels: int = 3, max_side: int = 8) -> SearchStrategy[tuple[int, ...]]:
    """Per-example shapes of vectors or small images (no batch dimension)."""
    return vector_shapes(max_dim=max_dim) | image_shapes(max_channels=max_channels, max_side=max_side)


def batches(
    shapes: SearchStrategy[tuple[int, ...]] | None = None, *, min_batch: int = 1, max_batch: int = 4,
    dtype: torch.dtype = torch.float32, scale: float = 1.0,
) -> SearchStrategy[torch.Tensor]:
    """Batches ``[B, *shape]`` of seeded normal data times ``scale`` (hypothesis draws the shape and the seed)."""

    @st.composite
    def build(draw: Any) -> torch.Tensor:
        shape = draw(shapes if shapes is not None else data_shapes())
        batch = draw(st.integers(min_batch, max_batch))
        seed = draw(st.integers(0, 2**31 - 1))
        return scale * torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed), dtype=dtype)

    return build()


def sigma_schedules(
    min_levels: int = 1, max_levels: int = 10, smallest: float = 1e-3, largest: float = 50.0,
    dtype: torch.dtype | None = None,
) -> SearchStrategy[torch.Tensor]:
    """Noise schedules: 1-D tensors of positive sigmas in ``[smallest, largest]``, strictly decreasing.

    Levels lie on a grid of 1000 points uniform in log scale, so neighbours differ by a ratio
    of at least ``(largest / smallest) ** (1 / 999)``: distinct in float32 as well.
    """
    if not 0 < smallest < largest:
        raise ValueError(f"sigma_schedules: need 0 < smallest < largest, got {smallest}, {largest}")
    low, high = math.log(smallest), math.log(largest)
    grid = st.lists(st.integers(0, 999), min_size=min_levels, max_size=max_levels, unique=True)
    return grid.map(lambda idx: torch.tensor(
        [math.exp(low + (high - low) * i / 999) for i in sorted(idx, reverse=True)],
        dtype=dtype or torch.get_default_dtype(),
    ))


# --- options of attrs configs --------------------------------------------------------------

def _accepts(field: attrs.Attribute, value: Any) -> bool:
    """Whether ``field``'s converter and validator accept ``value``."""
    try:
        if field.converter is not None:
            value = field.converter(value)  # type: ignore[misc, operator]
        if field.validator is not None:
            field.validator(None, field, value)
    except (TypeError, ValueError):
        return False
    return True


def _choices(validator: Any) -> list[Any] | None:
    """The allowed values of a choice validator: attrs' ``in_`` (``.options``), a ``.choices``
    attribute, or the ``choices`` that :func:`scorekit.validators.one_of` closes over."""
    for attr in ("choices", "options"):
        found = getattr(validator, attr, None)
        if isinstance(found, (list, tuple, set, frozenset, dict)):
            return list(found)
    code, cells = getattr(validator, "__code__", None), getattr(validator, "__closure__", None)
    if code is not None and cells and "choices" in code.co_freevars:
        return list(cells[code.co_freevars.index("choices")].cell_contents)
    return None


def _default(field: attrs.Attribute) -> Any:
    if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        return field.default.factory()  # type: ignore[union-attr]
    return field.default


def option_values(field: attrs.Attribute) -> SearchStrategy[Any]:
    """Values that ``field`` (an attrs attribute) accepts: its default, and values near it.

    Candidates come from the default's type (bools; ints and floats around it, and floats in
    [0, 1]; the choices of a choice validator; pairs for a pair default; numbers for a None
    default) and are kept when the field's converter and validator accept them.
    """
    default = _default(field)
    choices = _choices(field.validator)
    if choices is not None:
        return st.sampled_from(choices)
    candidates: list[SearchStrategy[Any]] = []
    if isinstance(default, bool):
        candidates.append(st.booleans())
    elif isinstance(default, int):
        candidates.append(st.integers(min(0, default), max(2 * default, default + 10)))
    elif isinstance(default, float):
        candidates.append(st.floats(0.0, 1.0))
        if default != 0 and math.isfinite(default):
            candidates.append(st.floats(0.25, 4.0).map(lambda f: default * f))
    elif isinstance(default, tuple) and len(default) == 2 and all(isinstance(v, (int, float)) for v in default):
        pair = st.tuples(st.floats(-10, 10), st.floats(0.1, 10)).map(lambda p: (p[0], p[0] + p[1]))
        candidates.append(pair)
    elif default is None:
        candidates.append(st.floats(1e-3, 10.0) | st.integers(1, 10))
    accepted = [c.filter(lambda v: _accepts(field, v)) for c in candidates]
    if default is attrs.NOTHING:
        if not accepted:
            raise ValueError(f"option_values: no strategy for option {field.name!r} without a default; pass one")
        return st.one_of(accepted)
    return st.one_of([st.just(default), *accepted])


def valid_options(config: type, *, vary: Iterable[str] | None = None, **fixed: Any) -> SearchStrategy[dict[str, Any]]:
    """Option dicts that build ``config`` (an attrs class) without error.

    Every init field in ``vary`` (default: all) draws from :func:`option_values`; the others
    keep their defaults and are left out of the dict. ``fixed`` pins options to a value or
    to a strategy of your own. Dicts that fail a cross-field check are discarded.
    """
    if not attrs.has(config):
        raise TypeError(f"valid_options needs an attrs class, got {config!r}")
    fields = {f.alias or f.name: f for f in attrs.fields(config) if f.init}
    unknown = sorted((set(fixed) | set(vary or ())) - set(fields))
    if unknown:
        raise ValueError(f"valid_options: {config.__name__} has no options {unknown}; options: {sorted(fields)}")
    varied = set(fields) if vary is None else set(vary)
    parts: dict[str, SearchStrategy[Any]] = {}
    for name, field in fields.items():
        if name in fixed:
            value = fixed[name]
            parts[name] = value if isinstance(value, SearchStrategy) else st.just(value)
        elif name in varied:
            parts[name] = option_values(field)

    def builds(options: dict[str, Any]) -> bool:
        try:
            config(**options)
        except (TypeError, ValueError):
            return False
        return True

    return st.fixed_dictionaries(parts).filter(builds)
