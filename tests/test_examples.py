"""The examples run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.subprocess
@pytest.mark.usefixtures("with_entry_points")
def test_ncsn_cifar10_smoke_runs_the_real_loading_code(tmp_path):
    out = tmp_path / "run"
    subprocess.run([sys.executable, str(ROOT / "examples" / "ncsn_cifar10.py"), "--smoke", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    samples = torch.load(out / "samples.pt")
    assert samples.shape == (8, 3, 32, 32)
    assert (out / "samples.png").is_file() and (out / "last.pt").is_file()
