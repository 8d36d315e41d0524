"""Registers the NCSN image setup with scorekit (entry point ``ncsn`` in the group ``scorekit``).

Everything here is public scorekit API: the network, the datasets and the presets are
components like any other, so the paper's setup is one composed configuration among many.
"""

from __future__ import annotations

import torch
from scorekit import hookimpl

from .condresnet import cond_resnet_network
from .datasets import DATASETS
from .presets import PRESETS
from .refinenet import NCSN


def ncsn_network(*, sigmas: torch.Tensor | None, channels: int = 3, image_size: int = 32, ngf: int = 128) -> NCSN:
    """The noise-conditional RefineNet of appendix A; compose() passes the composition's sigmas."""
    if sigmas is None:
        raise ValueError("network 'ncsn' is noise-conditional: compose it with sigmas (e.g. the paper's default)")
    return NCSN(sigmas=sigmas, channels=channels, image_size=image_size, ngf=ngf)


@hookimpl
def register_networks(register):
    register("ncsn", ncsn_network)
    register("cond_resnet", cond_resnet_network)


@hookimpl
def register_datasets(register):
    for name, factory in DATASETS.items():
        register(name, factory)


@hookimpl
def register_presets(register):
    for name, factory in PRESETS.items():
        register(name, factory)
