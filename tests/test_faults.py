"""Fault injection: a real ``scorekit train`` process killed at a random (seeded) step, then resumed, ends with the
weights, optimiser state, EMA and random states of an uninterrupted run, bit for bit; a damaged ``last.pt`` falls
back to the checkpoint before it. One CPU thread everywhere, as bit-identity on a CPU needs the same thread count.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import scorekit
from scorekit.cli import main
from scorekit.training import load_checkpoint

#: a tiny run of the defaults (the mlp on the digits): ~100 steps a second, a checkpoint every other step
N_ITERS = 100
RUN = ["model.network_options={hidden = 16}", "model.sigmas.n=3", "model.sampler_options.steps_per_level=1",
       f"train.n_iters={N_ITERS}", "train.batch_size=16", "train.checkpoint_every=2", "train.eval_every=0",
       "train.sample_every=0", "train.log_every=1", "train.ema_decay=0.9", "--no-samples"]

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SCOREKIT_DISABLE_PLUGIN_AUTOLOAD": "1",
            "SCOREKIT_MALLOC_TUNING": "0"}


def _default_signals() -> None:  # in the child: whatever the test runner ignores, the command must see
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)


def _start(out: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "scorekit.cli", "train", "--out", str(out), *RUN],
                                stdout=subprocess.DEVNULL, stderr=err, env=_env(), cwd=out.parent,
                                preexec_fn=_default_signals)


def _logged_step(out: Path) -> int:
    """The last step with a complete line in metrics.jsonl (-1 before the first)."""
    try:
        text = (out / "metrics.jsonl").read_text()
    except FileNotFoundError:
        return -1
    steps = []
    for line in text.splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except (json.JSONDecodeError, KeyError):
            pass
    return max(steps, default=-1)


def _wait_for_step(proc: subprocess.Popen, out: Path, step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while _logged_step(out) < step:
        assert proc.poll() is None, f"the run ended (status {proc.returncode}) before step {step}"
        assert time.monotonic() < deadline, f"no step {step} within {timeout} s"
        time.sleep(0.005)


def _resume(out: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "scorekit.cli", "train", "--out", str(out), *RUN],
                          capture_output=True, text=True, env=_env(), cwd=out.parent, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(rf"resuming {re.escape(str(out))} from step \d+", done.stdout), done.stdout[-500:]


def _metrics(out: Path) -> list[tuple[str, int, float]]:
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["step"], r.get("loss")) for r in lines]


def assert_same_run(a: Path, b: Path) -> None:
    """The final checkpoints hold the same weights, optimiser state, EMA and random states, bit for bit."""
    x, y = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert x["step"] == y["step"] == N_ITERS
    assert x["model"].keys() == y["model"].keys()
    for key in x["model"]:
        assert torch.equal(x["model"][key], y["model"][key]), key
    assert x["optimizer"]["param_groups"] == y["optimizer"]["param_groups"]
    for i, state in x["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, y["optimizer"]["state"][i][key]), (i, key)
    assert x["ema"]["num_updates"] == y["ema"]["num_updates"] == N_ITERS
    for key, value in x["ema"]["shadow"].items():
        assert torch.equal(value, y["ema"]["shadow"][key]), key
    for key in ("torch", "train"):
        assert torch.equal(x["rng"][key], y["rng"][key]), key
    assert x["rng"]["data"]["position"] == y["rng"]["data"]["position"]
    assert torch.equal(x["rng"]["data"]["epoch_generator_state"], y["rng"]["data"]["epoch_generator_state"])
    # the log holds every step once, with the same losses
    assert _metrics(a) == _metrics(b)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run (in this process: one thread, as the tests' conftest sets)."""
    out = tmp_path_factory.mktemp("faults") / "straight"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCOREKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
        scorekit.reset_host()
        assert torch.get_num_threads() == 1
        assert main(["train", "--out", str(out), *RUN]) == 0
    scorekit.reset_host()
    return out


def test_sigkill_at_a_random_step_loses_only_the_steps_since_the_checkpoint(straight, tmp_path):
    step = random.Random(9).randint(8, 60)
    out = tmp_path / "killed"
    proc = _start(out, tmp_path / "err.txt")
    try:
        _wait_for_step(proc, out, step)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        proc.kill()
    saved = load_checkpoint(out / "last.pt")["step"]
    assert saved >= step - 2, (step, saved)  # step `step` was done, so the checkpoint at or before it was written
    _resume(out)
    assert_same_run(straight, out)


