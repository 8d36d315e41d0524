"""Checkpoint files: contents, atomic writes, and clear errors for damaged or foreign files."""

from __future__ import annotations

import attrs
import pytest
import torch

import scorekit
from scorekit.errors import CheckpointError
from scorekit.training import ModelConfig, RunConfig, TrainConfig, build_model, load_checkpoint, save_checkpoint, train

CFG = TrainConfig(n_iters=4, batch_size=16, checkpoint_every=2, sample_every=0, eval_every=0, log_every=2, ema_decay=0.9)


def data() -> torch.Tensor:
    return torch.randn(48, 2, generator=torch.Generator().manual_seed(0))


def trained(tmp_path, cfg: TrainConfig = CFG):
    rc = RunConfig(name="toy", model=ModelConfig(network_options={"hidden": 8}), train=cfg)
    model = build_model(rc)
    train(model, data(), cfg, tmp_path / "run", run_config=rc, progress=False)
    return model, rc, tmp_path / "run" / "last.pt"


def test_checkpoint_holds_everything_needed_to_resume(tmp_path):
    model, rc, path = trained(tmp_path)
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == "scorekit-checkpoint" and ckpt["step"] == 4
    assert ckpt["config"] == rc.to_dict() and ckpt["train_config"] == attrs.asdict(CFG)
    assert ckpt["names"] == {"network": "mlp", "estimator": "dsm", "sampler": "annealed_langevin"}
    assert ckpt["model"].keys() == model.state_dict().keys()
    assert ckpt["optimizer"]["state"] and ckpt["ema"]["decay"] == 0.9
    assert {"torch", "cuda", "numpy", "python", "train", "data"} <= ckpt["rng"].keys()
    assert {"epoch", "position", "epoch_generator_state"} <= ckpt["rng"]["data"].keys()


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, rc, path = trained(tmp_path)
    good = path.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    full = r"no space left on the device of .*run while writing last\.pt \(.* free\); the previous last\.pt is intact"
    with pytest.raises(CheckpointError, match=full):
        save_checkpoint(path, model=model, step=99)
    with pytest.raises(CheckpointError, match=full):  # the trainer's own checkpoint at step 6
        train(model, data(), attrs.evolve(CFG, n_iters=6), tmp_path / "run", run_config=attrs.evolve(rc, train=attrs.evolve(CFG, n_iters=6)), progress=False)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert load_checkpoint(path)["step"] == 4
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_leftover_temporary_file_is_ignored_and_removed(tmp_path):
    _, rc, path = trained(tmp_path)
    junk = path.parent / ".last.pt.abc123.tmp"
    junk.write_bytes(b"garbage from a killed run")
    cfg = attrs.evolve(CFG, n_iters=6)
    train(build_model(rc), data(), cfg, path.parent, run_config=attrs.evolve(rc, train=cfg), progress=False)
    assert not junk.exists() and load_checkpoint(path)["step"] == 6


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_is_a_clear_error_and_is_left_alone(tmp_path, damage):
    cfg = attrs.evolve(CFG, keep_checkpoints=1)  # no older checkpoint to fall back to
    _, rc, path = trained(tmp_path, cfg)
    good = path.read_bytes()
    bad = {"truncate": good[: len(good) // 2], "garbage": b"\x00not a checkpoint" * 10, "empty": b""}[damage]
    path.write_bytes(bad)
    with pytest.raises(CheckpointError, match=r"last\.pt cannot be read: it is truncated or corrupt.*"
                                              r"no other checkpoint of this run exists.*new run"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"last\.pt cannot be read"):  # resuming does not overwrite it
        train(build_model(rc), data(), cfg, path.parent, run_config=rc, progress=False)
    assert path.read_bytes() == bad


def test_foreign_files_are_rejected(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a scorekit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": "scorekit-checkpoint", "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="upgrade scorekit"):
        load_checkpoint(tmp_path / "future.pt")
    torch.save({"format": "scorekit-checkpoint", "version": 1, "step": 3}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks the entries"):
        load_checkpoint(tmp_path / "partial.pt")
    torch.save(scorekit.ScorekitError("pickled object"), tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match="other than tensors"):
        load_checkpoint(tmp_path / "pickle.pt")


def test_a_checkpoint_without_a_run_config_cannot_rebuild_the_model(tmp_path):
    from scorekit.training import load_model_from_checkpoint

    model = scorekit.compose(network_options={"hidden": 8})
    train(model, data(), CFG, tmp_path / "run", progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["config"] is None
    with pytest.raises(CheckpointError, match="without a RunConfig"):
        load_model_from_checkpoint(tmp_path / "run" / "last.pt")


@pytest.mark.skipif(not hasattr(__import__("os"), "fchmod"), reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_files_get_the_mode_a_plain_open_would_give(tmp_path, umask):
    """A run directory is shared (a colleague, a web server): the temporary file's private 0600 must not stick."""
    import os

    from scorekit.files import atomic_write

    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "atomic.bin", lambda f: f.write(b"x"))
        with open(tmp_path / "plain.bin", "wb") as f:
            f.write(b"x")
    finally:
        os.umask(old)
    mode = (tmp_path / "atomic.bin").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.bin").stat().st_mode & 0o777 == 0o666 & ~umask
