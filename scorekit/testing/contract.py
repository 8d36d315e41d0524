"""What every contract check shares: the violation it raises, its report, and component resolution.

A check names the component (``"sampler 'mala'"``) and the rule it broke in every
message, so a plugin author reading a failing test knows what to fix without reading
scorekit's source.
"""

from __future__ import annotations

import contextlib
import types
from typing import Any, Callable, Iterator

import attrs
import torch

from scorekit.hookspecs import hookimpl
from scorekit.plugins import HOOKS, PluginHost, get_host


class ContractViolation(AssertionError):
    """A component broke a rule of its kind's contract.

    ``component`` is its label (e.g. ``"network 'mlp'"``) and ``rule`` the rule's name
    (e.g. ``"determinism"``); both appear in the message. An ``AssertionError``, so pytest
    shows it as an ordinary test failure.
    """

    def __init__(self, component: str, rule: str, message: str) -> None:
        self.component = component
        self.rule = rule
        super().__init__(f"{component}: {message} (rule: {rule})")


@attrs.frozen
class ContractReport:
    """What a check verified: the rules that passed and, for rules that did not apply, why."""

    component: str
    passed: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()


@attrs.define
class Contract:
    """Collects the outcome of the rules checked on one component."""

    component: str
    _passed: list[str] = attrs.field(factory=list)
    _skipped: dict[str, str] = attrs.field(factory=dict)

    def require(self, ok: bool, rule: str, message: str) -> None:
        """Raise :class:`ContractViolation` with ``message`` unless ``ok``."""
        if not ok:
            raise ContractViolation(self.component, rule, message)

    def fail(self, rule: str, message: str) -> ContractViolation:
        """A violation to raise (``raise contract.fail(...) from exc``)."""
        return ContractViolation(self.component, rule, message)

    @contextlib.contextmanager
    def calling(self, rule: str, what: str) -> Iterator[None]:
        """Turn an exception raised while doing ``what`` into a violation of ``rule``."""
        try:
            yield
        except ContractViolation:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the component is reported with its rule
            raise self.fail(rule, f"raised {type(exc).__name__} while {what}: {exc}") from exc

    def passed(self, rule: str) -> None:
        if rule not in self._passed:
            self._passed.append(rule)

    def skipped(self, rule: str, reason: str) -> None:
        self._skipped.setdefault(rule, reason)

    def report(self) -> ContractReport:
        skipped = tuple((r, why) for r, why in self._skipped.items() if r not in self._passed)
        return ContractReport(component=self.component, passed=tuple(self._passed), skipped=skipped)


def _single_component_plugin(kind: str, name: str, factory: Callable[..., Any]) -> object:
    """A plugin object whose one hookimpl registers ``factory`` as ``name``."""
    hook_name = HOOKS[kind]

    def register_one(register: Callable[..., None]) -> None:
        register(name, factory)

    register_one.__name__ = hook_name
    return types.SimpleNamespace(**{hook_name: hookimpl(register_one)})


def resolve(kind: str, component: str | Callable[..., Any], host: PluginHost | None) -> tuple[str, PluginHost]:
    """The name and host to compose ``component`` through.

    A name is looked up on ``host`` (default: the process-wide host). A bare factory is
    registered on a throwaway host without built-ins, so it goes through the same
    ``compose()`` path as a registered component.
    """
    if isinstance(component, str):
        host = host or get_host()
        host.get(kind, component)  # an unknown name fails here, with the names that exist
        return component, host
    if not callable(component):
        raise TypeError(f"expected a registered {kind} name or a factory, got {type(component).__name__}")
    name = getattr(component, "__name__", type(component).__name__)
    throwaway = PluginHost(autoload=False, builtins=False)
    throwaway.register_plugin(_single_component_plugin(kind, name, component), name=f"scorekit.testing:{name}")
    return name, throwaway


def label(kind: str, name: str) -> str:
    return f"{kind} {name!r}"


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed torch's global CPU RNG for a check and restore the caller's state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def devices() -> list[torch.device]:
    """The devices a check runs on: the CPU, and CUDA when available."""
    out = [torch.device("cpu")]
    if torch.cuda.is_available():
        out.append(torch.device("cuda"))
    return out


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded generator on ``device``."""
    return torch.Generator(device=device).manual_seed(seed)
