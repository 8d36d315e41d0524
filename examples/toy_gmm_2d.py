"""The paper's toy experiments on p = 1/5 N((-5,-5), I) + 4/5 N((5,5), I) (section 3, appendix B.1).

Fig. 2: a 3-layer MLP (128 hidden, softplus) trained with sliced score matching for
10,000 iterations (Adam lr 1e-3, batch 128): its scores are accurate near the modes only.
Fig. 3: 1,280 samples from uniform noise in [-8, 8]^2 with ground-truth scores. Plain
Langevin (eps 0.1, T 1000) gets the mode weights wrong; annealed Langevin (sigmas
geometric 20 -> 1, L 10, eps 0.1, T 100) recovers 1/5 : 4/5.

    python examples/toy_gmm_2d.py [--quick] [--out DIR] [--seed N]

Figures (PNG) need matplotlib (``pip install scorekit[plot]``); without it the numbers
are still printed.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

import torch

import scorekit
from scorekit.cli import report_errors
from scorekit.samplers import AnnealedLangevin, Langevin
from scorekit.score import ScoreFunction
from scorekit.targets import GaussianMixture, TargetScoreNetwork, paper_mixture

HEAVY, LIGHT = torch.tensor([5.0, 5.0]), torch.tensor([-5.0, -5.0])


def pyplot() -> Any:
    """matplotlib.pyplot with a file backend, or None (with a message) if it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping figures (pip install 'scorekit[plot]' to get them)")
        return None
    return plt


def frac_heavy(x: torch.Tensor) -> float:
    """Fraction of samples nearer (5, 5) than (-5, -5); the data have 0.8."""
    return ((x - HEAVY).norm(dim=1) < (x - LIGHT).norm(dim=1)).float().mean().item()


def fig3(mix: GaussianMixture, out: pathlib.Path, seed: int, plt: Any) -> None:
    """Plain vs annealed Langevin with ground-truth scores (the paper's settings in full)."""
    score = ScoreFunction(TargetScoreNetwork(mix), label="ground-truth score")
    runs = {
        "langevin": (Langevin(step_size=0.1, n_steps=1000, init_range=(-8.0, 8.0)), None),
        "annealed_langevin": (
            AnnealedLangevin(step_size=0.1, steps_per_level=100, init_range=(-8.0, 8.0)),
            scorekit.geometric_sigmas(20.0, 1.0, 10),
        ),
    }
    samples = {}
    for name, (sampler, sigmas) in runs.items():
        g = torch.Generator().manual_seed(seed)
        x0 = sampler.initial_noise(torch.empty(1280, 2), g)
        start = time.perf_counter()
        samples[name] = sampler(score, x0, sigmas=sigmas, generator=g)
        print(f"Fig. 3 {name:18s} fraction nearer (5,5): {frac_heavy(samples[name]):.3f} "
              f"(data: 0.800)  [{time.perf_counter() - start:.1f} s]")
    samples["data"] = mix.sample(1280, torch.Generator().manual_seed(seed))
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
    for ax, (name, x) in zip(axes, [("data", samples["data"]), ("langevin", samples["langevin"]),
                                    ("annealed_langevin", samples["annealed_langevin"])]):
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
        ax.set_title(f"{name}: {frac_heavy(x):.2f} near (5,5)")
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "fig3_samples.png", dpi=120)
    plt.close(fig)


def train_ssm(mix: GaussianMixture, iterations: int, seed: int) -> scorekit.ScoreModel:
    """The Fig. 2 score network: SSM on clean data through the public API."""
    torch.manual_seed(seed)  # network initialisation
    model = scorekit.compose(
        network="mlp", estimator="ssm", sampler=None, sigmas=None,
        network_options={"hidden": 128, "depth": 3, "activation": "softplus", "dim": 2},
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        loss = model.loss(mix.sample(128, g), generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % max(1, iterations // 5) == 0:
            print(f"  SSM iteration {it:5d}/{iterations}  loss {loss.item():8.3f}")
    print(f"  trained in {time.perf_counter() - start:.1f} s")
    return model


def fig2(mix: GaussianMixture, model: scorekit.ScoreModel, out: pathlib.Path, plt: Any) -> None:
    """Estimated vs true scores on a grid, and the data density."""
    ticks = torch.linspace(-8, 8, 21)
    grid = torch.cartesian_prod(ticks, ticks)
    with torch.no_grad():
        est = model.score(grid, None)
    true = mix.score(grid)
    density = mix.log_prob(grid).exp()
    err = (est - true).norm(dim=1) / true.norm(dim=1).clamp_min(1e-3)
    near = density > 1e-3
    print(f"Fig. 2 relative score error: {err[near].median():.2f} where p > 1e-3 (near the modes), "
          f"{err[~near].median():.2f} elsewhere")
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    fine = torch.linspace(-8, 8, 200)
    xx, yy = torch.meshgrid(fine, fine, indexing="xy")
    dens = mix.log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).exp().reshape(200, 200)
    axes[0].imshow(dens, origin="lower", extent=(-8, 8, -8, 8), cmap="viridis")
    axes[0].set_title("data density")
    for ax, field, title in [(axes[1], true, "data scores"), (axes[2], est, "estimated scores (SSM)")]:
        unit = field / field.norm(dim=1, keepdim=True).clamp_min(1e-6)
        ax.quiver(grid[:, 0], grid[:, 1], unit[:, 0], unit[:, 1], field.norm(dim=1).log1p(), scale=30)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "fig2_scores.png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run; returns the exit status (2 with one line on stderr for an error, as the
    ``scorekit`` command does)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 SSM iterations instead of 10,000 (a few seconds)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/toy_gmm_2d"), help="figure folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"argument --seed: must be an integer >= 0, got {args.seed}")
    return report_errors("toy_gmm_2d.py", lambda: run(args), final=argv is None)


def run(args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    mix = paper_mixture()
    fig3(mix, args.out, args.seed, plt)
    iterations = 300 if args.quick else 10_000
    print(f"Fig. 2: sliced score matching, {iterations} iterations (Adam lr 1e-3, batch 128)")
    fig2(mix, train_ssm(mix, iterations, args.seed), args.out, plt)
    if plt is not None:
        print(f"figures in {args.out}/")


if __name__ == "__main__":
    sys.exit(main())
