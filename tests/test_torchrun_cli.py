"""The real ``scorekit`` command under torchrun with two CPU processes (gloo): one run, written by rank 0."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from .helpers import torchrun
from .test_cli import TINY

pytestmark = [pytest.mark.slow, pytest.mark.subprocess, pytest.mark.usefixtures("with_entry_points")]


def _scorekit(args: list[str], cwd: Path):
    """The installed ``scorekit`` console script under torchrun, two CPU processes, plugins loaded."""
    scorekit = shutil.which("scorekit", path=os.path.dirname(sys.executable))
    assert scorekit is not None, "the scorekit console script is not installed beside this Python"
    return torchrun([scorekit, *args], cwd=str(cwd), plugins=True)


def test_run_under_torchrun_makes_one_run_directory(tmp_path):
    proc = _scorekit(["run", "--preset", "ncsn-digits", *TINY], tmp_path)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs  # rank 0 chose it; rank 1 used the same one
    run = runs[0]
    samples = torch.load(run / "samples.pt", weights_only=True)
    assert samples.shape == (80, 1, 8, 8)  # one set of samples, not one per rank
    assert [p.name for p in run.glob("samples*.pt")] == ["samples.pt"]
    for name in ("last.pt", "config.toml", "metrics.json", "inpaint.png"):
        assert (run / name).is_file(), name
    assert proc.stdout.count("run directory:") == 1 and proc.stdout.count("wrote 80 samples") == 1
    checkpoint = torch.load(run / "last.pt", weights_only=False)
    assert checkpoint["world_size"] == 2 and checkpoint["step"] == 6
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("kind") == "train"]
    assert steps == sorted(set(steps))  # each step logged once, by rank 0

    # a resume under torchrun continues the same directory on both ranks
    _scorekit(["resume", str(run), "train.n_iters=8", "--no-samples"], tmp_path)
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 8
    assert len(list((tmp_path / "runs").iterdir())) == 1
