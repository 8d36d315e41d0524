"""Training any composition on any dataset: the loop, checkpoints, EMA, run directories and DDP.

>>> from scorekit.training import RunConfig, build_model, train, new_run_dir
>>> cfg = RunConfig()
>>> model = build_model(cfg)
>>> result = train(model, dataset, cfg.train, new_run_dir(cfg.name), run_config=cfg)  # doctest: +SKIP
"""

from scorekit.training.build import build_model, load_model_from_checkpoint
from scorekit.training.checkpoint import load_checkpoint, save_checkpoint
from scorekit.training.data import split_holdout
from scorekit.training.ema import EMA
from scorekit.training.monitor import heldout_loss, save_grid
from scorekit.training.run_config import DataConfig, ModelConfig, RunConfig, SampleConfig, SigmaConfig, TrainConfig
from scorekit.training.run_dir import new_run_dir
from scorekit.training.trainer import StepInfo, TrainResult, train

__all__ = [
    "EMA",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "SampleConfig",
    "SigmaConfig",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "heldout_loss",
    "load_checkpoint",
    "load_model_from_checkpoint",
    "new_run_dir",
    "save_checkpoint",
    "save_grid",
    "split_holdout",
    "train",
]
