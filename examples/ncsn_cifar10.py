"""The paper's CIFAR-10 run (Song & Ermon 2019, section 5) as one composed configuration.

    python examples/ncsn_cifar10.py --data-root data/cifar10 [--out DIR]
    python examples/ncsn_cifar10.py --smoke        # tiny width on a generated CIFAR-10, < 1 minute

``--data-root`` is the folder that holds ``cifar-10-batches-py/`` (extract
cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html there).
Everything goes through the public API: compose(), the trainer and the sampler. The
same run from the command line is ``scorekit train --preset ncsn-cifar10 --data ROOT``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import scorekit
from scorekit.cli import report_errors
from scorekit.cli.outputs import save_samples
from scorekit.training import RunConfig, TrainConfig, new_run_dir, train
from scorekit.training.run_config import DataConfig, ModelConfig, SampleConfig, SigmaConfig

#: the paper's hyperparameters (section 5, appendix B.2)
PAPER = {
    "sigmas": SigmaConfig(first=1.0, last=0.01, n=10),  # L = 10, geometric
    "network_options": {"channels": 3, "image_size": 32, "ngf": 128},  # 30,117,635 parameters
    "sampler_options": {"step_size": 2e-5, "steps_per_level": 100},  # epsilon, T; uniform initial noise
    "train": TrainConfig(n_iters=200_000, batch_size=128, lr=1e-3, checkpoint_every=5_000,
                         sample_every=5_000, eval_every=5_000),
    "n_samples": 50_000,
}
#: a tiny version that exercises every part in seconds
SMOKE = {
    "sigmas": SigmaConfig(first=1.0, last=0.01, n=3),
    "network_options": {"channels": 3, "image_size": 32, "ngf": 4},
    "sampler_options": {"step_size": 2e-5, "steps_per_level": 2},
    "train": TrainConfig(n_iters=4, batch_size=8, lr=1e-3, checkpoint_every=2, sample_every=0, eval_every=2,
                         log_every=1),
    "n_samples": 8,
}


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run; returns the exit status (2 with one line on stderr for an error, as the
    ``scorekit`` command does)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--out", type=Path, help="run directory (default runs/ncsn-cifar10-<timestamp>)")
    parser.add_argument("--smoke", action="store_true", help="tiny run on a generated CIFAR-10 in the real format")
    args = parser.parse_args(argv)
    return report_errors("ncsn_cifar10.py", lambda: run(args, parser), final=argv is None)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    setup = SMOKE if args.smoke else PAPER
    data_root = args.data_root
    if args.smoke:
        from scorekit_ncsn.fake_data import write_fake_cifar10

        data_root = write_fake_cifar10(Path(tempfile.mkdtemp(prefix="cifar10-smoke-")), per_batch=16)
    elif data_root is None:
        parser.error("--data-root is required (or --smoke)")

    host = scorekit.get_host()
    cifar10 = host.get("dataset", "cifar10").factory  # the scorekit-ncsn plugin's loader
    train_set, test_set = cifar10(root=data_root, train=True), cifar10(root=data_root, train=False)

    config = RunConfig(
        name="ncsn-cifar10-smoke" if args.smoke else "ncsn-cifar10",
        model=ModelConfig(network="ncsn", estimator="dsm", sampler="annealed_langevin", sigmas=setup["sigmas"],
                          network_options=setup["network_options"], sampler_options=setup["sampler_options"]),
        data=DataConfig(name="cifar10", root=str(data_root)),
        train=setup["train"],
        sample=SampleConfig(n_samples=setup["n_samples"], batch_size=min(500, setup["n_samples"])),
    )
    torch.manual_seed(config.train.seed)
    model = scorekit.compose(
        network="ncsn", estimator="dsm", sampler="annealed_langevin", sigmas=config.model.sigmas.tensor(),
        network_options=config.model.network_options, sampler_options=config.model.sampler_options,
    )
    run_dir = args.out or new_run_dir(config.name)
    start = time.perf_counter()
    result = train(model, train_set, config.train, run_dir, run_config=config, holdout=test_set,
                   progress=not args.smoke)
    if result.ema is not None:
        result.ema.copy_to(model)

    model.eval()
    generator = torch.Generator().manual_seed(0)
    like = torch.empty(config.sample.batch_size, 3, 32, 32)
    batches = []
    with torch.no_grad():
        for _ in range(0, config.sample.n_samples, config.sample.batch_size):
            x_init = model.initial_noise(like, generator)  # uniform noise, as in the paper
            batches.append(model.sample(x_init, generator=generator).clamp(0, 1))
    samples = torch.cat(batches)[: config.sample.n_samples]
    save_samples(run_dir / "samples.pt", samples, grid_size=64)
    print(f"{result.step} steps, held-out Eq. 6 loss {result.heldout_loss}, {samples.shape[0]} samples "
          f"in {run_dir} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
