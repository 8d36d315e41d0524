"""The embedded digits classifier: FID/IS/KID features for 8 x 8 digits without any download.

A small conv net trained deterministically in about a second on the fixed train split
of scikit-learn's digits (the split of the ``digits`` dataset, :mod:`scorekit.digits`), cached
under a name derived from the training data, the hyperparameters and the code version,
so a change to any of them trains a new one instead of reusing a stale file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from scorekit.digits import load_digits, split_indices
from scorekit.errors import ClassifierCacheWarning
from scorekit.metrics.cache import atomic_save
from scorekit.metrics.cache import cache_dir as resolve_cache_dir

#: bump when the network or the training loop changes (invalidates cached weights)
CODE_VERSION = "1"

#: the training recipe; part of the cache key
HYPERPARAMETERS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-3,
    "seed": 0,
    "width": 16,
    "feature_dims": 64,
}



class DigitsSplit(NamedTuple):
    """Images ``[N, 1, 8, 8]`` in [0, 1] and their labels, for the fixed train and test splits."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


def digits_split() -> DigitsSplit:
    """scikit-learn's 1,797 digits split as the ``digits`` dataset splits them: 359 test, 1,438 train."""
    images, labels = load_digits()
    train, test = split_indices(images.shape[0])
    return DigitsSplit(images[train].contiguous(), labels[train], images[test].contiguous(), labels[test])


class DigitsNet(nn.Module):
    """Two 3x3 convolutions, a 2x2 max-pool, a ``feature_dims`` hidden layer and 10 logits."""

    def __init__(self, width: int = 16, feature_dims: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.hidden = nn.Linear(2 * width * 4 * 4, feature_dims)
        self.out = nn.Linear(feature_dims, 10)
        #: divides the features so that their mean square on the train split is 1 (set after training)
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [B, feature_dims], logits [B, 10])`` of images ``[B, 1, 8, 8]`` in [0, 1].

        The features are the hidden layer before its ReLU (no dead, always-zero
        dimensions, so their covariance can be full-rank), divided by ``feature_scale``
        so that they are O(1) like Inception's and KID's polynomial kernel stays tame.
        """
        h = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        pre = self.hidden(h.flatten(1))
        return pre / self.feature_scale, self.out(F.relu(pre))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


def _cache_key(split: DigitsSplit) -> str:
    h = hashlib.sha256()
    h.update(f"scorekit-digits-classifier/{CODE_VERSION}/torch-{torch.__version__}".encode())
    h.update(json.dumps(HYPERPARAMETERS, sort_keys=True).encode())
    for t in split:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _accuracy(net: DigitsNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(images).argmax(1) == labels).float().mean())


def train_digits_classifier(split: DigitsSplit, hp: dict[str, Any] = HYPERPARAMETERS) -> DigitsNet:
    """Adam on the train split; the seed fixes the initialisation and the batch order (global RNG untouched).

    Runs on one CPU thread (restored afterwards): multi-threaded kernels sum in an order
    that depends on the thread count, which would change the weights in the 5th digit.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(split, hp)
    finally:
        torch.set_num_threads(threads)


def _train(split: DigitsSplit, hp: dict[str, Any]) -> DigitsNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(hp["seed"])
        net = DigitsNet(hp["width"], hp["feature_dims"])
    order_gen = torch.Generator().manual_seed(hp["seed"])
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"])
    x, y = split.train_images, split.train_labels
    net.train()
    for _ in range(hp["epochs"]):
        perm = torch.randperm(x.shape[0], generator=order_gen)
        for i in range(0, x.shape[0], hp["batch_size"]):
            idx = perm[i : i + hp["batch_size"]]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval().requires_grad_(False)
    with torch.no_grad():
        net.feature_scale.copy_(net.features(x)[0].pow(2).mean().sqrt())
    return net


def load_classifier_file(path: str | os.PathLike[str]) -> tuple[DigitsNet, dict[str, Any]]:
    """The classifier and its info from a cache file written by :func:`digits_classifier`."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    hp = blob["hyperparameters"]
    net = DigitsNet(hp["width"], hp["feature_dims"])
    net.load_state_dict(blob["state_dict"])
    return net.eval().requires_grad_(False), dict(blob["info"])


def digits_classifier(cache_dir: str | os.PathLike[str] | None = None) -> tuple[DigitsNet, dict[str, Any]]:
    """The digits classifier (eval mode, frozen) and ``info`` (test accuracy, cache file, training time).

    Loaded from ``cache_dir`` (default ``$SCOREKIT_CACHE`` or ``~/.cache/scorekit``) when a
    file for the same data, hyperparameters and code version is there; trained and
    written atomically otherwise. An unreadable cache file is retrained, with a
    :class:`ClassifierCacheWarning`. ``info["from_cache"]`` tells which happened.
    """
    split = digits_split()
    key = _cache_key(split)
    path = resolve_cache_dir(cache_dir) / f"digits-classifier-{key[:16]}.pt"
    if path.exists():
        try:
            net, info = load_classifier_file(path)
            if info.get("key") != key:
                raise ValueError("the file was written for other training data or hyperparameters")
            return net, {**info, "cache_file": str(path), "from_cache": True}
        except Exception as exc:  # a torn, truncated or foreign file: retrain rather than crash
            warnings.warn(
                f"cached digits classifier {path} is unreadable ({type(exc).__name__}: {exc}); retraining and overwriting it",
                ClassifierCacheWarning,
                stacklevel=2,
            )
    start = time.perf_counter()
    net = train_digits_classifier(split)
    seconds = time.perf_counter() - start
    info = {
        "key": key,
        "code_version": CODE_VERSION,
        "test_accuracy": _accuracy(net, split.test_images, split.test_labels),
        "train_accuracy": _accuracy(net, split.train_images, split.train_labels),
        "num_train": int(split.train_images.shape[0]),
        "num_test": int(split.test_images.shape[0]),
        "train_seconds": round(seconds, 3),
    }
    try:
        atomic_save({"hyperparameters": dict(HYPERPARAMETERS), "state_dict": net.state_dict(), "info": info}, path)
    except OSError as exc:
        raise OSError(
            f"cannot write the digits classifier to {path} ({exc}); set $SCOREKIT_CACHE or pass cache_dir= "
            "to a writable folder"
        ) from exc
    return net, {**info, "cache_file": str(path), "from_cache": False}
