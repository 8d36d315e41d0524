"""scorekit's cache folder; files in it are written atomically (:mod:`scorekit.files`)."""

from __future__ import annotations

import os
from pathlib import Path

from scorekit.files import atomic_torch_save

#: ``torch.save`` to a temporary file beside the target, then rename: readers never see half a file
atomic_save = atomic_torch_save

ENV_VAR = "SCOREKIT_CACHE"


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """``path`` if given, else ``$SCOREKIT_CACHE``, else ``~/.cache/scorekit``."""
    if path is None:
        path = os.environ.get(ENV_VAR) or Path.home() / ".cache" / "scorekit"
    return Path(path).expanduser()
