"""The plugin host: built-ins, entry points and in-process plugins, with owners and conflicts.

Modelled on pytest and pluggy's eggsample: scorekit's own components are plugins
registered through the same hooks as anyone else's. A :class:`PluginHost` owns one
``pluggy.PluginManager``; tests make their own host instead of touching the default
one, and :func:`reset_host` throws the default away.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable

import attrs
import pluggy

from scorekit import hookspecs
from scorekit.errors import PluginConflictError, PluginLoadError, UnknownComponentError
from scorekit.options import closest

ENTRY_POINT_GROUP = "scorekit"
DISABLE_AUTOLOAD_ENV = "SCOREKIT_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_OWNER = "scorekit"
BUILTIN_MODULES = ("scorekit.builtin",)

#: kind of component -> the hook that registers it
HOOKS: dict[str, str] = {
    "network": "register_networks",
    "estimator": "register_estimators",
    "sampler": "register_samplers",
    "preset": "register_presets",
    "dataset": "register_datasets",
}


class PluginLoadWarning(UserWarning):
    """A plugin failed to import or to register; it is left out and the rest of scorekit keeps working."""


@attrs.frozen
class Component:
    """One registered component: its kind, name, factory and the plugin that owns it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    owner: str


@attrs.frozen
class FailedPlugin:
    """A plugin left out because it failed: on import (``during="load"``) or inside one of its hooks
    (``during`` names the hook). ``error`` is the original exception."""

    distribution: str
    entry_point: str
    error: BaseException
    during: str = "load"

    def describe(self) -> str:
        where = "failed to load" if self.during == "load" else f"failed in {self.during}"
        return (
            f"plugin {self.entry_point!r} from distribution {self.distribution!r} {where}: "
            f"{type(self.error).__name__}: {self.error}"
        )


@attrs.frozen
class Conflict:
    """One name of one kind claimed by two plugins, neither with ``replace=True``; only that name is unusable."""

    kind: str
    name: str
    owners: tuple[str, str]

    def describe(self) -> str:
        return (
            f"{self.kind} {self.name!r} is registered by two plugins: {self.owners[0]!r} and {self.owners[1]!r}. "
            "Uninstall or unregister one, or register with replace=True to override explicitly."
        )


