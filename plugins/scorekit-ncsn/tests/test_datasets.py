"""Datasets load the real on-disk formats, and say exactly what is missing."""

from __future__ import annotations

import pickle

import pytest
import torch

from scorekit.errors import DataError
from scorekit_ncsn.datasets import DatasetNotFoundError, celeba, cifar10, folder, mnist
from scorekit_ncsn.fake_data import write_fake_cifar10, write_fake_mnist


def test_cifar10_reads_the_python_pickles(tmp_path):
    write_fake_cifar10(tmp_path, per_batch=4)
    train, test = cifar10(tmp_path), cifar10(tmp_path, train=False)
    assert len(train) == 20 and len(test) == 4
    image = train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_cifar10_pixel_layout_matches_the_format(tmp_path):
    """CIFAR-10 stores each image as 1024 red, then 1024 green, then 1024 blue bytes, row-major."""
    write_fake_cifar10(tmp_path, per_batch=2)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")[b"data"][0]
    image = cifar10(tmp_path, train=False)[0]
    assert image[1, 3, 5].item() == pytest.approx(raw[1024 + 3 * 32 + 5] / 255.0)


def test_missing_cifar10_says_which_files_where(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"data_batch_1.*cifar-10-batches-py.*cifar-10-python.tar.gz"):
        cifar10(tmp_path)


def test_corrupt_cifar10_batch_is_named(tmp_path):
    write_fake_cifar10(tmp_path, per_batch=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3 is corrupt"):
        cifar10(tmp_path)


def test_mnist_reads_idx_files(tmp_path):
    write_fake_mnist(tmp_path, n=5)
    ds = mnist(tmp_path)
    assert len(ds) == 5 and ds[0].shape == (1, 28, 28)


def test_missing_mnist_and_celeba(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        mnist(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="img_align_celeba"):
        celeba(tmp_path)


def test_folder_of_images(tmp_path):
    from PIL import Image

    for i in range(6):
        Image.new("RGB", (20, 12), color=(i * 40, 0, 255)).save(tmp_path / f"{i}.png")
    ds = folder(tmp_path, image_size=16, holdout=0.2)
    assert len(ds) == 5 and ds[0].shape == (3, 16, 16)
    assert len(folder(tmp_path, train=False, image_size=16, holdout=0.2)) == 1


def test_empty_and_corrupt_folders(tmp_path):
    with pytest.raises(DataError, match="holds no images"):
        folder(tmp_path)
    (tmp_path / "a.png").write_bytes(b"garbage")
    (tmp_path / "b.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read image .*png"):
        folder(tmp_path)[0]
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        folder(tmp_path / "nope")
