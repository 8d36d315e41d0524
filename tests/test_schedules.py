"""Learning-rate schedules: their values, their validation and the trainer applying them per step."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scorekit.training import TrainConfig, train
from scorekit.training.schedules import LR_SCHEDULES, lr_at

from .test_training import config, gaussian, tiny


def test_constant_is_the_papers_rate_at_every_step():
    assert {lr_at(k, lr=1e-3, schedule="constant", warmup=0, n_iters=10) for k in range(10)} == {1e-3}


def test_warmup_ramps_linearly_then_the_decay_starts_at_the_full_rate():
    rates = [lr_at(k, lr=1.0, schedule="cosine", warmup=4, n_iters=14) for k in range(14)]
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == 1.0  # first decayed update: progress 0
    assert rates[9] == pytest.approx(0.5)  # halfway through the 10 decayed updates: cos(pi / 2) = 0
    assert rates[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9)))  # the last update still learns


def test_linear_decay_reaches_zero_after_the_last_update():
    rates = [lr_at(k, lr=2.0, schedule="linear", warmup=0, n_iters=4) for k in range(5)]
    assert rates == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])


@given(
    schedule=st.sampled_from(sorted(LR_SCHEDULES)),
    n_iters=st.integers(2, 10_000),
    warmup_fraction=st.floats(0.0, 0.99),
    lr=st.floats(1e-6, 1.0),
)
def test_every_update_gets_a_positive_rate_no_larger_than_lr(schedule, n_iters, warmup_fraction, lr):
    warmup = int(warmup_fraction * n_iters)
    rates = [lr_at(k, lr=lr, schedule=schedule, warmup=warmup, n_iters=n_iters) for k in range(n_iters)]
    assert all(0.0 < r <= lr for r in rates)
    decayed = rates[warmup:]
    assert all(b <= a for a, b in zip(decayed, decayed[1:]))  # never rises after the warm-up


def test_bad_schedule_options_are_named():
    with pytest.raises(ValueError, match=r"lr_schedule.*\['constant', 'cosine', 'linear'\].*'step'"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match=r"lr_warmup' \(10\) must be smaller than n_iters \(10\)"):
        TrainConfig(n_iters=10, lr_warmup=10)
    with pytest.raises(ValueError, match="unknown lr schedule 'step'.*cosine"):
        lr_at(0, lr=1.0, schedule="step", warmup=0, n_iters=10)


def test_the_trainer_uses_the_scheduled_rate_and_resumes_on_it(tmp_path):
    cfg = config(n_iters=12, checkpoint_every=5, lr_schedule="cosine", lr_warmup=3)
    expected = [lr_at(k, lr=cfg.lr, schedule="cosine", warmup=3, n_iters=12) for k in range(12)]

    seen: list[float] = []
    train(tiny(), gaussian(), cfg, tmp_path / "straight", progress=False, callback=lambda info: seen.append(info.lr))
    assert seen == pytest.approx(expected, rel=1e-12)

    def stop_at_7(info):
        seen_split.append(info.lr)
        if info.step == 7:
            raise KeyboardInterrupt

    seen_split: list[float] = []
    with pytest.raises(KeyboardInterrupt):
        train(tiny(), gaussian(), cfg, tmp_path / "split", progress=False, callback=stop_at_7)
    train(tiny(), gaussian(), cfg, tmp_path / "split", progress=False, callback=lambda info: seen_split.append(info.lr))
    assert seen_split == pytest.approx(expected, rel=1e-12)  # the resumed run continues on the same curve
