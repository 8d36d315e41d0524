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
    """An entry-point plugin failed to load; the rest of scorekit keeps working."""


@attrs.frozen
class Component:
    """One registered component: its kind, name, factory and the plugin that owns it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    owner: str


@attrs.frozen
class FailedPlugin:
    """An entry-point plugin that could not be loaded, with the original exception."""

    distribution: str
    entry_point: str
    error: BaseException

    def describe(self) -> str:
        return (
            f"plugin {self.entry_point!r} from distribution {self.distribution!r} failed to load: "
            f"{type(self.error).__name__}: {self.error}"
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
        next looked up.
        """
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
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
        if self._components is not None:
            return self._components
        table: dict[str, dict[str, Component]] = {kind: {} for kind in HOOKS}
        for kind, hook_name in HOOKS.items():
            # get_hookimpls() lists in registration order: built-ins first, so a later
            # plugin that claims a built-in name is the one named second in the conflict
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                owner = self._owners.get(impl.plugin_name, impl.plugin_name)
                impl.function(**{arg: self._registrar(table[kind], kind, owner) for arg in impl.argnames})
        self._components = table
        return table

    @staticmethod
    def _registrar(into: dict[str, Component], kind: str, owner: str) -> hookspecs.Register:
        def register(name: str, factory: Callable[..., Any], *, replace: bool = False) -> None:
            if not isinstance(name, str) or not name:
                raise PluginConflictError(f"plugin {owner!r} registered a {kind} with an invalid name {name!r}")
            if not callable(factory):
                raise PluginConflictError(f"plugin {owner!r} registered {kind} {name!r} with a non-callable factory")
            old = into.get(name)
            if old is not None and not replace and not (old.owner == owner and old.factory is factory):
                raise PluginConflictError(
                    f"{kind} {name!r} is registered by two plugins: {old.owner!r} and {owner!r}. "
                    f"Uninstall or unregister one, or register with replace=True to override explicitly."
                )
            into[name] = Component(kind=kind, name=name, factory=factory, owner=owner)

        return register

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
