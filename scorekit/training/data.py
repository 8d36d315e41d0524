"""Data for training: a reproducible, resumable batch order over any map-style dataset.

The order is the whole state: each epoch is a permutation drawn from one CPU
``torch.Generator``, and :class:`DataOrder` remembers the generator's state at the start
of the current epoch and the position in it. Restoring that state reproduces the rest
of the run's batches exactly. In a multi-process run every rank draws the same global
batch and takes its own slice of it.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from scorekit.errors import DataError

Data = Dataset | torch.Tensor


def dataset_size(dataset: Data) -> int:
    """Number of examples of a tensor (its first dim) or a map-style dataset (``len``)."""
    if isinstance(dataset, torch.Tensor):
        return dataset.shape[0] if dataset.ndim else 0
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise DataError(
            f"training needs a map-style dataset (with __len__ and __getitem__) or a tensor [N, ...], "
            f"got {type(dataset).__name__}"
        ) from None


def example(item: Any) -> torch.Tensor:
    """The data tensor of one dataset item: the item itself, or the first entry of an ``(x, label)`` pair."""
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    if not isinstance(item, torch.Tensor):
        raise DataError(f"a dataset item must be a tensor or an (x, label) pair with x a tensor, got {type(item).__name__}")
    return item


def collate(items: Sequence[Any], what: str = "the dataset") -> torch.Tensor:
    """Stack the examples of a batch (labels, if any, are dropped); examples of different shapes are a DataError."""
    tensors = [example(item) for item in items]
    shapes = sorted({tuple(t.shape) for t in tensors})
    if len(shapes) > 1:
        raise DataError(f"{what} holds examples of different shapes, e.g. {shapes[0]} and {shapes[1]}; every "
                        "example must have one shape (an image folder: set data.options.image_size to resize them)")
    return torch.stack(tensors)


def fetch(dataset: Data, indices: torch.Tensor) -> torch.Tensor:
    """The batch ``dataset[indices]``: a single index for a tensor, one ``__getitem__`` per example otherwise."""
    if isinstance(dataset, torch.Tensor):
        return dataset[indices]
    return collate([dataset[i] for i in indices.tolist()])


def split_holdout(dataset: Data, fraction: float, seed: int = 0) -> tuple[Data, Data | None]:
    """Split off a held-out part: ``(train, holdout)``, the same split for the same ``seed`` and size.

    ``fraction=0`` returns ``(dataset, None)``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction!r}")
    n = dataset_size(dataset)
    n_holdout = int(round(n * fraction))
    if n_holdout == 0:
        return dataset, None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_idx, holdout_idx = perm[n_holdout:], perm[:n_holdout]
    if isinstance(dataset, torch.Tensor):
        return dataset[train_idx], dataset[holdout_idx]
    return Subset(dataset, train_idx.tolist()), Subset(dataset, holdout_idx.tolist())


class DataOrder:
    """Global batches of ``batch_size`` indices in ``[0, n)``: a fresh permutation per epoch, no partial batch.

    ``rank``/``world_size`` select this process's contiguous slice of every global batch.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, *, rank: int = 0, world_size: int = 1) -> None:
        if n < batch_size:
            raise DataError(
                f"the training set has {n} examples, fewer than batch_size={batch_size}; "
                "lower TrainConfig.batch_size or use more data"
            )
        if batch_size % world_size:
            raise DataError(
                f"batch_size={batch_size} is not divisible by the {world_size} processes; "
                "each process takes batch_size / world_size examples of every batch"
            )
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = n // batch_size
        self.epoch = -1
        self.position = self.batches_per_epoch  # the first call starts epoch 0
        self._epoch_state = generator.get_state()
        self._perm: torch.Tensor | None = None

    def next_batch(self) -> torch.Tensor:
        """This process's indices of the next global batch."""
        if self.position >= self.batches_per_epoch:
            self._epoch_state = self.generator.get_state()
            self._perm = torch.randperm(self.n, generator=self.generator)
            self.epoch += 1
            self.position = 0
        assert self._perm is not None
        start = self.position * self.batch_size
        self.position += 1
        per_rank = self.batch_size // self.world_size
        start += self.rank * per_rank
        return self._perm[start : start + per_rank]

    def __iter__(self) -> Iterator[list[int]]:
        """Endless batches of indices (for ``DataLoader(batch_sampler=...)``; iterate a :meth:`copy`)."""
        while True:
            yield self.next_batch().tolist()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the order: the generator at the start of this epoch and the position."""
        return {"epoch": self.epoch, "position": self.position, "epoch_generator_state": self._epoch_state,
                "n": self.n, "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Continue from ``state``; returns False when it was saved for another dataset size or batch size,
        in which case the order goes on with a new epoch."""
        self.epoch = int(state["epoch"])
        self._epoch_state = state["epoch_generator_state"].clone()
        self.generator.set_state(self._epoch_state)
        same = (state.get("n", self.n), state.get("batch_size", self.batch_size)) == (self.n, self.batch_size)
        if self.epoch >= 0 and same:  # redraw this epoch's permutation; the generator ends where it was
            self._perm = torch.randperm(self.n, generator=self.generator)
            self.position = int(state["position"])
        else:
            self.position = self.batches_per_epoch
        return same

    def copy(self) -> "DataOrder":
        """An independent order at the same point (its own generator)."""
        twin = DataOrder(self.n, self.batch_size, torch.Generator(), rank=self.rank, world_size=self.world_size)
        twin.load_state_dict(self.state_dict())
        return twin


class Batches:
    """This process's training batches, in :class:`DataOrder`; ``num_workers > 0`` loads them in a DataLoader.

    With ``num_workers=0`` the batches are built in this process and resume is
    bit-identical. With workers a copy of the order feeds a ``DataLoader`` (the order of
    examples is the same), but random transforms inside the dataset run in the workers
    with seeds of their own, so resume is bit-identical only for datasets without them.
    """

    def __init__(self, dataset: Data, order: DataOrder, *, num_workers: int = 0, pin_memory: bool = False) -> None:
        self.dataset, self.order = dataset, order
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self._loader: Iterator[torch.Tensor] | None = None

    def __next__(self) -> torch.Tensor:
        if self.num_workers == 0:
            return fetch(self.dataset, self.order.next_batch())
        if self._loader is None:
            # worker seeds (for random transforms) follow from where the order stands, not from torch's global RNG
            seed = self.order.epoch * self.order.batches_per_epoch + self.order.position
            loader = DataLoader(
                self.dataset,  # type: ignore[arg-type]
                batch_sampler=self.order.copy(),  # type: ignore[arg-type]
                num_workers=self.num_workers,
                collate_fn=collate,
                pin_memory=self.pin_memory,
                generator=torch.Generator().manual_seed(seed),
            )
            self._loader = iter(loader)
        self.order.next_batch()  # keep the resumable state in step with what was consumed
        return next(self._loader)

    def close(self) -> None:
        """Shut the workers down (if any)."""
        self._loader = None
