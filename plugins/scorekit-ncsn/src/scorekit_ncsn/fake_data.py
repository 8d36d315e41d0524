"""Tiny datasets written in the real on-disk formats, so the real loading code runs in tests and smoke runs."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np


def write_fake_cifar10(root: str | Path, per_batch: int = 20, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` (5 train batches, a test batch, batches.meta) as CIFAR-10 does.

    Images are smooth random colour blobs so that a model has something to learn.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:32, 0:32]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        images = np.empty((per_batch, 3, 32, 32), dtype=np.uint8)
        for k in range(per_batch):
            cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(4, 10)
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
            colour = rng.uniform(0, 1, size=3)
            images[k] = np.clip(255 * colour[:, None, None] * blob[None], 0, 255).astype(np.uint8)
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"data": images.reshape(per_batch, -1),
            b"filenames": [f"img_{k}.png".encode() for k in range(per_batch)],
        }
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    meta = {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                   "horse", "ship", "truck")],
            b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh)
    return Path(root)


def write_fake_mnist(root: str | Path, n: int = 32, seed: int = 0) -> Path:
    """Write ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` in the IDX format."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem in ("train", "t10k"):
        images = (rng.uniform(0, 1, (n, 28, 28)) > 0.8).astype(np.uint8) * 255
        (raw / f"{stem}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (raw / f"{stem}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return Path(root)


__all__ = ["write_fake_cifar10", "write_fake_mnist"]
