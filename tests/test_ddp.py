"""Two CPU processes under torchrun (gloo): the replicas stay identical and only rank 0 writes the run's files."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from .helpers import torchrun_script

WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    import scorekit
    from scorekit.training import TrainConfig, train

    torch.set_num_threads(1)
    out = sys.argv[1]
    rank = int(os.environ["RANK"])
    data = torch.randn(256, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    model = scorekit.compose(network_options={"hidden": 16})
    cfg = TrainConfig(n_iters=6, batch_size=32, checkpoint_every=3, log_every=2, sample_every=0, eval_every=3,
                      ema_decay=0.9, grad_clip=1.0, device="cpu")
    result = train(model, data, cfg, os.path.join(out, "run"), holdout=data[:64], progress=False)
    torch.save({"model": model.state_dict(), "ema": result.ema.shadow, "step": result.step},
               os.path.join(out, f"rank{rank}.pt"))
    """
)


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_processes_keep_identical_replicas(tmp_path):
    torchrun_script(WORKER, tmp_path)

    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["step"] == r1["step"] == 6
    for key in r0["model"]:
        assert torch.equal(r0["model"][key], r1["model"][key]), key
    for key in r0["ema"]:
        assert torch.equal(r0["ema"][key], r1["ema"][key]), key

    run = tmp_path / "run"
    from scorekit.training import load_checkpoint

    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 6 and ckpt["world_size"] == 2
    for key in r0["model"]:  # the checkpoint holds the unwrapped network's weights
        assert torch.equal(ckpt["model"][key], r0["model"][key]), key
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(m["kind"], m["step"]) for m in lines] == [
        ("train", 2), ("eval", 3), ("train", 4), ("train", 6), ("eval", 6)
    ]  # written once, by rank 0
