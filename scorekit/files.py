"""Atomic files: a path holds either its old content or the complete new one, never half a file.

Every writer here goes through :func:`atomic_write`: the content goes to a temporary
``.<name>.<random>.tmp`` in the target's directory (so that ``os.replace`` is a rename
within one file system), is flushed and ``fsync``-ed, and is renamed over the target; the
directory is then ``fsync``-ed where the platform allows, so that the rename survives a
power cut. A failure removes the temporary and leaves the old file as it was; one that a
killed process left behind is deleted by :func:`remove_stale_temporaries`. Checkpoints,
the metrics cache, sample grids, ``samples.pt`` and the CLI's JSON files are all written
this way.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

__all__ = ["atomic_copy", "atomic_torch_save", "atomic_write", "link_or_copy", "remove_stale_temporaries", "write_json"]


def atomic_write(path: str | os.PathLike, writer: Callable[[BinaryIO], None]) -> Path:
    """Write ``path`` through ``writer(file)`` so that it is either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if hasattr(os, "fchmod"):  # mkstemp makes the file private (0600): give it the mode open() would (0644 usually)
        os.fchmod(fd, 0o666 & ~_umask())

    def fill() -> None:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())

    return _publish(Path(tmp), path, fill)


def _umask() -> int:
    """The process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: Path, target: Path, prepare: Callable[[], None]) -> Path:
    """Run ``prepare`` (which makes the temporary file ``tmp``), then rename ``tmp`` to ``target`` and make the
    rename durable; on any failure ``tmp`` is removed and ``target`` keeps what it held."""
    try:
        prepare()
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _sync_directory(target.parent)
    return target


def _sync_directory(directory: Path) -> None:
    with suppress(OSError):  # make a rename durable (POSIX; not possible everywhere)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy the file ``source`` to ``target`` atomically."""
    with open(source, "rb") as src:
        return atomic_write(target, lambda f: shutil.copyfileobj(src, f))


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Give the file ``source`` the second name ``target`` (replacing what ``target`` held), atomically.

    A hard link where the file system has them (no data is copied: ``source`` is only ever
    replaced by a rename, never written in place, so the two names keep the same content),
    else an :func:`atomic_copy`.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.{os.urandom(4).hex()}.tmp")
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (FAT, some network file systems)
        return atomic_copy(source, target)
    return _publish(tmp, target, lambda: None)


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """``data`` as indented JSON with sorted keys (other objects as ``str``), written atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def remove_stale_temporaries(directory: str | os.PathLike) -> None:
    """Delete the temporaries (``.*.tmp``) that a process killed inside :func:`atomic_write` left behind."""
    for tmp in Path(directory).glob(".*.tmp"):
        with suppress(OSError):
            tmp.unlink()
