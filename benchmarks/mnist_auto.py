"""MNIST benchmark of ``scorekit run --preset auto``: FID in a classifier space trained on held-out real digits.

The target (the issue of ``--preset auto``): on a folder of MNIST's 60,000 training digits, minus a held-out
part, ``scorekit run --preset auto --data DIR/train`` on 2 CPU cores gives, in 30 minutes all told, samples
whose FID is within 2x of the real-against-real floor. MNIST's test set is never read: it is kept for judging
from outside. Three steps, each a sub-command::

    # 1. the training IDX files (gz or raw) -> PNG folders: DIR/train (50,000) and DIR/heldout (10,000),
    #    as <label>/<MNIST index>.png, split by a fixed-seed permutation; DIR/split.json records it
    python benchmarks/mnist_auto.py prepare --idx /work/data/mnist-idx --out /work/data/mnist [--holdout 10000]

    # 2. a small CNN trained on DIR/heldout (labels from the folder names), deterministic for a given
    #    --threads; its accuracy on a held-out fifth of DIR/heldout is printed; saved as DIR/classifier.pt
    python benchmarks/mnist_auto.py classifier --data /work/data/mnist [--threads 1]

    # the run under test: train only on DIR/train (never on DIR, which holds DIR/heldout too)
    scorekit run --preset auto --data /work/data/mnist/train

    # 3. FID (penultimate features) of RUN_DIR/samples.pt against DIR/heldout, beside the floor: as many
    #    DIR/train images as samples against the same DIR/heldout images; IS and softmax entropy beside
    python benchmarks/mnist_auto.py score --data /work/data/mnist RUN_DIR [--samples FILE] [--json OUT.json]

``score`` passes when ``ratio`` (sample FID / mean floor FID) is at most 2. Samples are float ``N x 1 x 28 x 28``
in [0, 1] (as scorekit writes ``samples.pt``); they are rounded to 8 bits, as the real PNG digits are.
FID shrinks with the number of images (floor about 4.7 at 1,000, 2.8 at 2,000, 1.4 at 5,000), so the floor is
always drawn at the samples' count; at 1,000 one floor draw varies by about 20 %, hence the mean of five.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from scorekit.files import atomic_torch_save, write_json

NUM_TRAIN = 60_000  # MNIST's training set; its 10,000 test images (t10k-*) are never read here
SIDE = 28
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
SPLIT_SEED = 0  # the permutation that picks the held-out images

#: the classifier's recipe, saved with its weights
CLASSIFIER = {"width": 32, "feature_dims": 128, "epochs": 8, "batch_size": 128, "lr": 1e-3, "seed": 0,
              "check_fraction": 0.2}


# ---------------------------------------------------------------------------------------------- prepare


def find_idx(folder: Path, stem: str) -> Path:
    """``folder/stem`` or ``folder/stem.gz``: MNIST's training IDX file of that name."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    sys.exit(f"no {stem} or {stem}.gz in {folder}")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of an IDX file (gzip-compressed or raw), checking its magic number and its length."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        sys.exit(f"{path}: magic number {found}, expected {magic} (is it a Git LFS pointer or an HTML page?)")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) != offset + int(np.prod(shape)):
        sys.exit(f"{path}: {len(raw) - offset} bytes of data for shape {shape}")
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(shape)


def load_mnist_train(folder: Path) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """MNIST's 60,000 training images ``[60000, 28, 28]``, their labels and the files' SHA-256."""
    files = {"images": find_idx(folder, "train-images-idx3-ubyte"),
             "labels": find_idx(folder, "train-labels-idx1-ubyte")}
    images = read_idx(files["images"], IMAGES_MAGIC)
    labels = read_idx(files["labels"], LABELS_MAGIC)
    if images.shape != (NUM_TRAIN, SIDE, SIDE) or labels.shape != (NUM_TRAIN,) or labels.max() > 9:
        sys.exit(f"expected 60,000 28 x 28 images and labels 0-9, got {images.shape} and {labels.shape}")
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files.values()}
    return images, labels, digests


