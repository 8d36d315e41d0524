"""Multi-process data parallel training under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N script.py`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`detect` reads them and :func:`setup` joins the process group
(``nccl`` on GPUs, ``gloo`` on CPU). Every rank holds the whole model; the network is
wrapped in DDP, which averages the gradients. Each rank computes the loss on its slice
of a globally shuffled batch (see :class:`scorekit.training.data.DataOrder`), so one
step of N ranks sees the same examples as one step of one process. Only rank 0 writes
checkpoints, metrics and grids.
"""

from __future__ import annotations

import os

import attrs
import torch
import torch.distributed as dist
from torch import nn

from scorekit.errors import OptionError


@attrs.frozen
class DistEnv:
    """Where this process stands in a run: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run's files."""
        return self.rank == 0


def detect() -> DistEnv:
    """The torchrun environment, or a single process when none is set."""

    def read(name: str, default: int) -> int:
        value = os.environ.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise OptionError(f"environment variable {name}={value!r} must be an integer (set by torchrun)") from None

    env = DistEnv(rank=read("RANK", 0), world_size=read("WORLD_SIZE", 1), local_rank=read("LOCAL_RANK", 0))
    if not 0 <= env.rank < env.world_size:
        raise OptionError(f"RANK={env.rank} must be in [0, WORLD_SIZE={env.world_size})")
    return env


def device_for(env: DistEnv, requested: str) -> torch.device:
    """The device of this process: ``auto`` is ``cuda:LOCAL_RANK`` when CUDA is available, else ``cpu``."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise OptionError(f"train.device (TrainConfig.device) = {requested!r} is not a torch device; "
                          "use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(f"train.device (TrainConfig.device) = {requested!r} but CUDA is not available here; "
                              "use 'auto' or 'cpu'")
        if device.index is None:
            device = torch.device("cuda", env.local_rank if env.active else torch.cuda.current_device())
    return device


def setup(env: DistEnv, device: torch.device) -> bool:
    """Join the process group of a multi-process run; returns whether this call created it."""
    if not env.active or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=env.rank, world_size=env.world_size)
    return True


def teardown(created: bool) -> None:
    """Leave the process group if :func:`setup` created it."""
    if created and dist.is_initialized():
        dist.destroy_process_group()


def wrap(network: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """``network`` in DistributedDataParallel (the unwrapped module stays reachable as ``.module``)."""
    if not env.active:
        return network
    if not dist.is_initialized():
        raise RuntimeError("wrap(): the process group is not initialised; call setup() first")
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(network, device_ids=ids)
