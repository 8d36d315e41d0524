"""Statistics shared by the tests (analytic networks and targets live in scorekit.targets)."""

from __future__ import annotations

import os
import subprocess
import sys

import torch


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Sample mean and its standard error."""
    v = values.detach().double()
    return v.mean().item(), (v.std() / v.numel() ** 0.5).item()


def torchrun(args: list[str], *, cwd: str | None = None, nproc: int = 2, timeout: float = 300,
             plugins: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m torch.distributed.run --nproc_per_node=nproc --standalone ARGS`` with one CPU thread per
    process (gloo), this checkout importable, plugin autoload off unless ``plugins``; asserts exit status 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    if not plugins:
        env["SCOREKIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def torchrun_script(source: str, folder: os.PathLike) -> subprocess.CompletedProcess[str]:
    """Write ``source`` to ``folder/worker.py`` and run it under :func:`torchrun` with ``folder`` as its argument."""
    script = os.path.join(folder, "worker.py")
    with open(script, "w") as f:
        f.write(source)
    return torchrun([script, str(folder)], timeout=120)
