"""Hostile input: every bad input gets a clear error, nothing is silently wrong, a failed start leaves nothing.

The table of docs/bad-inputs.md is run row by row (so the page and the code cannot disagree); the cases that
need more than one call (a rejected resume, a full disk, a run whose data has gone) have tests of their own.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch

import scorekit
from scorekit.cli import main
from scorekit.errors import CheckpointError, CompositionError
from scorekit.training import TrainConfig, load_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "bad-inputs.md"

pytestmark = pytest.mark.usefixtures("with_entry_points")

#: the TINY placeholder of the page
TINY = ["model.network_options={hidden = 16}", "model.sigmas.n=3", "model.sampler_options.steps_per_level=1",
        "train.n_iters=4", "train.batch_size=16", "train.checkpoint_every=2", "train.eval_every=0",
        "train.sample_every=0", "sample.n_samples=8"]
PLACEHOLDERS = ("RUN", "NEW", "EMPTY", "FILE", "IMAGES", "MIXED", "JSONLIST", "BADSAMPLES", "BROKEN")


def table_rows() -> list[tuple[str, str, str]]:
    """``(kind, input, regex)`` of every row of the page's first table."""
    rows = []
    for line in PAGE.read_text(encoding="utf-8").split("## Faults")[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`") and cells[2].startswith("`"):
            rows.append((cells[0], cells[1][1:-1], cells[2][1:-1]))
    return rows


ROWS = table_rows()


def test_the_table_covers_every_kind_of_input():
    kinds = {kind for kind, _, _ in ROWS}
    assert {"command argument", "config value", "data", "resume", "example", "Python API"} <= kinds
    assert len(ROWS) >= 60


def _images(folder: Path, sizes: list[int]) -> Path:
    from PIL import Image

    folder.mkdir()
    for i, size in enumerate(sizes):
        Image.new("L", (size, size), color=(60 * i) % 256).save(folder / f"{chr(ord('a') + i)}.png")
    return folder


def _train_tiny(out: Path, *extra: str) -> int:
    return main(["train", "--out", str(out), *TINY, "--no-samples", *extra])


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The page's placeholders as paths; RUN is trained once for the module."""
    root = tmp_path_factory.mktemp("hostile")
    files = {"RUN": root / "run", "EMPTY": root / "empty", "FILE": root / "file.txt",
             "IMAGES": _images(root / "images", [8, 8, 8, 8]), "MIXED": _images(root / "mixed", [8, 16, 8])}
    files["EMPTY"].mkdir()
    files["FILE"].write_text("not a directory\n")
    files["JSONLIST"] = root / "list.json"
    files["JSONLIST"].write_text("[1, 2]\n")
    with pytest.MonkeyPatch.context() as mp:  # the built-ins suffice for RUN (digits + mlp)
        mp.setenv("SCOREKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
        scorekit.reset_host()
        assert _train_tiny(files["RUN"]) == 0
    scorekit.reset_host()
    files["BADSAMPLES"] = shutil.copytree(files["RUN"], root / "badsamples")
    (files["BADSAMPLES"] / "samples.pt").write_bytes(b"garbage")
    files["BROKEN"] = shutil.copytree(files["RUN"], root / "broken")
    for path in files["BROKEN"].glob("*.pt"):
        path.write_bytes(path.read_bytes()[:100])
    return files


def _substitute(token: str, places: dict[str, Path], new: Path) -> str:
    paths = {**{k: str(v) for k, v in places.items()}, "NEW": str(new)}
    return re.sub(r"\b(" + "|".join(PLACEHOLDERS) + r")\b", lambda m: paths[m.group(1)], token)


def _regex(pattern: str, places: dict[str, Path], new: Path) -> str:
    """The row's regex with placeholders standing for their (escaped) paths' last part."""
    names = {**{k: re.escape(v.name) for k, v in places.items()}, "NEW": re.escape(new.name)}
    return re.sub(r"\b(" + "|".join(PLACEHOLDERS) + r")\b", lambda m: names[m.group(1)], pattern)


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


@pytest.mark.parametrize("kind,given,pattern", ROWS, ids=[f"{i}-{r[1][:60]}" for i, r in enumerate(ROWS)])
def test_each_bad_input_gets_its_message(kind, given, pattern, places, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    new = tmp_path / "new-run"
    regex = _regex(pattern, places, new)
    if given.startswith("scorekit "):
        argv = []
        for token in shlex.split(given)[1:]:
            argv += TINY if token == "TINY" else [_substitute(token, places, new)]
        before = _snapshot(places["RUN"])
        status = main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert status == 2, f"{given}: exit status {status}, stderr {err!r}"
        assert "Traceback" not in err
        assert len(lines) == 1, f"{given}: expected one line on stderr, got {lines}"
        assert re.search(regex, lines[0]), f"{given}: {lines[0]!r} does not match {regex!r}"
        assert lines[0].startswith(f"scorekit {argv[0]}: error: ")
        assert not new.exists(), f"{given} left {new} behind"
        assert _snapshot(places["RUN"]) == before, f"{given} changed the files of RUN"
        assert not Path("runs").exists()
    elif given.startswith("python "):
        argv = [_substitute(token, places, new) for token in shlex.split(given)[1:]]
        done = subprocess.run([sys.executable, str(ROOT / argv[0]), *argv[1:]], capture_output=True, text=True,
                              check=False, timeout=120, cwd=tmp_path)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
        assert re.search(regex, lines[0]), f"{lines[0]!r} does not match {regex!r}"
    else:
        model = scorekit.compose(network_options={"dim": 2, "hidden": 8})
        namespace = {"torch": torch, "numpy": numpy, "scorekit": scorekit, "model": model}
        with pytest.raises(scorekit.ScorekitError) as caught:
            eval(given, namespace)  # the page's inputs are the test
        assert re.search(regex, str(caught.value)), f"{given}: {caught.value} does not match {regex!r}"


# --- silent wrong results ----------------------------------------------------------------------------


def test_a_rejected_resume_leaves_the_run_directory_as_it_was(places, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(places["RUN"], run)
    before = _snapshot(run)
    assert _train_tiny(run, "model.network_options={hidden = 8}") == 2  # another width
    assert _train_tiny(run, "model.network=energy_mlp") == 2  # another network
    assert _snapshot(run) == before  # config.toml and config.json still describe the model last.pt holds
    capsys.readouterr()
    assert _train_tiny(run, "train.n_iters=6") == 0  # an accepted resume rewrites them, and says so
    assert "resuming" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["train"]["n_iters"] == 6


def test_a_resume_says_where_it_starts(places, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(places["RUN"], run)
    assert _train_tiny(run, "train.n_iters=6") == 0
    assert f"resuming {run} from step 4" in capsys.readouterr().out


def test_a_fresh_run_starts_a_fresh_metrics_log(tmp_path):
    """A run killed before its first checkpoint left lines; the rerun (no checkpoint: a fresh run) drops them."""
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(n_iters=4, batch_size=16, checkpoint_every=4, log_every=1, eval_every=0, sample_every=0)
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 9.0}\n{"kind": "train", "step": 2, "lo')
    train(scorekit.compose(network_options={"hidden": 8}), data, cfg, run, progress=False)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in lines] == [("train", s) for s in (1, 2, 3, 4)]
    assert lines[0]["loss"] != 9.0


def test_loading_other_noise_levels_is_an_error_for_every_table_of_them():
    """The model's sigmas buffer and a network's own copy (scorekit-ncsn's networks keep one)."""
    small = {"ngf": 4, "channels": 1, "image_size": 8}
    a = scorekit.compose(network="cond_resnet", network_options=small, sigmas=[1.0, 0.5, 0.1])
    b = scorekit.compose(network="cond_resnet", network_options=small, sigmas=[2.0, 0.5, 0.1])
    state = b.state_dict()
    with pytest.raises(CompositionError, match=r"noise levels 'sigmas' \(3 levels \[2, 0\.5, 0\.1\]\) differ"):
        a.load_state_dict(state)
    del state["sigmas"]  # the network's own table is checked too
    with pytest.raises(CompositionError, match=r"'network\.sigmas'"):
        a.load_state_dict(state, strict=False)
    before = a.sigmas.clone()
    a.load_state_dict({k: v for k, v in state.items() if not k.endswith("sigmas")}, strict=False)
    assert torch.equal(a.sigmas, before)  # without the keys the model keeps its own levels
    same = scorekit.compose(network="cond_resnet", network_options=small, sigmas=[1.0, 0.5, 0.1])
    same.load_state_dict(a.state_dict())  # equal levels load as before


def test_resuming_weights_of_other_noise_levels_is_a_checkpoint_error(tmp_path):
    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(n_iters=2, batch_size=16, checkpoint_every=2, eval_every=0, sample_every=0)
    train(scorekit.compose(network_options={"hidden": 8}), data, cfg, tmp_path / "r", progress=False)
    other = scorekit.compose(network_options={"hidden": 8}, sigmas=[1.0, 0.1])
    with pytest.raises(CheckpointError, match=r"do not fit this model: .*noise levels 'sigmas'"):
        train(other, data, TrainConfig(n_iters=4, batch_size=16, checkpoint_every=2, eval_every=0, sample_every=0),
              tmp_path / "r", progress=False)


def test_integer_sigmas_are_converted_and_complex_ones_refused():
    assert scorekit.compose(sigmas=torch.tensor([3, 1])).sigmas.dtype == torch.get_default_dtype()
    with pytest.raises(CompositionError, match="complex"):
        scorekit.compose(sigmas=torch.tensor([2.0, 1.0], dtype=torch.complex128))


# --- faults around the run directory -----------------------------------------------------------------


def test_a_full_disk_names_the_directory_and_its_free_space(places, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(places["RUN"], run)
    good = (run / "last.pt").read_bytes()
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("format") == "scorekit-checkpoint":
            f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    assert _train_tiny(run, "train.n_iters=6") == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("scorekit train:")]  # after the progress bar
    assert len(lines) == 1 and "Traceback" not in err
    assert re.search(r"no space left on the device of .*run while writing last\.pt \(\d+(\.\d)? [KMG]i?B free\); "
                     r"the previous last\.pt is intact", lines[0]), lines[0]
    assert (run / "last.pt").read_bytes() == good
    assert load_checkpoint(run / "last.pt")["step"] == 4
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_sample_needs_only_the_run_directory(tmp_path, capsys):
    """The data's shape is in the checkpoint: a run whose image folder has gone still samples."""
    images = _images(tmp_path / "images", [8] * 20)
    run = tmp_path / "run"
    assert _train_tiny(run, "data.name=folder", "--data", str(images), "data.options={channels = 1}") == 0
    shutil.rmtree(images)
    assert main(["sample", str(run), "-n", "3"]) == 0
    assert torch.load(run / "samples-seed0-n3.pt").shape == (3, 1, 8, 8)
    assert main(["inpaint", str(run)]) == 2  # inpainting needs real images: a clear error
    assert "image folder" in capsys.readouterr().err


def test_a_resume_on_another_thread_count_warns(places, tmp_path, monkeypatch, caplog):
    run = tmp_path / "run"
    shutil.copytree(places["RUN"], run)
    assert load_checkpoint(run / "last.pt")["num_threads"] == torch.get_num_threads()
    threads = torch.get_num_threads() + 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    with caplog.at_level(logging.WARNING, logger="scorekit.training"):
        assert _train_tiny(run, "train.n_iters=6") == 0
    assert any(f"resumed on {threads}" in r.getMessage() and "bit-identical" in r.getMessage() for r in caplog.records)


def test_overrides_may_follow_the_options(tmp_path):
    out = tmp_path / "r"
    assert main(["train", *TINY[:3], "--out", str(out), "--no-samples", *TINY[3:], "train.n_iters=2"]) == 0
    assert load_checkpoint(out / "last.pt")["step"] == 2
