"""Fixtures: a fresh plugin host with this plugin registered in-process (no install or entry point needed).

``scorekit_host`` comes from scorekit's pytest plugin. In a project of your own you can instead
write ``pytest_plugins = ["scorekit.testing.pytest_plugin"]`` in the top-level conftest.py; pytest
refuses that line in a nested conftest like this one (inside scorekit's repository), so it is imported.
"""

from __future__ import annotations

import pytest
import torch

from scorekit.plugins import PluginHost
from scorekit.testing.pytest_plugin import scorekit_host  # noqa: F401  (a fixture)

import scorekit_plugin_template.plugin


@pytest.fixture
def template_host(scorekit_host: PluginHost) -> PluginHost:  # noqa: F811
    """scorekit's built-ins plus this plugin, registered under its entry-point name."""
    scorekit_host.register_plugin(scorekit_plugin_template.plugin, name="template")
    return scorekit_host


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # small tensors: threads cost more than they give, and CI machines are shared
