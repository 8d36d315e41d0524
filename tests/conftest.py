"""Shared fixtures. Every test gets its own plugin host; nothing touches a global registry."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# derandomised and without deadlines on CI (the machine is shared and noisy)
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=25)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

torch.set_num_threads(1)  # pytest-xdist runs one worker per core


@pytest.fixture(scope="session")
def builtin_host():
    """One host with the built-ins, shared by tests that only look components up (e.g. under hypothesis)."""
    from scorekit.plugins import PluginHost

    return PluginHost(autoload=False)


@pytest.fixture
def host():
    """A fresh plugin host with the built-ins and no entry points."""
    from scorekit.plugins import PluginHost

    return PluginHost(autoload=False)


@pytest.fixture(autouse=True)
def _isolated_default_host(monkeypatch):
    """The process-wide default host is rebuilt for each test, without third-party entry points."""
    import scorekit

    monkeypatch.setenv("SCOREKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    scorekit.reset_host()
    yield
    scorekit.reset_host()


@pytest.fixture
def gen():
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def with_entry_points(monkeypatch):
    """Load installed entry-point plugins (scorekit-ncsn, the template) as a user's process would."""
    import scorekit

    monkeypatch.delenv("SCOREKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    scorekit.reset_host()
    yield
    scorekit.reset_host()