def _normalise(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


class PluginHost:
    """Holds the plugin manager and the components its plugins registered.

    ``autoload=None`` loads entry-point plugins unless the environment variable
    ``SCOREKIT_DISABLE_PLUGIN_AUTOLOAD`` is set to a non-empty value (pytest's rule).
    ``builtins=False`` starts without scorekit's own components (for tests of the host).
    """

    def __init__(self, *, autoload: bool | None = None, builtins: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.failed: list[FailedPlugin] = []
        self._owners: dict[str, str] = {}  # plugin name -> owner label
        self._components: dict[str, dict[str, Component]] | None = None
        self._conflicts: dict[tuple[str, str], Conflict] = {}
        if builtins:
            for module_name in BUILTIN_MODULES:
                self._register(importlib.import_module(module_name), module_name, BUILTIN_OWNER)
        if autoload is None:
            autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
        if autoload:
            self.load_entry_points()

    # --- registration -----------------------------------------------------------------

    def _register(self, plugin: object, name: str, owner: str) -> None:
        self.pm.register(plugin, name=name)  # validates hookimpl arguments against the specs
        try:
            self.pm.check_pending()  # a hookimpl whose hook name matches no spec (a typo)
        except pluggy.PluginValidationError:
            self.pm.unregister(plugin)
            raise
        self._owners[name] = owner
        self._components = None

    def register_plugin(self, plugin: object, name: str | None = None) -> str:
        """Register an in-process plugin (a module, class or object with ``@hookimpl`` functions).

        Returns the name it was registered under; conflicts surface when components are
        next looked up. Registering again under the same name replaces the earlier
        in-process plugin of that name (a notebook cell run twice); registering the same
        object again changes nothing.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if self.pm.is_registered(plugin):
            return self.pm.get_name(plugin) or name
        if self.pm.get_plugin(name) is not None:
            owner = self._owners.get(name)
            if owner != name:  # a built-in module or an entry point of an installed distribution
                raise PluginConflictError(
                    f"cannot register a plugin named {name!r}: that name belongs to {owner!r}; "
                    "pass another name, e.g. register_plugin(plugin, name='my_plugin')"
                )
            self.unregister_plugin(name)
        self._register(plugin, name, name)
        return name

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin registered under ``name``."""
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            raise UnknownComponentError(f"no plugin named {name!r}; registered: {sorted(self._owners)}")
        self.pm.unregister(plugin)
        self._owners.pop(name, None)
        self._components = None

    def load_entry_points(self) -> None:
        """Load every plugin of the entry-point group ``scorekit``, each distribution once.

        A plugin that fails to import or to validate is recorded in :attr:`failed` and
        reported with a :class:`PluginLoadWarning`; the other plugins still load.
        """
        seen: set[tuple[str, str]] = set()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
            key = (_normalise(dist), ep.name)
            if key in seen or self.pm.get_plugin(ep.name) is not None:
                continue  # one distribution found twice on sys.path (e.g. an editable install)
            seen.add(key)
            try:
                plugin = ep.load()
                self._register(plugin, ep.name, dist)
            except Exception as exc:  # noqa: BLE001 - any failure of a third-party import is reported
                failure = FailedPlugin(distribution=dist, entry_point=ep.name, error=exc)
                self.failed.append(failure)
                warnings.warn(failure.describe(), PluginLoadWarning, stacklevel=2)

    # --- lookup -----------------------------------------------------------------------

    def _collect(self) -> dict[str, dict[str, Component]]:
        """Call every plugin's hooks (once, cached) and build the table kind -> name -> component.

        A plugin whose hook raises is left out whole, as if it had failed to import: its
        registrations from other hooks are dropped too, it is recorded in :attr:`failed`
        with a :class:`PluginLoadWarning`, and everything else keeps working. Two plugins
        claiming one name make only that name unusable (:attr:`conflicts`).
        """
        if self._components is not None:
            return self._components
        calls: list[tuple[str, str, Component, bool]] = []  # (plugin name, kind, component, replace), in order
        broken: set[str] = set()
        for kind, hook_name in HOOKS.items():
            # get_hookimpls() lists in registration order: built-ins first, so a later
            # plugin that claims a built-in name is the one named second in a conflict
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                plugin_name = impl.plugin_name
                owner = self._owners.get(plugin_name, plugin_name)
                made: list[tuple[Component, bool]] = []
                try:
                    impl.function(**{arg: self._registrar(made, kind, owner) for arg in impl.argnames})
                except Exception as exc:  # noqa: BLE001 - a third-party hook may fail in any way
                    if owner == BUILTIN_OWNER:
                        raise
                    broken.add(plugin_name)
                    failure = FailedPlugin(distribution=owner, entry_point=plugin_name, error=exc, during=hook_name)
                    self.failed.append(failure)
                    warnings.warn(failure.describe(), PluginLoadWarning, stacklevel=3)
                    continue
                calls.extend((plugin_name, kind, component, replace) for component, replace in made)
        for plugin_name in broken:  # never called again: its failure is recorded once
            self.pm.unregister(name=plugin_name)
            self._owners.pop(plugin_name, None)
        table: dict[str, dict[str, Component]] = {kind: {} for kind in HOOKS}
        conflicts: dict[tuple[str, str], Conflict] = {}
        for plugin_name, kind, new, replace in calls:
            if plugin_name in broken:
                continue
            key, old = (kind, new.name), table[kind].get(new.name)
            if replace or (old is None and key not in conflicts):
                table[kind][new.name] = new
                conflicts.pop(key, None)
            elif old is not None and not (old.owner == new.owner and old.factory is new.factory):
                conflicts[key] = Conflict(kind=kind, name=new.name, owners=(old.owner, new.owner))
                del table[kind][new.name]
        self._components, self._conflicts = table, conflicts
        return table

    @staticmethod
    def _registrar(into: list[tuple[Component, bool]], kind: str, owner: str) -> hookspecs.Register:
        def register(name: str, factory: Callable[..., Any], *, replace: bool = False) -> None:
            if not isinstance(name, str) or not name:
                raise PluginConflictError(f"plugin {owner!r} registered a {kind} with an invalid name {name!r}")
            if not callable(factory):
                raise PluginConflictError(f"plugin {owner!r} registered {kind} {name!r} with a non-callable factory")
            into.append((Component(kind=kind, name=name, factory=factory, owner=owner), bool(replace)))

        return register

    @property
    def conflicts(self) -> list[Conflict]:
        """Names claimed by two plugins (neither with ``replace=True``), sorted by kind and name."""
        self._collect()
        return [self._conflicts[key] for key in sorted(self._conflicts)]

    def components(self, kind: str | None = None) -> list[Component]:
        """Every registered component (of one ``kind``), sorted by kind and name."""
        table = self._collect()
        kinds: Iterable[str] = HOOKS if kind is None else [self._check_kind(kind)]
        return [table[k][n] for k in kinds for n in sorted(table[k])]

    def names(self, kind: str) -> list[str]:
        """The registered names of one kind, sorted."""
        return sorted(self._collect()[self._check_kind(kind)])

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; an unknown name lists the known ones."""
        table = self._collect()[self._check_kind(kind)]
        if name in table:
            return table[name]
        conflict = self._conflicts.get((kind, name))
        if conflict is not None:
            raise PluginConflictError(conflict.describe())
        hint = closest(name, table)
        msg = f"unknown {kind} {name!r}; available: {', '.join(sorted(table)) or '(none)'}"
        if hint:
            msg += f" (did you mean {hint!r}?)"
        if self.failed:
            msg += ". Plugins that failed to load: " + "; ".join(f.describe() for f in self.failed)
            raise UnknownComponentError(msg) from PluginLoadError(self.failed[0].describe())
        raise UnknownComponentError(msg)

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind not in HOOKS:
            raise UnknownComponentError(f"unknown kind of component {kind!r}; kinds: {', '.join(HOOKS)}")
        return kind


_default_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide default host, created on first use."""
    global _default_host
    if _default_host is None:
        _default_host = PluginHost()
    return _default_host


def reset_host() -> None:
    """Forget the default host (and its in-process plugins); the next lookup builds a new one."""
    global _default_host
    _default_host = None


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register an in-process plugin on the default host; see :meth:`PluginHost.register_plugin`."""
    return get_host().register_plugin(plugin, name)
