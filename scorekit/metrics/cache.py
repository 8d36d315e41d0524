"""scorekit's cache folder and atomic writes into it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

ENV_VAR = "SCOREKIT_CACHE"


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """``path`` if given, else ``$SCOREKIT_CACHE``, else ``~/.cache/scorekit``."""
    if path is None:
        path = os.environ.get(ENV_VAR) or Path.home() / ".cache" / "scorekit"
    return Path(path).expanduser()


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
