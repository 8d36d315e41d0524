"""Shared fixtures of the scorekit-ncsn tests."""

from __future__ import annotations

from typing import Callable

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same global torch seed (networks initialise from it)."""
    torch.manual_seed(0)


@pytest.fixture
def n_params() -> Callable[[torch.nn.Module], int]:
    """The number of parameters of a module."""
    return lambda module: sum(p.numel() for p in module.parameters())
