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
    """Preset (or the defaults), then the config file, then overrides, then ``--data``.

    The file and the overrides are read first, because a preset may depend on them:

    * ``preset.KEY=VALUE`` (or a ``[preset]`` table in the file) is the keyword ``KEY`` of the preset's factory,
      not a config key (``--preset auto preset.total_time=3600``); a keyword the factory lacks is an error.
    * A factory that accepts ``data`` derives its configuration from the data: it receives ``--data`` (else
      ``data.root``, else None) and, when it accepts ``data_options``, the ``data.options`` overrides as one
      table; a ``data.options`` table then merges key by key into the options the preset derived.
    """
    from scorekit.options import accepted_options

    updates: dict[str, Any] = {}
    if config_file is not None:
        updates.update(load_config_file(config_file))
    updates.update(parse_overrides(overrides))
    if data is not None:
        updates["data.root"] = data
    keywords = {key.partition(".")[2]: updates.pop(key) for key in list(updates) if key.startswith("preset.")}
    if preset is None:
        if keywords:
            raise OptionError(f"preset.{next(iter(keywords))} sets an option of a preset; pass --preset NAME with it")
        return RunConfig().override(updates) if updates else RunConfig()
    try:
        factory = host.get("preset", preset).factory
    except UnknownComponentError as exc:
        raise UnknownComponentError(str(exc).replace("unknown preset", "unknown preset (--preset)")) from None
    names, open_ended = accepted_options(factory)
    allowed = [n for n in names if n not in ("data", "data_options")]
    for key in keywords:
        if key not in allowed and not (open_ended and key not in names):
            raise OptionError(f"preset.{key}: preset {preset!r} has no option {key!r}; "
                              f"allowed: {', '.join(f'preset.{n}' for n in allowed) or '(none)'}")
    if "data" in names:
        keywords["data"] = updates.get("data.root")
        if "data_options" in names:
            table = dict(updates.pop("data.options")) if isinstance(updates.get("data.options"), Mapping) else {}
            for key in [k for k in updates if k.startswith("data.options.")]:
                table[key.removeprefix("data.options.")] = updates.pop(key)
            keywords["data_options"] = table
            updates.update({f"data.options.{k}": v for k, v in table.items()})
    cfg = factory(**keywords)
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
