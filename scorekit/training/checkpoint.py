"""Checkpoints: written atomically, validated on load, with every RNG state needed to resume exactly.

A checkpoint is one ``torch.save`` file holding a dict (see :func:`save_checkpoint`),
written with :func:`scorekit.files.atomic_torch_save` (a temporary file in the same
directory, ``fsync``, ``os.replace``), so a crash or a full disk leaves the previous
checkpoint as it was. :func:`load_checkpoint` reads with
``weights_only=True`` (no arbitrary pickles) and turns every failure into a
:class:`~scorekit.errors.CheckpointError` that names the file. A full disk while writing is
a :class:`~scorekit.errors.CheckpointError` naming the directory and its free space.

A run directory holds ``last.pt`` (the newest) and the checkpoints before it as
``ckpt_<step>.pt`` (``TrainConfig.keep_checkpoints``); :func:`load_latest_checkpoint`
falls back to the newest readable one when ``last.pt`` is damaged.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

import scorekit
from scorekit.errors import CheckpointError
from scorekit.files import atomic_torch_save
from scorekit.training.data import DataOrder
from scorekit.training.ema import EMA
from scorekit.training.run_config import RunConfig

#: the older checkpoints of a run directory, beside ``last.pt``
CKPT_NAME = re.compile(r"^ckpt_(\d+)\.pt$")
FORMAT = "scorekit-checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "step", "model", "optimizer", "ema", "rng", "config")


# --- random states ------------------------------------------------------------------------

def capture_rng(
    train_generator: torch.Generator | None = None, data_order: DataOrder | None = None, *, host_rngs: bool = True
) -> dict[str, Any]:
    """The state of every random number generator a training step may touch.

    torch (CPU and, when initialised, CUDA), numpy and Python's ``random`` (used by
    dropout and data transforms), plus the trainer's own generators. ``host_rngs=False``
    leaves numpy's and Python's out (``None``; they take ~60 us of the ~65 us).
    """
    numpy_state = None
    if host_rngs:
        keys, pos, has_gauss, cached = np.random.get_state()[1:]
        numpy_state = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": numpy_state,
        "python": random.getstate() if host_rngs else None,
        "train": None if train_generator is None else train_generator.get_state(),
        "data": None if data_order is None else data_order.state_dict(),
    }


def restore_global_rng(state: dict[str, Any]) -> None:
    """Restore torch's, numpy's and Python's global generators from :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    npy = state.get("numpy")
    if npy is not None:
        np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                             npy["cached_gaussian"]))
    if state.get("python") is not None:
        random.setstate(state["python"])


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Whatever the block draws from the global generators, they come back as they were.

    Evaluation, sample grids and user hooks run inside it, so that a run with them
    trains to the same weights as a run without.
    """
    state = capture_rng()
    try:
        yield
    finally:
        restore_global_rng(state)


# --- checkpoints ----------------------------------------------------------------------------

def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    ema: EMA | None = None,
    rng: dict[str, Any] | None = None,
    run_config: RunConfig | None = None,
    **extra: Any,
) -> Path:
    """Write a checkpoint atomically and return its path.

    The file holds ``format``/``version``, ``step`` (completed optimiser steps),
    ``model`` (the unwrapped ``state_dict``), ``optimizer``, ``ema`` (or None), ``rng``
    (:func:`capture_rng`; by default the current global states), ``config``
    (``RunConfig.to_dict()`` or None), ``names`` (the composition's component names),
    the torch and scorekit versions and any ``extra`` entries (plain data or tensors).
    """
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "ema": None if ema is None else ema.state_dict(),
        "rng": capture_rng() if rng is None else rng,
        "config": None if run_config is None else run_config.to_dict(),
        "names": dict(getattr(model, "names", {})),
        "torch_version": str(torch.__version__),
        "scorekit_version": scorekit.__version__,
        **extra,
    }
    with writing_checkpoint(path):
        return atomic_torch_save(payload, path)


@contextmanager
def writing_checkpoint(path: str | os.PathLike) -> Iterator[None]:
    """A failed write of the checkpoint ``path`` becomes a :class:`CheckpointError` naming the directory and,
    for a full disk, its free space (the atomic write has left the previous file as it was)."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        error = _write_error(Path(path), exc)
        if error is None:
            raise
        raise error from exc


def _write_error(path: Path, exc: BaseException) -> CheckpointError | None:
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    full = any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
               for e in chain)
    if isinstance(exc, RuntimeError) and not full and not any(
            word in str(exc) for word in ("inline_container", "write", "unexpected pos")):
        return None  # not a failed write
    try:
        free = _size(shutil.disk_usage(path.parent).free)
    except OSError:
        free = "unknown"
    kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
    if full:
        return CheckpointError(
            f"no space left on the device of {path.parent} while writing {path.name} ({free} free); {kept}. "
            "Free some space there (or move the run directory to a larger disk) and run the same command to resume"
        )
    return CheckpointError(f"could not write {path} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                           f"{kept}; {free} free on its device")


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def checkpoint_files(run_dir: str | os.PathLike) -> list[Path]:
    """A run directory's checkpoints, newest first: ``last.pt``, then ``ckpt_<step>.pt`` by descending step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    older = sorted(((int(m.group(1)), p) for p in run_dir.iterdir() if (m := CKPT_NAME.match(p.name))), reverse=True)
    last = run_dir / "last.pt"
    return ([last] if last.is_file() else []) + [p for _, p in older]


def load_latest_checkpoint(
    run_dir: str | os.PathLike, map_location: str | torch.device | None = "cpu"
) -> tuple[dict[str, Any], Path, list[tuple[Path, CheckpointError]]] | None:
    """The newest readable checkpoint of a run directory: ``(ckpt, path, skipped)``, or None when it holds none.

    ``last.pt`` first; when it cannot be read (truncated, corrupt, foreign), the
    ``ckpt_<step>.pt`` beside it from the newest down. ``skipped`` lists the files that
    were tried and could not be read, with their errors; the caller warns about them.
    When there are checkpoints but none can be read, raises the error of ``last.pt``
    (or of the newest), saying that the older ones failed too.
    """
    files = checkpoint_files(run_dir)
    skipped: list[tuple[Path, CheckpointError]] = []
    for path in files:
        try:
            return load_checkpoint(path, map_location=map_location), path, skipped
        except CheckpointError as exc:
            skipped.append((path, exc))
    if not skipped:
        return None
    _, error = skipped[0]
    if len(skipped) == 1:
        raise error
    others = ", ".join(p.name for p, _ in skipped[1:])
    raise CheckpointError(f"{error} (the older checkpoints {others} cannot be read either)") from error


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint written by :func:`save_checkpoint`; never modifies the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        if not found:
            raise _unreadable(path, exc) from exc
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data, so it is not a scorekit checkpoint "
            f"(scorekit loads with weights_only=True and runs no pickled code): {found[0]}"
        ) from exc
    except Exception as exc:  # truncated or damaged: RuntimeError, EOFError, zipfile and pickle errors, ...
        raise _unreadable(path, exc) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a scorekit checkpoint (no format={FORMAT!r} entry); "
                              "was it written by scorekit.training.save_checkpoint?")
    if not isinstance(ckpt.get("version"), int) or ckpt["version"] > VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {ckpt.get('version')!r}; this scorekit "
                              f"reads versions up to {VERSION}: upgrade scorekit")
    missing = [key for key in _REQUIRED if key not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing}; it is incomplete or from another tool")
    if not isinstance(ckpt["step"], int) or ckpt["step"] < 0 or not isinstance(ckpt["model"], dict):
        raise CheckpointError(f"checkpoint {path} has an invalid step {ckpt['step']!r} or model state")
    return ckpt


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    # torch's weights-only messages are long and suggest weights_only=False; keep the line that says what failed
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Check the doc")]
    reason = (lines[-1] if lines else "empty file")[:200]
    # suggest only the files that are there
    others = [p.name for p in sorted(path.parent.glob("*.pt"))
              if p != path and (p.name in ("last.pt", "best.pt") or CKPT_NAME.match(p.name))]
    where = (f"the run's other checkpoints ({', '.join(others)})" if others
             else "no other checkpoint of this run exists")
    error = CheckpointError(
        f"checkpoint {path} cannot be read: it is truncated or corrupt ({type(exc).__name__}: {reason}). "
        "scorekit writes checkpoints atomically, so the file was damaged afterwards (an interrupted copy, "
        f"a full disk, ...). It was left untouched; {where}. Restore it from a copy, or start a new run "
        "in a new directory"
    )
    error.reason = f"truncated or corrupt: {type(exc).__name__}: {reason}"  # type: ignore[attr-defined]
    return error


def checkpoint_config(ckpt: dict[str, Any], path: str | os.PathLike = "checkpoint") -> RunConfig:
    """The :class:`RunConfig` a checkpoint was trained with."""
    if ckpt.get("config") is None:
        raise CheckpointError(
            f"{path} was written without a RunConfig (train(..., run_config=None)), so the model cannot be "
            "rebuilt from it; build the model yourself and load ckpt['model'] with model.load_state_dict"
        )
    try:
        return RunConfig.from_dict(ckpt["config"])
    except Exception as exc:
        raise CheckpointError(f"the config stored in {path} is not valid for this scorekit: {exc}") from exc
