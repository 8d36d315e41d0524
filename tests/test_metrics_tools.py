"""scorekit.metrics: the nearest-neighbour grid and the results table."""

from __future__ import annotations

import pytest
import torch

from scorekit.metrics import MetricsInputError, format_table, nearest_neighbour_grid
from scorekit.metrics.neighbours import nearest_neighbours


def test_nearest_neighbour_grid_writes_png_and_finds_exact_copies(tmp_path):
    train = torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    samples = torch.cat([train[7:8], torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))])
    path = tmp_path / "neighbours.png"
    distances = nearest_neighbour_grid(samples, train, path, k=3, n=4)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert distances.shape == (4, 3)
    assert distances[0, 0] == 0.0 and (distances[1:, 0] > 0).all()
    assert (distances.diff(dim=1) >= 0).all()
    from PIL import Image

    with Image.open(path) as img:  # 4 rows of 1 + 3 images, 8 px upscaled 8x, 1 px padding 2x, a header band
        assert img.size[0] == 4 * 66 + 2 and img.size[1] > 4 * 66 + 2


def test_nearest_neighbours_match_brute_force_across_chunks():
    gen = torch.Generator().manual_seed(0)
    train, queries = torch.rand(37, 1, 4, 4, generator=gen), torch.rand(5, 1, 4, 4, generator=gen)
    d, i = nearest_neighbours(queries, train, k=4, chunk=10)
    full = torch.cdist(queries.flatten(1).double(), train.flatten(1).double())
    ref_d, ref_i = full.topk(4, largest=False)
    assert torch.equal(i, ref_i) and torch.allclose(d, ref_d)


def test_nearest_neighbour_grid_rejects_bad_input(tmp_path):
    train = torch.rand(10, 1, 8, 8)
    with pytest.raises(MetricsInputError, match="one shape"):
        nearest_neighbour_grid(torch.rand(4, 1, 4, 4), train, tmp_path / "x.png")
    with pytest.raises(MetricsInputError, match=r"k must be .* \[1, 10\]"):
        nearest_neighbour_grid(torch.rand(4, 1, 8, 8), train, tmp_path / "x.png", k=11)
    with pytest.raises(MetricsInputError, match="NaN"):
        nearest_neighbour_grid(torch.full((4, 1, 8, 8), float("nan")), train, tmp_path / "x.png")


def test_format_table_without_floor_or_loss():
    table = format_table({"extractor": "scorekit-digits", "num_samples": 500, "num_reference": 1438, "fid": 1.5})
    assert "FID" in table and "1.5" in table and "Eq. 6" not in table
    assert table.splitlines()[0].startswith("feature extractor: scorekit-digits")