def test_sigterm_saves_the_current_step_and_exits_143(straight, tmp_path):
    step = random.Random(143).randint(8, 60)
    out = tmp_path / "preempted"
    proc = _start(out, tmp_path / "err.txt")
    try:
        _wait_for_step(proc, out, step)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        assert time.monotonic() - sent < 10  # within seconds
    finally:
        proc.kill()
    err = (tmp_path / "err.txt").read_text()
    found = re.search(r"scorekit train: interrupted by SIGTERM; saved step (\d+) to (\S+)last\.pt", err)
    assert found, err[-1000:]
    assert "Traceback" not in err
    saved = int(found.group(1))
    assert saved >= step and load_checkpoint(out / "last.pt")["step"] == saved
    previous = saved - 1 if saved % 2 else saved - 2  # the checkpoint before (every other step)
    assert sorted(p.name for p in out.glob("*.pt")) == [f"ckpt_{previous}.pt", "last.pt"]  # keep_checkpoints=2
    _resume(out)
    assert_same_run(straight, out)


@pytest.mark.parametrize("first,second", [("SIGHUP", "SIGINT"), ("SIGINT", "SIGINT")])
def test_a_second_signal_does_not_interrupt_the_save(tmp_path, first, second):
    out = tmp_path / "run"
    proc = _start(out, tmp_path / "err.txt")
    try:
        _wait_for_step(proc, out, 8)
        proc.send_signal(getattr(signal, first))
        time.sleep(0.002)
        proc.send_signal(getattr(signal, second))
        assert proc.wait(timeout=60) == 128 + getattr(signal, first)
    finally:
        proc.kill()
    err = (tmp_path / "err.txt").read_text()
    found = re.search(rf"interrupted by {first}; saved step (\d+)", err)
    assert found and "Traceback" not in err, err[-1000:]
    assert load_checkpoint(out / "last.pt")["step"] == int(found.group(1))
    assert not list(out.glob(".*.tmp"))


def test_a_truncated_last_pt_falls_back_to_the_checkpoint_before(straight, tmp_path, capsys, caplog):
    out = tmp_path / "damaged"
    shutil.copytree(straight, out)
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    before = f"ckpt_{N_ITERS - 2}.pt"
    assert (out / before).is_file()
    # sampling uses the newest readable checkpoint, and says so
    assert main(["sample", str(out), "-n", "2"]) == 0
    err = capsys.readouterr().err
    assert re.search(rf"warning: .*last\.pt cannot be read \(truncated or corrupt.*\); using {before} "
                     rf"\(step {N_ITERS - 2}\)", err), err
    # the resume trains the last two steps again and ends where the uninterrupted run did
    with caplog.at_level(logging.WARNING, logger="scorekit.training"):
        assert main(["train", "--out", str(out), *RUN]) == 0
    assert any("last.pt cannot be read" in r.getMessage() and before in r.getMessage() for r in caplog.records)
    assert f"resuming {out} from step {N_ITERS - 2} ({before})" in capsys.readouterr().out
    assert (out / "samples-seed0-n2.pt").is_file()  # `sample` wrote its own file, never the training's samples.pt
    for path in out.glob("samples*"):
        path.unlink()
    assert_same_run(straight, out)


def test_with_every_checkpoint_damaged_the_error_names_only_files_that_exist(straight, tmp_path, capsys):
    out = tmp_path / "damaged"
    shutil.copytree(straight, out)
    for path in out.glob("*.pt"):
        path.write_bytes(b"")
    assert main(["train", "--out", str(out), *RUN]) == 2
    err = capsys.readouterr().err.strip()
    assert "last.pt cannot be read" in err and f"ckpt_{N_ITERS - 2}.pt cannot be read either" in err
    assert "best.pt" not in err  # never written by this run, so never suggested


# --- the mechanism, in this process ------------------------------------------------------------------


def test_a_signal_inside_a_held_block_waits_for_its_end_and_a_second_one_is_only_noted():
    from scorekit.errors import TrainingInterrupted
    from scorekit.training.trainer import _Signals

    signals = _Signals()
    done = []
    with pytest.raises(TrainingInterrupted) as caught:
        with signals.held():
            signals._handle(signal.SIGTERM, None)  # as the interpreter would call it
            signals._handle(signal.SIGINT, None)
            done.append("the update finished")
    assert done and caught.value.signum == signal.SIGTERM and caught.value.signal_name == "SIGTERM"
    signals._handle(signal.SIGHUP, None)  # after the first: noted, never raised (the save must not be cut)
    with signals.held():
        pass
    fresh = _Signals()
    with pytest.raises(TrainingInterrupted):  # outside a held block the first signal raises at once
        fresh._handle(signal.SIGHUP, None)


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="the test runner handles SIGINT itself")
def test_ctrl_c_twice_inside_a_step_saves_that_step(tmp_path):
    from scorekit.errors import TrainingInterrupted
    from scorekit.training import TrainConfig, train

    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(n_iters=20, batch_size=16, checkpoint_every=4, eval_every=0, sample_every=0)

    def at_step(info):
        if info.step == 6:  # the callback runs inside the held block of the update
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as caught:
        train(scorekit.compose(network_options={"hidden": 8}), data, cfg, tmp_path / "r", callback=at_step,
              progress=False)
    assert caught.value.saved_step == 6 and load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 6
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are restored
    assert sorted(p.name for p in (tmp_path / "r").glob("*.pt")) == ["ckpt_4.pt", "last.pt"]
