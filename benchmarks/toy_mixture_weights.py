"""The paper's Fig. 3, pinned: the weight of the heavy mode recovered by each sampler.

Data: 1/5 N((-5, -5), I) + 4/5 N((5, 5), I) (``scorekit.targets.paper_mixture``), sampled with
its exact scores (the score of the mixture perturbed by N(0, sigma^2 I), so no training error
enters). Chains start uniform in [-8, 8]^2 (the paper's Fig. 3) unless a row says otherwise;
a sample counts for the heavy mode when it is nearer (5, 5) than (-5, -5). The paper's settings
(section 3 and appendix B.1): sigmas geometric from 20 to 1, L = 10, T = 100 steps per level,
eps = 0.1 for annealed Langevin; eps = 0.1 and T = 1000 for plain Langevin, on the data's own score.

Table 1 runs every sampler at the paper's settings (and the newer samplers also at a schedule
that spends the same 1,000 score evaluations); table 2 searches the (T, eps) of annealed
Langevin within the paper's budget of 10 x T <= 1,000 score evaluations per sample. Each cell
pools ``--seeds`` runs of ``--samples`` chains; the standard error is the binomial one of the
pooled fraction, sqrt(w (1 - w) / n) (the chains are independent).

    python benchmarks/toy_mixture_weights.py [--samples 5000] [--seeds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from scorekit.samplers import (
    HMC,
    AnnealedHMC,
    AnnealedLangevin,
    ConsistentAnnealed,
    Langevin,
    PredictorCorrector,
)
from scorekit.score import ScoreFunction
from scorekit.sigmas import geometric_sigmas
from scorekit.targets import TargetEnergyNetwork, TargetScoreNetwork, paper_mixture

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

WEIGHT = 0.8
PAPER_SIGMAS = geometric_sigmas(20.0, 1.0, 10)
INIT = (-8.0, 8.0)


def heavy_fraction(x: torch.Tensor) -> torch.Tensor:
    """Per-sample indicator (float) of being nearer (5, 5) than (-5, -5)."""
    return ((x - 5.0).norm(dim=1) < (x + 5.0).norm(dim=1)).double()


def uniform_start(n: int, g: torch.Generator) -> torch.Tensor:
    low, high = INIT
    return torch.rand(n, 2, generator=g) * (high - low) + low


def prior_start(n: int, g: torch.Generator) -> torch.Tensor:
    """The VE SDE's prior N(0, sigma_1^2 I), sigma_1 = 20."""
    return 20.0 * torch.randn(n, 2, generator=g)


class Row:
    """One sampler configuration: how to run it on n chains with a seed, and what it costs."""

    def __init__(self, name: str, settings: str, evals: int, run: Callable[[int, torch.Generator], torch.Tensor]):
        self.name, self.settings, self.evals, self.run = name, settings, evals, run


def measure(run: Callable[[int, torch.Generator], torch.Tensor], samples: int, seeds: int) -> dict[str, Any]:
    hits, per_seed = [], []
    start = time.perf_counter()
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        h = heavy_fraction(run(samples, g))
        hits.append(h)
        per_seed.append(float(h.mean()))
    pooled = torch.cat(hits)
    w = float(pooled.mean())
    se = math.sqrt(max(w * (1 - w), 1e-12) / pooled.numel())
    return {"w": w, "se": se, "per_seed": per_seed, "seconds": time.perf_counter() - start}


