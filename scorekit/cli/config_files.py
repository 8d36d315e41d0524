"""Resolving a run's configuration: preset, then config file, then ``key=value`` overrides."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Iterable, Mapping

from scorekit.errors import OptionError, UnknownComponentError
from scorekit.plugins import PluginHost
from scorekit.training.run_config import RunConfig


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it (``1e-4``, ``true``, ``[0, 1]``, ``{a = 1}``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.lr=1e-4", ...]`` -> ``{"train.lr": 1e-4, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OptionError(f"override {item!r} must look like section.key=value, e.g. train.n_iters=1000")
        out[key.strip()] = parse_value(value.strip())
    return out


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        # tables merge key by key into the preset (a file can change one sampler option)
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML (or JSON) config file as dotted overrides. YAML is read only with ``yaml.safe_load``."""
    path = Path(path)
    if not path.is_file():
        raise OptionError(f"config file {path} does not exist")
    text = path.read_text()
    loaders = {".toml": tomllib.loads, ".json": json.loads, ".yaml": _safe_yaml, ".yml": _safe_yaml}
    loader = loaders.get(path.suffix.lower())
    if loader is None:
        raise OptionError(f"config file {path}: unknown format {path.suffix!r}; use one of {', '.join(loaders)}")
    try:
        table = loader(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise OptionError(f"config file {path} could not be parsed: {' '.join(str(exc).split())}") from exc
    if not isinstance(table, Mapping):
        raise OptionError(f"config file {path} must hold a table of sections (e.g. [train]), "
                          f"got a {type(table).__name__}: {table!r:.60}")
    return _flatten(table)


def _safe_yaml(text: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as exc:
        raise OptionError("YAML config files need PyYAML (pip install pyyaml); TOML works without it") from exc
    return yaml.safe_load(text) or {}


def resolve(
    host: PluginHost,
    preset: str | None,
    config_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    data: str | None = None,
) -> RunConfig:
    """Preset (or the defaults), then the config file, then overrides, then ``--data``."""
    if preset is not None:
        try:
            cfg = host.get("preset", preset).factory()
        except UnknownComponentError as exc:
            raise UnknownComponentError(str(exc).replace("unknown preset", "unknown preset (--preset)")) from None
    else:
        cfg = RunConfig()
    updates: dict[str, Any] = {}
    if config_file is not None:
        updates.update(load_config_file(config_file))
    updates.update(parse_overrides(overrides))
    if data is not None:
        updates["data.root"] = data
    return cfg.override(updates) if updates else cfg


def to_toml(table: Mapping[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer for resolved configs (None values are left out: TOML has no null)."""
    scalars, sections = [], []
    for key, value in table.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            sections.append((key, value))
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    out = "\n".join(scalars)
    for key, value in sections:
        name = f"{prefix}{key}"
        body = to_toml(value, name + ".")
        out += f"\n\n[{name}]\n{body}" if body.strip() else f"\n\n[{name}]"
    return out.strip() + "\n"
