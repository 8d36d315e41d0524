"""Checkpoints: written atomically, validated on load, with every RNG state needed to resume exactly.

A checkpoint is one ``torch.save`` file holding a dict (see :func:`save_checkpoint`),
written with :func:`scorekit.files.atomic_torch_save` (a temporary file in the same
directory, ``fsync``, ``os.replace``), so a crash or a full disk leaves the previous
checkpoint as it was. :func:`load_checkpoint` reads with
``weights_only=True`` (no arbitrary pickles) and turns every failure into a
:class:`~scorekit.errors.CheckpointError` that names the file.
"""

from __future__ import annotations

import os
import pickle
import random
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
    return atomic_torch_save(payload, path)


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
    return CheckpointError(
        f"checkpoint {path} cannot be read: it is truncated or corrupt ({type(exc).__name__}: {reason}). "
        "scorekit writes checkpoints atomically, so the file was damaged afterwards (an interrupted copy, "
        "a full disk, ...). It was left untouched: restore it from a copy, use another checkpoint of the "
        "run (best.pt, ckpt_<step>.pt), or start a new run in a new directory"
    )


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
