"""``train.time_budget``: the run stops after that many seconds, checkpointed, as if n_iters were reached."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch
from torch import nn

import scorekit
from scorekit.training import TrainConfig, load_checkpoint, train
from scorekit.training import trainer as trainer_module

from .helpers import torchrun_script


def data() -> torch.Tensor:
    return torch.randn(96, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0


def tiny() -> scorekit.ScoreModel:
    return scorekit.compose(network_options={"hidden": 16})


def config(**overrides) -> TrainConfig:
    defaults = dict(n_iters=100, batch_size=32, checkpoint_every=50, sample_every=0, eval_every=0, log_every=3)
    return TrainConfig(**{**defaults, **overrides})


class StepClock:
    """A clock that reads ten seconds per completed training step (set by the training callback)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, info: trainer_module.StepInfo) -> None:
        self.now = info.step * 10.0


def lines(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_budget_stops_the_run_checkpointed_and_a_resume_gets_a_fresh_one(tmp_path, monkeypatch, caplog):
    clock = StepClock()
    monkeypatch.setattr(trainer_module, "_clock", clock)
    run = tmp_path / "r"
    with caplog.at_level(logging.INFO, logger="scorekit.training"):
        result = train(tiny(), data(), config(time_budget=45.0), run, callback=clock.tick, progress=False)
    # step 5 reads 50 s >= 45 s: the step is finished, checkpointed, and the run ends there
    assert result.step == 5 and result.time_budget_reached
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == 5
    assert ckpt["stopped"] == {"reason": "time_budget", "time_budget": 45.0, "seconds": 50.0, "n_iters": 100}
    stops = [m for m in lines(run) if m["kind"] == "time_budget"]
    assert stops == [{"kind": "time_budget", "step": 5, "time_budget": 45.0, "seconds": 50.0, "n_iters": 100}]
    assert any(m["kind"] == "train" and m["step"] == 5 for m in lines(run))  # the last window is logged too
    assert "time budget of 45 s reached at step 5 of 100" in caplog.text

    # the resumed process starts its own budget at 50 s: 45 s more, so it stops at step 10, not at once
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="scorekit.training"):
        again = train(tiny(), data(), config(time_budget=45.0), run, callback=clock.tick, progress=False)
    assert again.step == 10 and again.time_budget_reached
    assert load_checkpoint(run / "last.pt")["step"] == 10
    assert [m["step"] for m in lines(run) if m["kind"] == "time_budget"] == [5, 10]
    assert "changed training options" not in caplog.text

    # without a budget (a bookkeeping option: no warning) it runs to n_iters, and the checkpoint says so
    with caplog.at_level(logging.WARNING, logger="scorekit.training"):
        last = train(tiny(), data(), config(n_iters=12), run, callback=clock.tick, progress=False)
    assert last.step == 12 and not last.time_budget_reached
    assert load_checkpoint(run / "last.pt")["stopped"] is None
    assert "changed training options" not in caplog.text


def test_a_budget_longer_than_the_run_changes_nothing(tmp_path, monkeypatch):
    clock = StepClock()
    monkeypatch.setattr(trainer_module, "_clock", clock)
    plain = tiny()
    budgeted = tiny()
    a = train(plain, data(), config(n_iters=8), tmp_path / "a", progress=False)
    b = train(budgeted, data(), config(n_iters=8, time_budget=1e6), tmp_path / "b", callback=clock.tick,
              progress=False)
    assert a.step == b.step == 8 and not b.time_budget_reached
    for key, value in plain.state_dict().items():
        assert torch.equal(value, budgeted.state_dict()[key]), key


class SlowNetwork(nn.Module):
    """A linear score whose forward sleeps, so that steps take a known minimum of wall-clock time."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.seconds = seconds

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        time.sleep(self.seconds)
        return self.linear(x)


def test_a_real_clock_stops_a_slow_run_early(tmp_path):
    model = scorekit.compose(network=SlowNetwork(0.02))
    result = train(model, data(), config(n_iters=100_000, checkpoint_every=100_000, time_budget=0.3),
                   tmp_path / "r", progress=False)
    assert 1 <= result.step < 100 and result.time_budget_reached
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == result.step


WORKER = """
import os, sys
import torch
import scorekit
from scorekit.training import TrainConfig, train
from scorekit.training import trainer

torch.set_num_threads(1)
rank = int(os.environ["RANK"])
steps = [0]
# rank 0's clock passes the 35 s budget at step 4; rank 1's never moves: rank 0 decides for both
trainer._clock = lambda: steps[0] * 10.0 if rank == 0 else 0.0
data = torch.randn(256, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
cfg = TrainConfig(n_iters=50, batch_size=32, checkpoint_every=50, log_every=2, sample_every=0, eval_every=0,
                  time_budget=35.0, device="cpu")
result = train(scorekit.compose(network_options={"hidden": 16}), data, cfg, os.path.join(sys.argv[1], "run"),
               callback=lambda info: steps.__setitem__(0, info.step), progress=False)
torch.save({"step": result.step, "reached": result.time_budget_reached}, os.path.join(sys.argv[1], f"rank{rank}.pt"))
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_under_torchrun_every_rank_stops_at_rank_0s_step(tmp_path):
    torchrun_script(WORKER, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks == [{"step": 4, "reached": True}, {"step": 4, "reached": True}]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 4


def test_the_progress_display_ends_where_the_budget_ends(tmp_path, monkeypatch, capsys):
    """With a budget the display's total is the step the budget will allow, not n_iters (a 30-minute run of
    n_iters 1,000,000 must not say 'eta 64 h')."""
    clock = StepClock()
    monkeypatch.setattr(trainer_module, "_clock", clock)
    from scorekit.samplers.monitor import progress_bar

    # a plain line at every update (the test's stderr is not a terminal)
    monkeypatch.setattr(trainer_module, "progress_bar", lambda *a, **k: progress_bar(*a, **{**k, "every": 0.0}))
    train(tiny(), data(), config(n_iters=1000, time_budget=95.0), tmp_path / "r", callback=clock.tick)
    shown = [line for line in capsys.readouterr().err.splitlines() if line.startswith("training: step")]
    # ten (fake) seconds a step and 95 s of budget: the run ends at step 10, and from the first log window on
    # (log_every 3) the display counts towards 10
    assert shown[-1].startswith("training: step 10/10 (100%)")
    assert any(line.startswith("training: step 4/10 ") for line in shown)
    assert not any("/1000" in line for line in shown[3:])
