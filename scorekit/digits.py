"""scikit-learn's handwritten digits: the embedded default data, and the one split of it everybody uses.

1,797 real 8 x 8 grayscale images bundled with scikit-learn, so ``make run`` needs no
download. The dataset ``digits`` (registered by :mod:`scorekit.builtin`) and the
classifier that scores its samples (:mod:`scorekit.metrics.classifier`) both take the
split from :func:`split_indices`, so the classifier never sees the held-out digits
that the metrics use as the real-against-real floor.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch.utils.data import Dataset

from scorekit.errors import DataError

#: the fraction of the digits held out, and the seed of the permutation that picks them
HOLDOUT, SPLIT_SEED = 0.2, 0
#: the feature extractor that scores images of this dataset (see scorekit.metrics.extractors)
FEATURE_EXTRACTOR = "scorekit-digits"


@functools.lru_cache(maxsize=1)
def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images ``[N, 1, 8, 8]`` in [0, 1] (scikit-learn stores 0..16) and their labels ``[N]``."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        raise DataError("the digits dataset is scikit-learn's: pip install scikit-learn") from exc
    raw = sklearn_digits()
    return torch.from_numpy(raw.images).float().div_(16.0).unsqueeze(1), torch.from_numpy(raw.target).long()


def split_indices(n: int, holdout: float = HOLDOUT, split_seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, test)`` indices: a fixed permutation of ``range(n)`` whose first ``round(holdout * n)`` are the test split."""
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
        raise DataError(f"digits: holdout must be a fraction in [0, 1), got {holdout!r}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_test = int(round(holdout * n))
    return order[n_test:], order[:n_test]


class DigitsImages(Dataset):
    """Digit images ``1 x 8 x 8`` in [0, 1], without labels; ``feature_extractor`` names the extractor that scores them."""

    feature_extractor = FEATURE_EXTRACTOR

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def digits(root: str | Path | None = None, train: bool = True, holdout: float = HOLDOUT,
           split_seed: int = SPLIT_SEED) -> DigitsImages:
    """The ``digits`` dataset: the train split (``train=True``, 1,438 images) or the held-out one (359).

    The images come with scikit-learn, so there is no ``root``: a path given anyway (``--data``)
    is an error rather than silently ignored.
    """
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise DataError(f"digits: split_seed must be an integer, got {split_seed!r}")
    if root is not None:
        raise DataError(
            f"dataset 'digits' is bundled with scikit-learn and reads no files, but a data root was given ({root}); "
            "drop --data / data.root, or use data.name='folder' for a folder of your own images"
        )
    images, _ = load_digits()
    train_idx, test_idx = split_indices(images.shape[0], holdout, split_seed)
    return DigitsImages(images[train_idx if train else test_idx].contiguous())
