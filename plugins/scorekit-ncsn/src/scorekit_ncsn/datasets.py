"""The paper's datasets (section 5) and any folder of images (the digits dataset is scorekit's own).

Every dataset yields image tensors ``C x H x W`` with pixels in [0, 1]. Nothing is
downloaded: when files are missing, :class:`DatasetNotFoundError` says exactly which
files to put where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from scorekit.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset's files are not where they should be; the message says what to put where."""


class ImagesOnly(Dataset):
    """Drops the labels of a torchvision dataset and applies a tensor transform."""

    def __init__(self, base: Dataset, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> torch.Tensor:
        item = self.base[i]
        image = item[0] if isinstance(item, (tuple, list)) else item
        return self.transform(image) if self.transform is not None else image


class TensorImages(Dataset):
    """Images held in one ``[N, C, H, W]`` tensor in [0, 1]."""

    def __init__(self, images: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        image = self.images[i]
        return self.transform(image) if self.transform is not None else image


def _root(root: str | Path | None, default: str) -> Path:
    return Path(root if root is not None else Path("data") / default).expanduser()


def _check_flag(name: str, value: object) -> None:
    """A dataset's on/off option must be a bool (a string such as "no" would be truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"option '{name}' must be true or false, got {value!r}")


def _transforms(*, flip: bool, crop: int | None = None, size: int | tuple[int, int] | None = None):
    from torchvision import transforms as T

    steps: list = []
    if crop:
        steps.append(T.CenterCrop(crop))
    if size:
        steps.append(T.Resize(size, antialias=True))
    if flip:
        steps.append(T.RandomHorizontalFlip())
    steps.append(T.ToTensor())
    return T.Compose(steps)


CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)


def read_cifar10_batches(folder: Path, names: Sequence[str]) -> torch.Tensor:
    """The images of CIFAR-10 python pickles (``cifar-10-batches-py``) as uint8 ``[N, 3, 32, 32]``.

    Not ``torchvision.datasets.CIFAR10``: it checks each file against the md5 of the real
    archive, so it rejects the files of :func:`scorekit_ncsn.fake_data.write_fake_cifar10`
    that tests and smoke runs use, and it yields one PIL image per item.
    """
    import pickle

    import numpy as np

    arrays = []
    for name in names:
        path = folder / name
        try:
            with open(path, "rb") as fh:
                batch = pickle.load(fh, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as exc:
            raise DataError(f"CIFAR-10 file {path} is corrupt or not a CIFAR-10 batch ({exc}); extract the archive again") from exc
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"CIFAR-10 file {path} holds data of shape {data.shape}; expected [N, 3072]")
        arrays.append(data)
    return torch.from_numpy(np.concatenate(arrays)).reshape(-1, 3, 32, 32)


def cifar10(root: str | Path | None = None, train: bool = True, flip: bool = True) -> Dataset:
    """CIFAR-10 (3 x 32 x 32) from the python pickles; random horizontal flips for training (section 5)."""
    _check_flag("flip", flip)
    base = _root(root, "cifar10")
    folder = base / "cifar-10-batches-py"
    names = CIFAR10_TRAIN if train else CIFAR10_TEST
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"CIFAR-10 not found: missing {', '.join(missing)} in {folder}. Download cifar-10-python.tar.gz "
            f"(https://www.cs.toronto.edu/~kriz/cifar.html) and extract it into {base} so that "
            f"{folder}/data_batch_1 exists; or pass --data PATH pointing at the folder that holds cifar-10-batches-py/"
        )
    images = read_cifar10_batches(folder, names).float().div_(255.0)
    return TensorImages(images, transform=_random_flip if (flip and train) else None)


def _random_flip(image: torch.Tensor) -> torch.Tensor:
    """Horizontal flip with probability 1/2 (the data loader's RNG, seeded by the trainer)."""
    return image.flip(-1) if torch.rand(()) < 0.5 else image


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def mnist(root: str | Path | None = None, train: bool = True) -> Dataset:
    """MNIST (1 x 28 x 28), no flips (section 5), from the four uncompressed IDX files."""
    from torchvision.datasets import MNIST

    base = _root(root, "mnist")
    raw = base / "MNIST" / "raw"
    missing = [n for n in MNIST_FILES if not (raw / n).is_file()]
    if missing:
        zipped = [n for n in missing if (raw / f"{n}.gz").is_file()]
        hint = f" ({', '.join(n + '.gz' for n in zipped)} found: gunzip them)" if zipped else ""
        raise DatasetNotFoundError(
            f"MNIST not found: missing {', '.join(missing)} in {raw}{hint}. Download the four files from "
            f"http://yann.lecun.com/exdb/mnist/, gunzip them into {raw}/; or pass --data PATH pointing at "
            f"the folder that holds MNIST/raw/"
        )
    try:
        return ImagesOnly(MNIST(str(base), train=train, download=False, transform=_transforms(flip=False)))
    except (RuntimeError, ValueError, OSError) as exc:
        raise DataError(f"MNIST files in {raw} could not be read ({exc}); download them again") from exc


def celeba(root: str | Path | None = None, train: bool = True, flip: bool = True) -> Dataset:
    """CelebA: center-crop 140, resize to 32 x 32, random flips (section 5)."""
    from torchvision.datasets import CelebA

    _check_flag("flip", flip)
    base = _root(root, "celeba")
    folder = base / "celeba"
    needed = ["img_align_celeba", "list_eval_partition.txt", "identity_CelebA.txt", "list_attr_celeba.txt",
              "list_bbox_celeba.txt", "list_landmarks_align_celeba.txt"]
    missing = [n for n in needed if not (folder / n).exists()]
    if missing:
        raise DatasetNotFoundError(
            f"CelebA not found: missing {', '.join(missing)} in {folder}. Download the aligned images "
            f"(img_align_celeba.zip, extracted to {folder}/img_align_celeba/) and the annotation files from "
            f"https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html into {folder}/"
        )
    ds = CelebA(str(base), split="train" if train else "test", download=False,
                transform=_transforms(flip=flip and train, crop=140, size=32))
    return ImagesOnly(ds)


def folder(root: str | Path | None = None, train: bool = True, image_size: int | None = None,
           channels: int = 3, holdout: float = 0.05, flip: bool = False) -> Dataset:
    """Any folder of images (searched recursively), resized to ``image_size`` when given.

    A fixed ``holdout`` fraction of the sorted file list is the test split. Without
    ``image_size`` every image must have the same size (checked here, from the file headers).
    """
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"option 'image_size' must be an integer >= 1 (pixels) or unset, got {image_size!r}")
    if isinstance(channels, bool) or channels not in ImageFiles.MODES:
        raise ValueError(f"option 'channels' must be one of {list(ImageFiles.MODES)} (gray or RGB), got {channels!r}")
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
        raise ValueError(f"option 'holdout' must be a fraction in [0, 1), got {holdout!r}")
    _check_flag("flip", flip)
    if root is None:
        raise DatasetNotFoundError("dataset 'folder' needs a root: pass --data PATH (a folder of .png/.jpg images)")
    base = Path(root).expanduser()
    if not base.is_dir():
        what = "is a file, not a folder" if base.exists() else "does not exist"
        raise DatasetNotFoundError(f"image folder {base} {what}")
    files = sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {base} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    if image_size is None:
        _check_same_size(base, files)
    n_test = max(1, int(round(holdout * len(files)))) if len(files) > 1 else 0
    chosen = files[n_test:] if train else files[:n_test]
    size = (image_size, image_size) if image_size else None
    return ImageFiles(chosen, channels=channels, transform=_transforms(flip=flip and train, size=size))


def _check_same_size(base: Path, files: Sequence[Path]) -> None:
    """Images that would be stacked into one batch must have one size: name two that differ."""
    from PIL import Image, UnidentifiedImageError

    first: tuple[Path, tuple[int, int]] | None = None
    for path in files:
        try:
            with Image.open(path) as img:  # reads the header only
                size = img.size
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot read image {path}: {exc}; remove or replace the file") from exc
        if first is None:
            first = (path, size)
        elif size != first[1]:
            (a, (wa, ha)), (wb, hb) = first, size
            raise DataError(
                f"image folder {base} holds images of different sizes ({a} is {wa}x{ha}, {path} is {wb}x{hb}) and "
                "no image_size is set; set data.options.image_size (e.g. {image_size = 32}) to resize them all"
            )


class ImageFiles(Dataset):
    """Image files decoded with PIL; a file that cannot be read is an error naming it.

    Not torchvision's ``ImageFolder`` (it needs one subfolder per class and its loader is
    RGB only) nor ``torchvision.io.decode_image`` (no BMP or TIFF, which this dataset reads).
    """

    MODES = {1: "L", 3: "RGB"}

    def __init__(self, files: Sequence[Path], channels: int, transform: Callable) -> None:
        if channels not in self.MODES:
            raise ValueError(f"folder dataset: channels must be one of {list(self.MODES)}, got {channels!r}")
        self.files, self.mode, self.transform = list(files), self.MODES[channels], transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        path = self.files[i]
        try:
            with Image.open(path) as img:
                return self.transform(img.convert(self.mode))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot read image {path}: {exc}; remove or replace the file") from exc


#: registered name -> factory
DATASETS: dict[str, Callable[..., Dataset]] = {
    "cifar10": cifar10,
    "mnist": mnist,
    "celeba": celeba,
    "folder": folder,
}
