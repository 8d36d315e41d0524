"""Compiled sampling (``sample.compile``) against eager on a trained run: time and agreement.

    python benchmarks/sample_compile.py [RUN_DIR] [--n 1000]
    python benchmarks/sample_compile.py [RUN_DIR] --grad-modes [--n 1000] [--rounds 3]

Without RUN_DIR it uses the ``ncsn-digits`` preset's model untrained (the timings do not depend on the weights;
the samples are then noise, and only their agreement is compared).

Draws the run's final samples (its sampler, EMA weights, ``sample.batch_size`` chains at a time, the same
seed) three ways in one process: eager, compiled with the compilation (the first call), and compiled once
compiled (the second call). Reports the seconds of each, where the compiled sampling pays off, and the
largest difference between the eager and the compiled samples. With ``--grad-modes`` it instead times the
eager sampling under ``torch.inference_mode()`` (what samplers use for a plain score network) against
``torch.no_grad()`` (what they used before, and still use for a network that declares
``score_needs_autograd``), interleaved over ``--rounds`` rounds, and checks that the samples are identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import attrs
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from scorekit.cli import outputs  # noqa: E402
from scorekit.cli.heap import keep_freed_memory  # noqa: E402
import scorekit  # noqa: E402
import scorekit.digits  # noqa: E402
from scorekit.training import build_model, load_model_from_checkpoint  # noqa: E402


def timed(model, like, cfg, n: int) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    samples = outputs.sample_images(model, like, cfg, n=n, progress=False)
    return time.perf_counter() - start, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="a trained run (default: ncsn-digits untrained)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--grad-modes", action="store_true", help="inference_mode against no_grad, eager")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()  # as the scorekit command does (scorekit/cli/heap.py)
    if args.run_dir is None:
        cfg = scorekit.get_host().get("preset", "ncsn-digits").factory()
        model, like = build_model(cfg), scorekit.digits.load_digits()[0][:1]
    else:
        model, cfg = load_model_from_checkpoint(args.run_dir / "last.pt")
        like = torch.zeros(1, *torch.load(args.run_dir / "last.pt", weights_only=False)["example_shape"])
    print(f"command: python benchmarks/sample_compile.py {' '.join(sys.argv[1:])}\nmachine: {machine()}")
    if args.grad_modes:
        grad_modes(model, like, attrs.evolve(cfg.sample, compile=False), args.n, args.rounds)
        return
    eager_s, eager = timed(model, like, attrs.evolve(cfg.sample, compile=False), args.n)
    compiled_cfg = attrs.evolve(cfg.sample, compile=True)
    first_s, _ = timed(model, like, compiled_cfg, args.n)
    again_s, compiled = timed(model, like, compiled_cfg, args.n)
    print(f"{args.n} samples, sampler {cfg.model.sampler} {dict(cfg.model.sampler_options)}")
    print(f"eager {eager_s:.1f} s; compiled: first call {first_s:.1f} s (compilation included), then {again_s:.1f} s "
          f"({eager_s / again_s:.2f}x eager)")
    saved = eager_s - again_s
    if saved > 0:
        print(f"pays off after {(first_s - again_s) / saved:.1f} samplings of this size in one process")
    print(f"largest |eager - compiled| {float((eager - compiled).abs().max()):.2e}")


def grad_modes(model, like, cfg, n: int, rounds: int) -> None:
    """Eager sampling under inference_mode (the default) and under no_grad (the network declaring
    ``score_needs_autograd``), alternating, medians over ``rounds``."""
    seconds: dict[str, list[float]] = {"inference_mode": [], "no_grad": []}
    results: dict[str, torch.Tensor] = {}
    for _ in range(rounds):
        for mode in seconds:
            model.network.score_needs_autograd = mode == "no_grad"
            elapsed, results[mode] = timed(model, like, cfg, n)
            seconds[mode].append(elapsed)
    med = {mode: statistics.median(values) for mode, values in seconds.items()}
    print(f"{n} samples, {rounds} rounds; median seconds: inference_mode {med['inference_mode']:.2f}, "
          f"no_grad {med['no_grad']:.2f} (inference_mode / no_grad {med['inference_mode'] / med['no_grad']:.3f}); "
          f"samples identical: {torch.equal(results['inference_mode'], results['no_grad'])}")


if __name__ == "__main__":
    main()
