"""One training step and one sampling step of the CIFAR-10 ``ncsn`` network, against the authors' code.

    python benchmarks/train_step.py [--reference PATH] [--batch 16] [--rounds 3] [--ngf 128] [--bf16]

``--reference`` is a checkout of github.com/ermongroup/ncsn (never vendored here); its
``CondRefineNetDilated`` is timed side by side, interleaved, in the same process. A
training step is the DSM loss (one level per example, Eq. 5 with lambda = sigma^2) +
backward + Adam step; a sampling step is one annealed Langevin update (Algorithm 1).
Peak memory is the peak resident set size (``VmHWM``) of a fresh process doing three training steps;
"saved for backward" is the size of the tensors autograd keeps from one forward pass (storages counted
once), the activation memory that the architecture decides, free of allocator noise.
Goals: issue 5, no slower than the reference; issue 16, 1.5x its throughput at 0.7x its memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved_medians, machine  # noqa: E402

import scorekit  # noqa: E402

SIGMAS = scorekit.geometric_sigmas(1.0, 0.01, 10)


def scorekit_candidate(ngf: int, batch: int):
    torch.manual_seed(0)
    model = scorekit.compose(network="ncsn", estimator="dsm", sampler="annealed_langevin", sigmas=SIGMAS,
                             network_options={"ngf": ngf}, sampler_options={"steps_per_level": 1})
    return model.network, lambda x, labels: model.network(x, SIGMAS[labels]), model


def reference_candidate(path: Path, ngf: int):
    sys.path.insert(0, str(path))
    from models.cond_refinenet_dilated import CondRefineNetDilated  # type: ignore[import-not-found]

    config = types.SimpleNamespace(
        data=types.SimpleNamespace(logit_transform=False, channels=3, image_size=32),
        model=types.SimpleNamespace(ngf=ngf, num_classes=10),
    )
    torch.manual_seed(0)
    net = CondRefineNetDilated(config)
    return net, lambda x, labels: net(x, labels)


def make_steps(net: torch.nn.Module, score, batch: int, bf16: bool = False):
    """Closures for one DSM training step and one annealed Langevin update with ``score(x, labels)``."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, 32, 32, generator=gen)

    def train_step() -> None:
        labels = torch.randint(0, 10, (batch,), generator=gen)
        sigma = SIGMAS[labels].reshape(-1, 1, 1, 1)
        z = torch.randn(x.shape, generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # what train.bf16 does
            s = score(x + sigma * z, labels).float()
        loss = 0.5 * (sigma * s + z).pow(2).flatten(1).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    labels = torch.full((batch,), 5, dtype=torch.long)
    alpha = 2e-5 * (SIGMAS[5] / SIGMAS[-1]) ** 2

    @torch.no_grad()
    def sample_step() -> None:
        s = score(x, labels)
        x.add_(alpha / 2 * s + alpha**0.5 * torch.randn(x.shape, generator=gen)).clamp_(0, 1)

    return train_step, sample_step


def saved_for_backward_mib(score, batch: int) -> float:
    """MiB of the tensors autograd saves in one forward pass of ``score`` (each storage counted once)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.rand(batch, 3, 32, 32)
    labels = torch.arange(batch) % len(SIGMAS)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        score(x, labels)
    return sum(storages.values()) / 2**20


def peak_rss_mib() -> float:
    """This process's peak resident set size. Not ``getrusage``'s ``ru_maxrss``: Linux carries that over
    ``exec`` from the forking parent, so a child of a large benchmark process reports the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark's memory figure needs Linux)")


def peak_memory_child(kind: str, reference: str | None, ngf: int, batch: int, bf16: bool = False) -> None:
    """Runs in a fresh process: three training steps, then prints the peak RSS and the saved tensors' MiB."""
    if kind == "scorekit":
        net, score, _ = scorekit_candidate(ngf, batch)
    else:
        net, score = reference_candidate(Path(reference), ngf)  # type: ignore[arg-type]
    train_step, _ = make_steps(net, score, batch, bf16)
    for _ in range(3):
        train_step()
    peak = peak_rss_mib()
    print(json.dumps({"peak_rss_mib": peak, "saved_mib": saved_for_backward_mib(score, batch)}))


def peak_memory(kind: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", kind, "--ngf", str(args.ngf), "--batch", str(args.batch)]
    cmd += ["--bf16"] if args.bf16 else []
    if args.reference:
        cmd += ["--reference", str(args.reference)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="checkout of github.com/ermongroup/ncsn")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ngf", type=int, default=128)
    parser.add_argument("--bf16", action="store_true",
                        help="training steps of both networks under CPU bfloat16 autocast (as train.bf16)")
    parser.add_argument("--child", choices=["scorekit", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_memory_child(args.child, str(args.reference) if args.reference else None, args.ngf, args.batch, args.bf16)
        return

    net, score, _ = scorekit_candidate(args.ngf, args.batch)
    ours_train, ours_sample = make_steps(net, score, args.batch, args.bf16)
    candidates = {"scorekit train": ours_train, "scorekit sample": ours_sample}
    kinds = ["scorekit"]
    if args.reference:
        ref_net, ref_score = reference_candidate(args.reference, args.ngf)
        assert sum(p.numel() for p in ref_net.parameters()) == sum(p.numel() for p in net.parameters())
        ref_train, ref_sample = make_steps(ref_net, ref_score, args.batch, args.bf16)
        candidates.update({"reference train": ref_train, "reference sample": ref_sample})
        kinds.append("reference")
    med = interleaved_medians(candidates, rounds=args.rounds, warmup=1)
    memory = {k: peak_memory(k, args) for k in kinds}

    print(f"machine: {machine()}")
    print("command: python benchmarks/train_step.py " + " ".join(sys.argv[1:]))
    print(f"ncsn ngf={args.ngf}, CIFAR-10 3x32x32, batch {args.batch}, "
          f"{sum(p.numel() for p in net.parameters()):,} parameters" + (", training under bf16 autocast" if args.bf16 else ""))
    print("| implementation | train step (s) | sampling step (s) | peak RSS, 3 train steps (MiB) "
          "| saved for backward (MiB) |")
    print("|---|---|---|---|---|")
    for k in kinds:
        print(f"| {k} | {med[k + ' train']:.3f} | {med[k + ' sample']:.3f} | {memory[k]['peak_rss_mib']:.0f} "
              f"| {memory[k]['saved_mib']:.0f} |")
    if args.reference:
        ours, ref = memory["scorekit"], memory["reference"]
        print(f"| ratio scorekit / reference | {med['scorekit train'] / med['reference train']:.2f} | "
              f"{med['scorekit sample'] / med['reference sample']:.2f} | "
              f"{ours['peak_rss_mib'] / ref['peak_rss_mib']:.2f} | {ours['saved_mib'] / ref['saved_mib']:.2f} |")
        print(f"scorekit's training throughput: {med['reference train'] / med['scorekit train']:.2f}x the reference's")


if __name__ == "__main__":
    main()
