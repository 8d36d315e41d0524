"""Cost of the trainer's parameter updates (Adam, EMA) against a whole training step.

    python benchmarks/update_step.py [--rounds 7] [--threads 2]

On the ``ncsn-digits`` network (``cond_resnet`` 48 x 4, 193k parameters in 42 tensors),
times, in one run and round-robin: Adam's per-tensor loop, its ``foreach`` and ``fused``
kernels (the trainer uses ``fused`` on CPU and CUDA), the EMA as a per-tensor loop, as
:class:`scorekit.training.EMA` (one ``torch._foreach_lerp_``) and as PyTorch's
``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn`` (the same kernel behind
a per-call grouping by device and dtype), and one whole DSM training step at batch 64 for
scale. Each figure is milliseconds per update, median over rounds of 200 updates. It also
says whether the two EMAs hold bit-identical weights after the same updates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved_medians, machine  # noqa: E402
from scorekit_ncsn.presets import PRESETS  # noqa: E402

import scorekit  # noqa: E402
from scorekit.training import EMA  # noqa: E402

REPEATS = 200


def network() -> torch.nn.Module:
    cfg = PRESETS["ncsn-digits"]().model
    net = scorekit.compose(network=cfg.network, estimator="dsm", sampler=None, sigmas=cfg.sigmas.tensor(),
                           network_options=cfg.network_options).network
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    return net


def adam(**kwargs):
    opt = torch.optim.Adam(network().parameters(), lr=1e-3, **kwargs)
    return lambda: [opt.step() for _ in range(REPEATS)]


def ema_loop():
    net = network()
    shadow = [p.detach().clone() for p in net.parameters()]

    def run() -> None:
        with torch.no_grad():
            for _ in range(REPEATS):
                for s, p in zip(shadow, net.parameters()):
                    s.mul_(0.999).add_(p, alpha=0.001)
    return run


def ema_foreach():
    net = network()
    ema = EMA(net, 0.999)
    return lambda: [ema.update(net) for _ in range(REPEATS)]


def ema_swa_utils():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    net = network()
    averaged = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    averaged.update_parameters(net)  # the first call only copies the weights
    return lambda: [averaged.update_parameters(net) for _ in range(REPEATS)]


def ema_agreement(updates: int = 20) -> bool:
    """Whether EMA and a primed AveragedModel hold bit-identical weights after the same updates."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    net = network()
    ema = EMA(net, 0.999)
    averaged = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    averaged.update_parameters(net)  # start from the same copy as EMA
    with torch.no_grad():
        for _ in range(updates):
            for p in net.parameters():
                p.add_(torch.randn_like(p), alpha=1e-2)
            ema.update(net)
            averaged.update_parameters(net)
    mine = dict(averaged.module.named_parameters())
    return all(torch.equal(shadow, mine[name]) for name, shadow in ema.shadow.items())


def train_step():
    cfg = PRESETS["ncsn-digits"]().model
    model = scorekit.compose(network=cfg.network, estimator="dsm", sampler=None, sigmas=cfg.sigmas.tensor(),
                             network_options=cfg.network_options)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x, gen = torch.rand(64, 1, 8, 8), torch.Generator().manual_seed(0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(x, generator=gen).backward()
        opt.step()
    return lambda: [step() for _ in range(REPEATS // 10)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    candidates = {
        "Adam, per-tensor loop": adam(foreach=False),
        "Adam, foreach": adam(foreach=True),
        "Adam, fused (trainer)": adam(fused=True),
        "EMA, per-tensor loop": ema_loop(),
        "EMA, foreach lerp (trainer)": ema_foreach(),
        "EMA, swa_utils AveragedModel": ema_swa_utils(),
        "whole training step (batch 64)": train_step(),
    }
    times = interleaved_medians(candidates, rounds=args.rounds, warmup=1)
    per = {k: v / (REPEATS // 10 if k.startswith("whole") else REPEATS) * 1e3 for k, v in times.items()}
    print(machine())
    for name, ms in per.items():
        print(f"{name:32s} {ms:8.3f} ms")
    step = per["whole training step (batch 64)"]
    saved = per["Adam, per-tensor loop"] - per["Adam, fused (trainer)"]
    saved += per["EMA, per-tensor loop"] - per["EMA, foreach lerp (trainer)"]
    print(f"saved per step: {saved:.2f} ms = {100 * saved / step:.1f} % of a training step")
    print(f"EMA and swa_utils AveragedModel bit-identical after 20 updates: {ema_agreement()}")


if __name__ == "__main__":
    main()
