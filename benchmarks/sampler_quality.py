"""Sampler shoot-out on a trained run: FID and IS against the number of network evaluations.

    python benchmarks/sampler_quality.py RUN_DIR [--nfe 40 100 200 400] [--seeds 0 1 2] [--n 1000]
                                         [--samplers annealed_langevin ...] [--figure out.png]

Every sampler draws from the run's own network (EMA weights when the run has them) at the run's own noise
levels, with its options chosen to spend about the same number of network evaluations (NFE) per sample; the
figures are the digits-classifier FID and IS of ``scorekit evaluate`` (IS over splits as large as the real
floor's), beside the real-against-real floor. Works on any run directory whose dataset names a feature extractor
(``digits``); other data use Inception when its weights file is given with ``--inception-weights``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

import scorekit
from scorekit import metrics
from scorekit.cli import outputs
from scorekit.cli.evaluate import extractor_for
from scorekit.training import load_model_from_checkpoint
from scorekit.training.sampling import sample_in_batches

#: a sampler's options for a budget of ``nfe`` network evaluations over ``L`` levels; None: no setting fits
Budget = Callable[[int, int, dict], "dict | None"]


def _langevin(scale: float) -> Budget:
    def options(nfe: int, levels: int, preset: dict) -> dict | None:
        steps = round((nfe - 1) / levels)  # the final denoising step is one evaluation
        if steps < 1:
            return None
        # technique 4 of NCSNv2: fewer steps per level want a larger step; `scale` multiplies the preset's
        return {**preset, "steps_per_level": steps, "step_size": preset.get("step_size", 2e-5) * scale,
                "final_denoise": True}

    return options


def _predictor_corrector(nfe: int, levels: int, preset: dict) -> dict | None:
    correctors = round(nfe / levels) - 1  # per level: corrector steps and one predictor step
    return None if correctors < 0 else {"corrector_steps": correctors, "init_range": preset.get("init_range", (0, 1))}


def _consistent(nfe: int, levels: int, preset: dict) -> dict | None:
    # one step per level: only the budget of one pass over the run's levels fits a network trained on them
    return {"step_size": 0.8, "init_range": preset.get("init_range", (0, 1))} if nfe == levels else None


def _annealed_hmc(nfe: int, levels: int, preset: dict) -> dict | None:
    per_level = round(nfe / levels)
    if per_level < 2:
        return None
    leapfrog = 2 if per_level % 2 == 0 else 1
    step = math.sqrt(preset.get("step_size", 2e-5))  # a leapfrog step of sqrt(alpha) is a Langevin step of alpha
    return {"steps_per_level": per_level // leapfrog, "n_leapfrog": leapfrog, "step_size": step, "metropolis": False,
            "init_range": preset.get("init_range", (0, 1))}


def evaluations(name: str, options: dict, levels: int) -> int:
    """Network evaluations per sample of a sampler with these options over ``levels`` levels."""
    if name == "annealed_langevin":
        return levels * options["steps_per_level"] + int(options.get("final_denoise", False))
    if name == "predictor_corrector":
        return levels * (options["corrector_steps"] + 1)
    if name == "annealed_hmc":
        return levels * options["steps_per_level"] * options["n_leapfrog"]
    return levels  # consistent_annealed: one step per level, the last one the denoising step


#: label -> (registered sampler, options for a budget)
SAMPLERS: dict[str, tuple[str, Budget]] = {
    "annealed_langevin": ("annealed_langevin", _langevin(1.0)),
    "annealed_langevin x2 step": ("annealed_langevin", _langevin(2.0)),
    "predictor_corrector": ("predictor_corrector", _predictor_corrector),
    "annealed_hmc (unadjusted)": ("annealed_hmc", _annealed_hmc),
    "consistent_annealed": ("consistent_annealed", _consistent),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--nfe", type=int, nargs="+", default=[40, 100, 200, 400])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--n", type=int, default=1000, help="samples per figure")
    parser.add_argument("--samplers", nargs="+", choices=sorted(SAMPLERS), default=list(SAMPLERS))
    parser.add_argument("--inception-weights", help="the Inception-v3 weights file, for data without an extractor")
    parser.add_argument("--figure", type=Path, help="write FID and IS against NFE to this PNG (needs matplotlib)")
    args = parser.parse_args()

    trained, cfg = load_model_from_checkpoint(args.run_dir / "last.pt")
    host = scorekit.get_host()
    train_set = outputs.load_dataset(host, cfg.data, train=True)
    reference, held = outputs.stack(train_set), outputs.stack(outputs.load_dataset(host, cfg.data, train=False))
    extractor = extractor_for(train_set)
    levels = trained.sigmas.numel()
    preset = dict(cfg.model.sampler_options)
    print(f"command: python benchmarks/sampler_quality.py {' '.join(sys.argv[1:])}")
    print(f"run {args.run_dir} ({cfg.name}): {levels} levels, {args.n} samples per figure, extractor {extractor}\n")
    print("| sampler | NFE | options | seed | FID | IS (floor's split size) | s |")
    print("|---|---|---|---|---|---|---|")
    rows, floor = [], None
    for label in args.samplers:
        name, budget = SAMPLERS[label]
        for nfe in args.nfe + ([levels] if label == "consistent_annealed" else []):
            options = budget(nfe, levels, preset)
            if options is None:
                continue
            model = scorekit.compose(network=trained.network, estimator=None, sampler=name, sigmas=trained.sigmas,
                                     sampler_options=options)
            for seed in args.seeds:
                start = time.perf_counter()
                with torch.no_grad():
                    samples = sample_in_batches(model, held[:1], args.n, generator=torch.Generator().manual_seed(seed),
                                                batch_size=cfg.sample.batch_size, to_cpu=True)
                samples = samples.clamp(*cfg.sample.clamp) if cfg.sample.clamp else samples
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", metrics.SampleCountWarning)
                    result = metrics.evaluate(samples, reference, extractor=extractor, metrics=("fid", "isc"),
                                              real_floor=held, weights_path=args.inception_weights)
                floor = result["real_floor"]
                fid, isc = result["fid"], result["isc_matched"]["isc_mean"]
                seconds = time.perf_counter() - start
                used = evaluations(name, options, levels)
                rows.append((label, used, seed, fid, isc))
                shown = {k: v for k, v in options.items() if k != "init_range"}
                print(f"| {label} | {used} | {shown} | {seed} | {fid:.4f} | {isc:.3f} | {seconds:.0f} |", flush=True)
    if floor is not None:
        print(f"\nreal floor (held-out digits against the training digits): FID {floor['fid']:.4f}, "
              f"IS {floor['isc_mean']:.3f}")
    if args.figure and rows:
        plot(rows, floor, args.figure)


def plot(rows: list[tuple], floor: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == label]
        for ax, column in zip(axes, (3, 4)):
            by_nfe: dict[int, list[float]] = {}
            for r in mine:
                by_nfe.setdefault(r[1], []).append(r[column])
            xs = sorted(by_nfe)
            ax.plot(xs, [sum(by_nfe[x]) / len(by_nfe[x]) for x in xs], marker="o", label=label)
    for ax, key, name in zip(axes, ("fid", "isc_mean"), ("FID (digits classifier)", "IS, floor's split size")):
        if floor is not None:
            ax.axhline(floor[key], color="gray", linestyle="--", label="real floor")
        ax.set_xscale("log")
        ticks = sorted({round(r[1], -1) for r in rows})  # 41 and 40 evaluations share the tick 40
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("network evaluations per sample")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
