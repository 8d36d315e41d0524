"""From a :class:`RunConfig` (or a checkpoint holding one) to a composed :class:`ScoreModel`."""

from __future__ import annotations

import os
from typing import Any

import torch

from scorekit.api import compose
from scorekit.errors import CheckpointError, CompositionError
from scorekit.model import ScoreModel
from scorekit.plugins import PluginHost
from scorekit.training.checkpoint import checkpoint_config, load_checkpoint
from scorekit.training.run_config import RunConfig


def build_model(run_config: RunConfig, host: PluginHost | None = None) -> ScoreModel:
    """Compose the model a run config describes.

    Networks that create their weights in the constructor are initialised from
    ``run_config.train.seed`` (in a forked RNG: the caller's global state is untouched),
    so the same config always builds the same model.
    """
    m = run_config.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run_config.train.seed)
        return compose(
            network=m.network,
            estimator=m.estimator,
            sampler=m.sampler,
            sigmas=None if m.sigmas is None else m.sigmas.tensor(),
            network_options=m.network_options,
            estimator_options=m.estimator_options,
            sampler_options=m.sampler_options,
            host=host,
        )


def load_model_from_checkpoint(
    path: str | os.PathLike,
    host: PluginHost | None = None,
    *,
    ema: bool | None = None,
    map_location: str | torch.device | None = "cpu",
) -> tuple[ScoreModel, RunConfig]:
    """Rebuild the composition stored in a checkpoint and load its weights; returns ``(model, run_config)``.

    ``ema=None`` loads the EMA weights when the checkpoint has them and the run's
    ``SampleConfig.use_ema`` is set; ``True`` requires them, ``False`` loads the raw
    weights. The model comes back in eval mode, on ``map_location``.
    """
    ckpt = load_checkpoint(path, map_location=map_location)
    return model_from_checkpoint(ckpt, path, host, ema=ema, map_location=map_location)


def model_from_checkpoint(
    ckpt: dict[str, Any],
    path: str | os.PathLike,
    host: PluginHost | None = None,
    *,
    ema: bool | None = None,
    map_location: str | torch.device | None = "cpu",
) -> tuple[ScoreModel, RunConfig]:
    """:func:`load_model_from_checkpoint` on a checkpoint already read (``path`` names it in messages)."""
    run_config = checkpoint_config(ckpt, path)
    model = build_model(run_config, host)
    state = dict(ckpt["model"])
    if ema is None:
        ema = run_config.sample.use_ema and ckpt["ema"] is not None
    if ema:
        if ckpt["ema"] is None:
            raise CheckpointError(f"{path} has no EMA weights (trained with TrainConfig.ema_decay=None); pass ema=False")
        state.update(ckpt["ema"]["shadow"])
    try:
        model.load_state_dict(state)
    except (RuntimeError, CompositionError) as exc:
        raise CheckpointError(
            f"the weights in {path} do not fit the model built from its own config ({exc}); was a plugin "
            "that provides the network changed since the run?"
        ) from exc
    if map_location is not None:
        model.to(map_location)
    return model.eval(), run_config
