"""Nearest training images of each sample, to show that samples are not memorised copies."""

from __future__ import annotations

import os

import torch

from scorekit.errors import MetricsInputError
from scorekit.metrics.image_checks import check_images


def nearest_neighbours(
    queries: torch.Tensor, train: torch.Tensor, k: int, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distances, indices)`` ``[n, k]`` of the ``k`` training images closest in pixel space (L2), ascending.

    Exact distances (no matrix-product shortcut), so an image present in ``train`` is at
    distance exactly 0; ``train`` is scanned in chunks to bound memory.
    """
    q = queries.flatten(1).double()
    best_d = torch.full((q.shape[0], 0), float("inf"), dtype=torch.float64)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.long)
    for start in range(0, train.shape[0], chunk):
        t = train[start : start + chunk].flatten(1).to(q.device, torch.float64)
        d = torch.cdist(q, t, compute_mode="donot_use_mm_for_euclid_dist").cpu()
        d = torch.cat([best_d, d], 1)
        i = torch.cat([best_i, torch.arange(start, start + t.shape[0]).expand(q.shape[0], -1)], 1)
        best_d, pos = d.topk(min(k, d.shape[1]), dim=1, largest=False, sorted=True)
        best_i = i.gather(1, pos)
    return best_d, best_i


def nearest_neighbour_grid(
    samples: torch.Tensor, train: torch.Tensor, path: str | os.PathLike[str], k: int = 5, n: int = 16
) -> torch.Tensor:
    """Save a PNG with one row per sample (the first ``n``): the sample, then its ``k`` nearest training images,
    under a header naming the columns (``sample``, ``nearest 1`` ... ``nearest k``, nearest first).

    Returns the pixel-space L2 distances ``[n, k]`` (ascending per row). A nearest distance
    near 0 means a sample copies a training image.
    """
    from scorekit.training.sampling import write_grid

    samples, train = check_images(samples, "samples"), check_images(train, "train")
    if samples.shape[1:] != train.shape[1:]:
        raise MetricsInputError(
            f"samples {tuple(samples.shape[1:])} and train {tuple(train.shape[1:])} images must have one shape"
        )
    if not (isinstance(k, int) and 1 <= k <= train.shape[0]):
        raise MetricsInputError(f"k must be an integer in [1, {train.shape[0]}] (the training set size), got {k!r}")
    if not (isinstance(n, int) and n >= 1):
        raise MetricsInputError(f"n must be an integer >= 1, got {n!r}")
    queries = samples[:n]
    distances, indices = nearest_neighbours(queries, train, k)
    neighbours = train[indices.flatten().to(train.device)].cpu().reshape(queries.shape[0], k, *train.shape[1:])
    rows = torch.cat([queries.cpu().unsqueeze(1), neighbours], 1)
    labels = ["sample", *(f"nearest {i}" for i in range(1, k + 1))]
    write_grid(rows.flatten(0, 1), path, nrow=k + 1, padding=1, pad_value=0.5, column_labels=labels)
    return distances.to(torch.float32)
