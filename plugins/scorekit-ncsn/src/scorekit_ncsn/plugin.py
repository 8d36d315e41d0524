"""Registers the NCSN image setup with scorekit (entry point ``ncsn`` in the group ``scorekit``).

Everything here is public scorekit API: the network, the datasets and the presets are
components like any other, so the paper's setup is one composed configuration among many.
"""

from __future__ import annotations

from scorekit import hookimpl

from .condresnet import CondResNet
from .datasets import DATASETS
from .presets import PRESETS
from .refinenet import NCSN


@hookimpl
def register_networks(register):
    # compose() passes the composition's sigmas to both (their constructors take `sigmas`)
    register("ncsn", NCSN)
    register("cond_resnet", CondResNet)


@hookimpl
def register_datasets(register):
    for name, factory in DATASETS.items():
        register(name, factory)


@hookimpl
def register_presets(register):
    for name, factory in PRESETS.items():
        register(name, factory)
