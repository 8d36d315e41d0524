"""Run directories: ``runs/<name>-<timestamp>/``, never shared by two runs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def new_run_dir(name: str = "run", root: str | os.PathLike = "runs") -> Path:
    """Create and return a fresh directory ``<root>/<name>-<YYYYmmdd-HHMMSS>``.

    When that exists (two runs started in the same second) a counter is appended
    (``-2``, ``-3``, ...). The directory is created with ``mkdir``, which fails when
    it already exists, so two processes never get the same one.
    """
    if not _NAME.match(name):
        raise ValueError(f"run name {name!r} must be letters, digits, '.', '_' or '-' (no path separators)")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for counter in range(1, 10_000):
        candidate = root / (stem if counter == 1 else f"{stem}-{counter}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not create a new run directory under {root} for {name!r}")
