"""The rule every kind shares: options are named and validated, and errors say which option.

A component is built by ``compose()`` from a dict of options. An unknown name must raise
:class:`~scorekit.errors.OptionError` naming it (a factory that swallows ``**kwargs`` would
hide typos), and for an attrs config every field must reject a value of no sensible type
with an error that names the field (every option has a validator).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import attrs

from scorekit.errors import OptionError
from scorekit.testing.contract import Contract

RULE = "options"

#: an option name no component has
BOGUS_OPTION = "not_an_option_of_this_component"

#: options that compose() passes itself and users never give
HIDDEN_OPTIONS = frozenset({"sigmas"})


class InvalidOptionValue:
    """A value no option accepts: not a number, string, bool, sequence or callable."""

    def __repr__(self) -> str:
        return "<InvalidOptionValue>"


def check_options(
    contract: Contract, factory: Callable[..., Any], options: Mapping[str, Any], build: Callable[[dict[str, Any]], Any]
) -> None:
    """Check the options rule; ``build(options)`` composes the component with those options."""
    _expect_option_error(contract, build, {**options, BOGUS_OPTION: 1}, BOGUS_OPTION, "an unknown option")
    if not attrs.has(factory):
        contract.skipped(f"{RULE}: values", "the factory is not an attrs config class; only option names are checked")
        contract.passed(RULE)
        return
    for field in attrs.fields(factory):
        name = field.alias or field.name
        if not field.init or name in HIDDEN_OPTIONS:
            continue
        _expect_option_error(contract, build, {**options, name: InvalidOptionValue()}, name, f"an invalid value of option {name!r}")
    contract.passed(RULE)


def _expect_option_error(
    contract: Contract, build: Callable[[dict[str, Any]], Any], options: dict[str, Any], name: str, what: str
) -> None:
    try:
        build(options)
    except OptionError as exc:
        contract.require(
            name in str(exc), RULE,
            f"the OptionError for {what} does not name the option {name!r}: {exc}",
        )
    except Exception as exc:  # noqa: BLE001 - anything but OptionError breaks the rule
        raise contract.fail(RULE, f"{what} raised {type(exc).__name__} instead of scorekit.errors.OptionError: {exc}") from exc
    else:
        hint = "add a validator to the field" if name != BOGUS_OPTION else "do not swallow **kwargs"
        raise contract.fail(RULE, f"accepted {what} ({options[name]!r}); {hint}")
