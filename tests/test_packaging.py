"""Installing scorekit into someone else's environment: ranges in pyproject.toml, the exact pair only for make."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import torch

import scorekit
from scorekit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return project["dependencies"] + extras


@pytest.mark.parametrize("pyproject", [ROOT / "pyproject.toml", *sorted(ROOT.glob("plugins/*/pyproject.toml"))],
                         ids=lambda p: p.parent.name)
def test_library_dependencies_are_ranges_not_pins(pyproject):
    pinned = [r for r in _requirements(pyproject) if "==" in r or "===" in r]
    assert not pinned, f"{pyproject.relative_to(ROOT)} pins {pinned}: a user's torch would be replaced"


def test_the_installed_torch_fits_the_declared_range_and_make_pins_the_pair():
    torch_req = next(r for r in _requirements(ROOT / "pyproject.toml") if re.match(r"torch\b(?!vision)", r))
    low = re.search(r">=\s*([\d.]+)", torch_req).group(1)
    installed = tuple(int(p) for p in re.match(r"(\d+)\.(\d+)", torch.__version__).groups())
    assert installed >= tuple(int(p) for p in low.split(".")[:2]), (torch_req, torch.__version__)
    constraints = (ROOT / "constraints" / "local.txt").read_text()
    assert re.search(r"^torch==\S+$", constraints, re.M) and re.search(r"^torchvision==\S+$", constraints, re.M)
    assert "constraints/local.txt" in (ROOT / "Makefile").read_text()


def test_version_flag(capsys):
    assert main(["--version"]) == 0  # main returns the exit status, for --version and --help too
    out = capsys.readouterr().out
    assert out.startswith(f"scorekit {scorekit.__version__} ") and torch.__version__ in out
