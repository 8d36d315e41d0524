"""The CLI's glibc heap setting: applied on Linux, switchable off, harmless anywhere."""

from __future__ import annotations

import sys

import pytest

from scorekit.cli.heap import keep_freed_memory


def test_environment_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("SCOREKIT_MALLOC_TUNING", "0")
    assert keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_applies_on_glibc(monkeypatch):
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    monkeypatch.delenv("SCOREKIT_MALLOC_TUNING", raising=False)
    assert keep_freed_memory() is True


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.delenv("SCOREKIT_MALLOC_TUNING", raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
