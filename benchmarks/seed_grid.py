"""A preset over training seeds x sampling seeds: FID, IS and per-image classifier entropy against the real floor.

    python benchmarks/seed_grid.py --out runs/seed-grid [--preset ncsn-digits] [--train-seeds 0 1 2]
                                   [--sample-seeds 0 1 2] [--sampler NAME] [--sampler-option KEY=VALUE ...]

Trains the preset once per training seed (``train.seed=S``; an existing run directory resumes, a finished one
is reused), then samples each run with every sampling seed exactly as ``scorekit run`` does (the run's EMA
weights, ``sample.n_samples`` images) and scores the samples with the digits classifier:

- FID and its ratio to the real floor (held-out digits against the training digits),
- IS over splits as large as the real floor's (``isc_matched``) beside the real digits' IS,
- the mean per-image entropy of the classifier's softmax, beside the held-out digits' own: the measure of how
  often a sample's strokes are ambiguous between classes; and the entropy of the mean softmax (class balance).

Prints one Markdown table row per run, then the mean and the worst case of each column. ``--sampler`` and
``--sampler-option`` draw with another sampler or other options from the same trained networks (a sampling
change judged on every training seed, not tuned to one).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import attrs
import torch

import scorekit
from scorekit import metrics
from scorekit.cli.config_files import parse_overrides
from scorekit.cli import outputs
from scorekit.cli.evaluate import extractor_for
from scorekit.metrics.classifier import digits_classifier
from scorekit.training import load_model_from_checkpoint
from scorekit.training.checkpoint import load_checkpoint


def entropies(images: torch.Tensor) -> tuple[float, float]:
    """The digits classifier's mean per-image softmax entropy (nats; ambiguous strokes) and the entropy of its
    mean softmax over all images (class balance; log 10 = 2.303 when even), on images quantised to 8 bits as
    FID and IS see them. IS = exp(marginal - per-image), so the two say which part of an IS gap is which."""
    net, _ = digits_classifier()
    quantised = (images.clamp(0, 1) * 255).round() / 255
    with torch.no_grad():
        _, logits = net.features(quantised)
    p = logits.softmax(dim=1)
    per_image = -(p * p.clamp_min(1e-30).log()).sum(dim=1).mean()
    marginal = p.mean(dim=0)
    return float(per_image), float(-(marginal * marginal.clamp_min(1e-30).log()).sum())


def train_once(preset: str, seed: int, run_dir: Path) -> float:
    """Train (or finish) one run; returns the wall time in seconds (0 when it was already complete)."""
    last = run_dir / "last.pt"
    if last.is_file():
        ckpt = load_checkpoint(last)
        if ckpt["step"] >= ckpt["config"]["train"]["n_iters"]:
            return 0.0
    start = time.perf_counter()
    command = [sys.executable, "-m", "scorekit.cli", "train", "--preset", preset, "--no-samples",
               "--out", str(run_dir), f"train.seed={seed}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs (one sub-folder per training seed)")
    parser.add_argument("--preset", default="ncsn-digits")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sample-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sampler", help="draw with this registered sampler instead of the preset's")
    parser.add_argument("--sampler-option", action="append", default=[], metavar="KEY=VALUE",
                        help="change one of the sampler's options (TOML values), e.g. final_denoise=true")
    args = parser.parse_args()
    changes = parse_overrides(args.sampler_option)
    print(f"command: python benchmarks/seed_grid.py {' '.join(sys.argv[1:])}\n")

    host = scorekit.get_host()
    rows = []
    print("| train seed | sample seed | FID | FID / floor | IS (floor's split size) | IS - real | per-image entropy "
          "| class entropy | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for train_seed in args.train_seeds:
        run_dir = args.out / f"train-seed{train_seed}"
        seconds = train_once(args.preset, train_seed, run_dir)
        model, cfg = load_model_from_checkpoint(run_dir / "last.pt")
        if args.sampler or changes:
            options = {} if args.sampler else dict(cfg.model.sampler_options)
            model = scorekit.compose(network=model.network, estimator=None, sigmas=model.sigmas,
                                     sampler=args.sampler or cfg.model.sampler, sampler_options={**options, **changes})
        train_set = outputs.load_dataset(host, cfg.data, train=True)
        reference = outputs.stack(train_set)
        held = outputs.stack(outputs.load_dataset(host, cfg.data, train=False))
        real_entropy, real_balance = entropies(held)
        for sample_seed in args.sample_seeds:
            samples = outputs.sample_images(model, held[:1], attrs.evolve(cfg.sample, seed=sample_seed), progress=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", metrics.SampleCountWarning)
                result = metrics.evaluate(samples, reference, extractor=extractor_for(train_set),
                                          metrics=("fid", "isc"), real_floor=held)
            floor = result["real_floor"]
            isc = result["isc_matched"]["isc_mean"]
            entropy, balance = entropies(samples)
            row = {"fid": result["fid"], "ratio": result["fid"] / floor["fid"], "isc": isc,
                   "gap": isc - floor["isc_mean"], "entropy": entropy, "balance": balance}
            rows.append(row)
            print(f"| {train_seed} | {sample_seed} | {row['fid']:.4f} | {row['ratio']:.2f} | {row['isc']:.3f} | "
                  f"{row['gap']:+.3f} | {row['entropy']:.3f} | {row['balance']:.3f} | {seconds:.0f} |", flush=True)
            seconds = 0.0
    print(f"\nreal floor: FID {floor['fid']:.4f}, IS {floor['isc_mean']:.3f}, "
          f"per-image entropy of the held-out digits {real_entropy:.3f}, class entropy {real_balance:.3f}")
    worst = {"fid": max, "ratio": max, "isc": min, "gap": min, "entropy": max, "balance": min}
    for key, pick in worst.items():
        values = [r[key] for r in rows]
        print(f"{key}: mean {statistics.fmean(values):.4f}, worst {pick(values):.4f}")


if __name__ == "__main__":
    main()
