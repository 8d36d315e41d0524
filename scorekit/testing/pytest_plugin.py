"""pytest fixtures for plugin authors. Enable in your top-level ``conftest.py``::

    pytest_plugins = ["scorekit.testing.pytest_plugin"]

(scorekit does not register it through an entry point, so it never touches other projects' test runs.)
"""

from __future__ import annotations

import pytest

from scorekit.plugins import PluginHost


@pytest.fixture
def scorekit_host() -> PluginHost:
    """A fresh plugin host with scorekit's built-ins and no entry-point plugins: register yours on it."""
    return PluginHost(autoload=False)