def rows() -> list[Row]:
    mix = paper_mixture()
    score = ScoreFunction(TargetScoreNetwork(mix))
    energy = ScoreFunction(TargetEnergyNetwork(mix))
    fine = geometric_sigmas(20.0, 1.0, 1000)
    half = geometric_sigmas(20.0, 1.0, 500)

    def sampler_run(sampler: Any, s: ScoreFunction, sigmas: torch.Tensor | None,
                    start: Callable[[int, torch.Generator], torch.Tensor] = uniform_start) -> Callable[..., torch.Tensor]:
        def run(n: int, g: torch.Generator) -> torch.Tensor:
            return sampler(s, start(n, g), sigmas=sigmas, generator=g)
        return run

    ahmc = dict(step_size=math.sqrt(0.1), steps_per_level=10, n_leapfrog=10, init_range=INIT)
    return [
        Row("langevin", "eps 0.1, T 1000, data score (sigmas=None)", 1000,
            sampler_run(Langevin(step_size=0.1, n_steps=1000), score, None)),
        Row("annealed_langevin", "eps 0.1, T 100, L 10 (the paper's)", 1000,
            sampler_run(AnnealedLangevin(step_size=0.1, steps_per_level=100), score, PAPER_SIGMAS)),
        Row("hmc (unadjusted)", "step 0.316, 10 leapfrog x 100, no warm-up, data score", 1000,
            sampler_run(HMC(metropolis=False, step_size=math.sqrt(0.1), n_leapfrog=10, n_warmup=0, n_steps=100),
                        score, None)),
        Row("annealed_hmc (unadjusted)", "step 0.316 = sqrt(0.1), 10 leapfrog x 10 per level, L 10", 1010,
            sampler_run(AnnealedHMC(metropolis=False, **ahmc), score, PAPER_SIGMAS)),
        Row("annealed_hmc (Metropolis)", "the same, with the mixture's energy", 1010,
            sampler_run(AnnealedHMC(metropolis=True, **ahmc), energy, PAPER_SIGMAS)),
        Row("annealed_hmc (unadjusted)", "step 0.316, 5 leapfrog x 20 per level, L 10", 1010,
            sampler_run(AnnealedHMC(metropolis=False, **{**ahmc, "steps_per_level": 20, "n_leapfrog": 5}),
                        score, PAPER_SIGMAS)),
        Row("consistent_annealed", "eta 0.5, L 10 (min eta 0.283)", 10,
            sampler_run(ConsistentAnnealed(step_size=0.5), score, PAPER_SIGMAS)),
        Row("consistent_annealed", "eta 0.1, L 1000 (20 to 1)", 1000,
            sampler_run(ConsistentAnnealed(step_size=0.1), score, fine)),
        Row("consistent_annealed", "eta 0.1, L 1000, start N(0, 20^2 I)", 1000,
            sampler_run(ConsistentAnnealed(step_size=0.1), score, fine, prior_start)),
        Row("predictor_corrector", "snr 0.16, 1 corrector, L 10", 20,
            sampler_run(PredictorCorrector(), score, PAPER_SIGMAS)),
        Row("predictor_corrector", "snr 0.16, 1 corrector, L 500 (20 to 1)", 1000,
            sampler_run(PredictorCorrector(), score, half)),
        Row("predictor_corrector", "snr 0.16, 1 corrector, L 500, start N(0, 20^2 I)", 1000,
            sampler_run(PredictorCorrector(), score, half, prior_start)),
        Row("predictor_corrector", "snr 0.16, 1 corrector, L 10, start N(0, 20^2 I)", 20,
            sampler_run(PredictorCorrector(), score, PAPER_SIGMAS, prior_start)),
    ]


def search_rows(steps: list[int], step_sizes: list[float]) -> list[Row]:
    score = ScoreFunction(TargetScoreNetwork(paper_mixture()))
    out = []
    for t in steps:
        for eps in step_sizes:
            sampler = AnnealedLangevin(step_size=eps, steps_per_level=t)
            out.append(Row("annealed_langevin", f"T {t}, eps {eps:g}", 10 * t,
                           lambda n, g, s=sampler: s(score, uniform_start(n, g), sigmas=PAPER_SIGMAS, generator=g)))
    return out


def table(results: list[tuple[Row, dict[str, Any]]], title: str) -> str:
    lines = [f"**{title}**", "",
             "| sampler | settings | score evals / sample | heavy-mode weight +- SE | per seed | (w - 0.8) / SE | s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row, r in results:
        seeds = ", ".join(f"{w:.3f}" for w in r["per_seed"])
        z = (r["w"] - WEIGHT) / r["se"]
        lines.append(f"| {row.name} | {row.settings} | {row.evals} | {r['w']:.3f} +- {r['se']:.3f} | {seeds} "
                     f"| {z:+.1f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5000, help="chains per seed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100], help="T of the search")
    parser.add_argument("--step-sizes", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0],
                        help="eps of the search")
    parser.add_argument("--beyond-steps", type=int, nargs="*", default=[500],
                        help="T beyond the budget, at eps 0.1 and 0.3 (does more time per level close the gap?)")
    parser.add_argument("--skip-samplers", action="store_true", help="only the (T, eps) search")
    parser.add_argument("--skip-search", action="store_true", help="only table 1")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"`python benchmarks/toy_mixture_weights.py {' '.join(argv if argv is not None else sys.argv[1:])}`".replace(" `", "`"))
    print(f"machine: {machine()}; {args.seeds} seeds x {args.samples} chains per row; exact scores")
    print()
    if not args.skip_samplers:
        results = [(row, measure(row.run, args.samples, args.seeds)) for row in rows()]
        print(table(results, "Every sampler at the paper's settings (and at 1,000 score evaluations)"))
        print()
    if not args.skip_search:
        results = [(row, measure(row.run, args.samples, args.seeds)) for row in search_rows(args.steps, args.step_sizes)]
        print(table(results, "Annealed Langevin: T and eps within 10 x T <= 1,000 score evaluations"))
        hits = [(row, r) for row, r in results if abs(r["w"] - WEIGHT) <= 0.01]
        print()
        print("within 0.800 +- 0.01: " + ("; ".join(f"{row.settings} ({r['w']:.3f} +- {r['se']:.3f})"
                                                   for row, r in hits) or "none"))
    if args.beyond_steps:
        results = [(row, measure(row.run, args.samples, args.seeds))
                   for row in search_rows(args.beyond_steps, [0.1, 0.3])]
        print()
        print(table(results, "Annealed Langevin beyond the budget: more steps per level"))


if __name__ == "__main__":
    main()