def split(holdout: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted MNIST indices of the training folder and of the held-out folder: a fixed-seed permutation's
    first ``60,000 - holdout`` and last ``holdout``."""
    if not 0 < holdout < NUM_TRAIN:
        sys.exit(f"--holdout must be between 1 and {NUM_TRAIN - 1}")
    order = np.random.default_rng(seed).permutation(NUM_TRAIN)
    return np.sort(order[:-holdout]), np.sort(order[-holdout:])


def write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
    """``folder/<label>/<index>.png`` for every index, as 8-bit grayscale."""
    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
    for i in indices:
        Image.fromarray(images[i]).save(folder / str(labels[i]) / f"{i}.png")


def prepare(args: argparse.Namespace) -> None:
    images, labels, digests = load_mnist_train(args.idx)
    train, heldout = split(args.holdout)
    out = args.out
    targets = [out / "train", out / "heldout"]
    if any(t.exists() for t in targets):
        if not args.force:
            sys.exit(f"{out} already holds train/ or heldout/; pass --force to replace them")
        for t in targets:
            shutil.rmtree(t, ignore_errors=True)
        (out / "classifier.pt").unlink(missing_ok=True)  # trained on the old held-out images
    tmp = out / ".prepare.tmp"  # written here, renamed into place once complete
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.perf_counter()
    write_pngs(tmp / "train", images, labels, train)
    write_pngs(tmp / "heldout", images, labels, heldout)
    for t in targets:
        (tmp / t.name).rename(t)
    tmp.rmdir()
    record = {"source_sha256": digests, "split_seed": SPLIT_SEED, "holdout": args.holdout,
              "train": len(train), "heldout": len(heldout),
              "train_per_class": np.bincount(labels[train], minlength=10).tolist(),
              "heldout_per_class": np.bincount(labels[heldout], minlength=10).tolist()}
    write_json(out / "split.json", record)
    print(f"wrote {len(train)} images to {out / 'train'} and {len(heldout)} to {out / 'heldout'} "
          f"in {time.perf_counter() - start:.0f} s")


# ---------------------------------------------------------------------------------------------- folders


def png_paths(folder: Path) -> list[Path]:
    """Every ``<label>/<index>.png`` under ``folder``, in MNIST index order."""
    paths = sorted(folder.glob("*/*.png"), key=lambda p: int(p.stem))
    if not paths:
        sys.exit(f"no <label>/<index>.png files under {folder}; run the prepare step first")
    return paths


def load_pngs(paths: list[Path]) -> np.ndarray:
    """The images ``[N, 28, 28]`` uint8."""
    return np.stack([np.asarray(Image.open(p).convert("L")) for p in paths])


def folder_labels(paths: list[Path]) -> np.ndarray:
    return np.array([int(p.parent.name) for p in paths])


def listing_digest(paths: list[Path]) -> str:
    """SHA-256 of the ``<label>/<index>.png`` names: which held-out images a classifier was trained on."""
    names = "\n".join(f"{p.parent.name}/{p.name}" for p in paths)
    return hashlib.sha256(names.encode()).hexdigest()


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> float ``[N, 1, 28, 28]`` in [0, 1]."""
    return torch.from_numpy(images).float().div_(255).unsqueeze(1)


# ---------------------------------------------------------------------------------------------- classifier


class DigitNet(nn.Module):
    """Two conv blocks (3x3 conv, ReLU, 2x2 max-pool), a ``feature_dims`` ReLU layer (the FID features), 10 logits."""

    def __init__(self, width: int = 32, feature_dims: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.hidden = nn.Linear(2 * width * 7 * 7, feature_dims)
        self.out = nn.Linear(feature_dims, 10)
        self.dropout = nn.Dropout(0.3)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features and logits of images ``[N, 1, 28, 28]`` in [0, 1]."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        feats = F.relu(self.hidden(h.flatten(1)))
        return feats, self.out(self.dropout(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[1]


def fit_check_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices the classifier trains on and the ones its accuracy is checked on (a seeded ``fraction``)."""
    order = np.random.default_rng(seed).permutation(n)
    n_check = round(n * fraction)
    return np.sort(order[n_check:]), np.sort(order[:n_check])


def train_classifier(x: torch.Tensor, y: torch.Tensor, cfg: dict) -> DigitNet:
    """Adam on cross-entropy, seeded initialisation and batch order."""
    torch.manual_seed(cfg["seed"])
    net = DigitNet(cfg["width"], cfg["feature_dims"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    net.train()
    for epoch in range(cfg["epochs"]):
        total = 0.0
        for batch in torch.randperm(len(x), generator=gen).split(cfg["batch_size"]):
            loss = F.cross_entropy(net(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        print(f"  epoch {epoch + 1}/{cfg['epochs']}: loss {total / len(x):.4f}", flush=True)
    return net.eval()


@torch.no_grad()
def embed(net: DigitNet, images: np.ndarray, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features ``[N, D]`` and softmax probabilities ``[N, 10]`` (float64) of uint8 images."""
    feats, probs = [], []
    for chunk in to_float(images).split(batch_size):
        f, logits = net.features(chunk)
        feats.append(f.double())
        probs.append(logits.double().softmax(1))
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def classifier(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    cfg = dict(CLASSIFIER)
    paths = png_paths(args.data / "heldout")
    images, labels = load_pngs(paths), folder_labels(paths)
    fit, check = fit_check_split(len(paths), cfg["check_fraction"], cfg["seed"])
    x, y = to_float(images), torch.from_numpy(labels)
    start = time.perf_counter()
    net = train_classifier(x[fit], y[fit], cfg)
    seconds = time.perf_counter() - start
    _, probs = embed(net, images[check])
    accuracy = float((probs.argmax(1) == labels[check]).mean())
    fit_accuracy = float((embed(net, images[fit])[1].argmax(1) == labels[fit]).mean())
    info = {"config": cfg, "accuracy": accuracy, "fit_accuracy": fit_accuracy, "num_fit": len(fit),
            "num_check": len(check), "heldout_listing_sha256": listing_digest(paths), "threads": args.threads,
            "train_seconds": round(seconds, 1), "torch": str(torch.__version__)}
    atomic_torch_save({"state_dict": net.state_dict(), "info": info}, args.data / "classifier.pt")
    print(f"accuracy {accuracy:.4f} on {len(check)} held-out images it did not train on "
          f"({fit_accuracy:.4f} on its {len(fit)} training images), {seconds:.0f} s; "
          f"saved {args.data / 'classifier.pt'}")


def load_classifier(data: Path, heldout_paths: list[Path]) -> tuple[DigitNet, dict]:
    """DIR/classifier.pt, checked to be trained on the held-out images DIR/heldout holds now."""
    path = data / "classifier.pt"
    if not path.is_file():
        sys.exit(f"no {path}; train it first: python benchmarks/mnist_auto.py classifier --data {data}")
    saved = torch.load(path, weights_only=True)
    info = saved["info"]
    if info["heldout_listing_sha256"] != listing_digest(heldout_paths):
        sys.exit(f"{path} was trained on other held-out images than {data / 'heldout'} holds; train it again")
    net = DigitNet(info["config"]["width"], info["config"]["feature_dims"])
    net.load_state_dict(saved["state_dict"])
    return net.eval(), info


# ---------------------------------------------------------------------------------------------- score


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features ``a`` and ``b`` (rows are images).

    tr sqrt(C_a C_b) is taken as the sum of the square roots of the eigenvalues of the symmetric
    C_a^1/2 C_b C_a^1/2 (the same eigenvalues): exact and stable where ``scipy.linalg.sqrtm(C_a @ C_b)``
    warns, as it does here, the covariances being singular (ReLU units that never fire).
    """
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(w.clip(0))) @ v.T
    tr_covmean = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(0)).sum()
    mean_term = ((a.mean(0) - b.mean(0)) ** 2).sum()
    return float(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_covmean)


def inception_score(probs: np.ndarray) -> float:
    """exp E_x KL(p(y|x) || p(y)) over the whole set (one split)."""
    marginal = probs.mean(0, keepdims=True)
    kl = (probs * (np.log(probs + 1e-12) - np.log(marginal + 1e-12))).sum(1)
    return float(np.exp(kl.mean()))


def mean_entropy(probs: np.ndarray) -> float:
    """Mean per-image softmax entropy, in nats (low: confident, digit-like images)."""
    return float(-(probs * np.log(probs + 1e-12)).sum(1).mean())


def load_samples(path: Path) -> np.ndarray:
    """``samples.pt`` (float ``N x 1 x 28 x 28`` in [0, 1]) as uint8 ``[N, 28, 28]``, rounded like a PNG."""
    if not path.is_file():
        sys.exit(f"no {path}")
    samples = torch.load(path, weights_only=True)
    if not isinstance(samples, torch.Tensor) or tuple(samples.shape[1:]) != (1, SIDE, SIDE):
        sys.exit(f"{path} must hold a float tensor N x 1 x 28 x 28, got {getattr(samples, 'shape', type(samples))}")
    samples = samples.detach().double()
    if not torch.isfinite(samples).all():
        sys.exit(f"{path} holds NaN or infinite values")
    outside = ((samples < 0) | (samples > 1)).double().mean().item()
    if outside > 0:
        print(f"note: {outside:.2%} of the sample pixels lie outside [0, 1]; clipped")
    return samples.clamp(0, 1).mul(255).round().to(torch.uint8).squeeze(1).numpy()


def summary(feats: np.ndarray, probs: np.ndarray, reference: np.ndarray) -> dict:
    return {"fid": fid(feats, reference), "is": inception_score(probs), "entropy": mean_entropy(probs),
            "class_counts": np.bincount(probs.argmax(1), minlength=10).tolist()}


def score(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    samples_file = args.samples or (args.run_dir / "samples.pt" if args.run_dir else None)
    if samples_file is None:
        sys.exit("give RUN_DIR or --samples FILE")
    samples = load_samples(samples_file)
    heldout_paths = png_paths(args.data / "heldout")
    net, info = load_classifier(args.data, heldout_paths)
    reference, _ = embed(net, load_pngs(heldout_paths))
    n = len(samples)
    if n <= reference.shape[1]:
        sys.exit(f"FID in {reference.shape[1]} dimensions needs more than {reference.shape[1]} samples, got {n}")
    result = {"samples_file": str(samples_file), "num_samples": n, "num_reference": len(reference),
              "classifier_accuracy": info["accuracy"], "active_features": int((reference.std(0) > 0).sum()),
              "samples": summary(*embed(net, samples), reference)}
    train_paths = png_paths(args.data / "train")
    if n > len(train_paths):
        sys.exit(f"{n} samples, but the floor draws as many from {len(train_paths)} training images")
    floors = []
    for seed in range(args.floor_repeats):
        pick = np.sort(np.random.default_rng(seed).choice(len(train_paths), n, replace=False))
        floors.append(summary(*embed(net, load_pngs([train_paths[i] for i in pick])), reference))
    floor_fid = float(np.mean([f["fid"] for f in floors]))
    result.update(floor=floors[0], floor_fids=[f["fid"] for f in floors], floor_fid_mean=floor_fid,
                  ratio=result["samples"]["fid"] / floor_fid)
    report(result)
    if args.json:
        write_json(args.json, result)


def report(r: dict) -> None:
    s, f = r["samples"], r["floor"]
    print(f"{r['num_samples']} samples from {r['samples_file']} against {r['num_reference']} held-out images "
          f"(classifier accuracy {r['classifier_accuracy']:.4f}, "
          f"{r['active_features']} active features)")
    print(f"  FID   samples {s['fid']:10.3f}   floor (real train vs held-out) "
          f"{r['floor_fid_mean']:.3f} [{', '.join(f'{x:.3f}' for x in r['floor_fids'])}]")
    print(f"  ratio {r['ratio']:.3f}  (target <= 2)")
    print(f"  IS    samples {s['is']:10.3f}   real {f['is']:.3f}")
    print(f"  mean softmax entropy (nats)  samples {s['entropy']:.4f}   real {f['entropy']:.4f}")
    print(f"  predicted classes  samples {s['class_counts']}   real {f['class_counts']}")


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("prepare", help="IDX training files -> DIR/train and DIR/heldout PNG folders")
    p.add_argument("--idx", type=Path, required=True, help="folder with train-{images-idx3,labels-idx1}-ubyte[.gz]")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--holdout", type=int, default=10_000, help="images kept out of DIR/train (default 10,000)")
    p.add_argument("--force", action="store_true", help="replace an existing DIR/train and DIR/heldout")
    p.set_defaults(run=prepare)

    p = commands.add_parser("classifier", help="train the feature classifier on DIR/heldout -> DIR/classifier.pt")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the weights depend on it; default 1)")
    p.set_defaults(run=classifier)

    p = commands.add_parser("score", help="FID / IS of a run's samples against DIR/heldout, beside the real floor")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("run_dir", type=Path, nargs="?", help="a scorekit run directory holding samples.pt")
    p.add_argument("--samples", type=Path, help="the samples file (default: RUN_DIR/samples.pt)")
    p.add_argument("--floor-repeats", type=int, default=5, help="floor FIDs over this many seeded draws (mean)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.set_defaults(run=score)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
