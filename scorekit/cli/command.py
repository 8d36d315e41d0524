"""The ``scorekit`` command: train, resume, sample, inpaint, evaluate, print a config, list plugins.

A run is ``--preset NAME`` plus an optional config file (TOML; YAML only through
``yaml.safe_load``) plus ``section.key=value`` overrides, and writes everything to its
own directory (``--out DIR``, default ``runs/<name>-<timestamp>/``).

Every error scorekit reports ends the command with exit status 2 and one line on stderr
(:func:`report_errors`, which the examples use too); a signal that stops training ends it
with ``128 + signal`` after saving the last completed step.

Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) ``train``, ``run`` and ``resume`` are rank-aware:
rank 0 picks the run directory and broadcasts it, only rank 0 writes files, prints, samples
and evaluates; the other ranks end after the last training step.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence

import torch
import torch.distributed as dist

import scorekit
from scorekit.cli import outputs
from scorekit.cli.config_files import resolve, to_toml
from scorekit.cli.heap import keep_freed_memory
from scorekit.errors import CheckpointError, DataError, OptionError, ScorekitError
from scorekit.files import atomic_write, write_json
from scorekit.options import option_defaults
from scorekit.plugins import get_host
from scorekit.training import build_model, distributed, new_run_dir, train
from scorekit.training.build import model_from_checkpoint
from scorekit.training.checkpoint import load_checkpoint, load_latest_checkpoint
from scorekit.training.monitor import configure_logging
from scorekit.training.run_config import SCHEDULE_KEYS, RunConfig
from scorekit.validators import MAX_SEED


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(low: int, high: int | None, allowed: str) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]`` (no upper bound with ``high=None``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value

    return parse


#: ``-n``: an integer >= 1; ``--seed``: an integer every generator takes
_count = _integer(1, None, "an integer >= 1")
_seed = _integer(0, MAX_SEED, "an integer in [0, 2**63 - 1]")


def _out_dir(text: str) -> str:
    """``--out``: a new directory, or an existing one to resume; never an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; --out names a run directory (a new one, or one to resume)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is inside {parent}, which is a file, not a directory")
    return text


def _run_dir(text: str) -> Path:
    """``RUN_DIR`` of sample / inpaint / evaluate: an existing directory."""
    path = Path(text)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}; pass a run directory written by scorekit train")
    return path


def _samples_file(text: str) -> Path:
    """``sample --out``: a ``.pt`` file in an existing folder (the grid goes beside it as ``.png``)."""
    path = Path(text)
    if path.suffix != ".pt":
        raise argparse.ArgumentTypeError(f"{text} must end in .pt (the samples tensor; the grid is written beside it "
                                         "as .png)")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; --out names the samples file")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: the folder {path.parent} does not exist")
    return path


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} {'is a directory' if path.is_dir() else 'does not exist'}; pass a "
                                         "samples file written by scorekit sample or train (N x C x H x W)")
    return path


#: ``evaluate --metrics`` names -> the names of :func:`scorekit.metrics.evaluate`
METRIC_NAMES = {"fid": "fid", "is": "isc", "kid": "kid"}


def _metric_list(text: str) -> tuple[str, ...]:
    """``--metrics fid,is,kid``: a non-empty comma-separated selection."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"must be a comma-separated selection of {', '.join(METRIC_NAMES)}, "
                                         f"got {text!r}")
    return tuple(dict.fromkeys(METRIC_NAMES[n] for n in names))


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="a registered preset (see `scorekit plugins`), e.g. ncsn-digits, or auto "
                                    "(derived from the images of --data)")
    p.add_argument("--config", metavar="FILE", help="a TOML config file applied on top of the preset")
    p.add_argument("--data", metavar="PATH", help="dataset root, or a folder of images with data.name=folder")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="overrides, e.g. train.n_iters=1000 (before or after the options)")


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    _add_config_arguments(p)
    p.add_argument("--out", metavar="DIR", type=_out_dir,
                   help="run directory (default: runs/<name>-<timestamp>/; an existing one resumes)")
    _add_weights_argument(p)


def _add_weights_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inception-weights", metavar="PATH",
                   help="the Inception-v3 weights file (or its folder) for FID/IS on datasets without an extractor "
                        "of their own (all but digits)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scorekit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"scorekit {scorekit.__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a composition; writes checkpoints, grids, metrics and samples")
    _add_run_arguments(p)
    p.add_argument("--no-samples", action="store_true", help="skip the final samples.pt / samples.png")
    p = sub.add_parser("run", help="train, sample, inpaint and evaluate in one go (what `make run` does)")
    _add_run_arguments(p)
    p = sub.add_parser("resume", help="continue a run from its own config.toml and newest checkpoint")
    p.add_argument("run_dir", type=_run_dir)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help=f"changes that keep the model and data: train.{{{','.join(SCHEDULE_KEYS)}}} and sample.*")
    p.add_argument("--no-samples", action="store_true", help="skip the final samples.pt / samples.png")
    _add_weights_argument(p)
    p = sub.add_parser("config", help="print the resolved configuration as TOML and exit (writes nothing)")
    _add_config_arguments(p)
    for name, text in (("sample", "draw samples from a run's last checkpoint into a new file"),
                       ("inpaint", "fill in the hidden right half of held-out images"),
                       ("evaluate", "compute metrics of a run's samples; writes metrics.json")):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_dir", type=_run_dir)
        if name != "evaluate":
            default = "the run's sample.n_samples" if name == "sample" else "16"
            p.add_argument("-n", type=_count, default=None, help=f"number of images, >= 1 (default: {default})")
            p.add_argument("--seed", type=_seed, default=0, help="seed of the draws, >= 0 (default: 0)")
        p.add_argument("--raw-weights", action="store_true", help="use the raw weights even when EMA weights exist")
        p.add_argument("--checkpoint", default="last", choices=["last", "best"],
                       help="last.pt, or best.pt (lowest FID at a checkpoint, with train.fid_samples)")
        if name == "sample":
            p.add_argument("--out", metavar="FILE", type=_samples_file,
                           help="the samples file, .pt (default: RUN_DIR/samples-seed<S>-n<N>.pt); the grid goes "
                                "beside it as .png")
            p.add_argument("--overwrite", action="store_true",
                           help="replace an existing --out file; without --out, replace the run's samples.pt")
        if name == "evaluate":
            p.add_argument("--samples", metavar="FILE", type=_existing_file,
                           help="the samples to score (default: RUN_DIR/samples.pt)")
            p.add_argument("--metrics", type=_metric_list, default=("fid", "isc", "kid"),
                           help="comma-separated selection of fid, is, kid (default: all three)")
            _add_weights_argument(p)
    sub.add_parser("plugins", help="list every component with its kind, owning plugin and options")
    parser.subcommands = sub.choices  # type: ignore[attr-defined]
    return parser


def _describe(component: Any) -> str:
    """The last column of ``scorekit plugins``: a preset's one-line description, else the options' defaults."""
    if component.kind == "preset":
        doc = (getattr(component.factory, "__doc__", None) or "").strip()
        return " ".join(doc.split("\n\n")[0].split()) or "(no description)"
    return ", ".join(f"{k}={v!r}" for k, v in option_defaults(component.factory).items() if k != "sigmas")


def cmd_plugins(args: argparse.Namespace) -> int:
    host = get_host()
    rows = [(c.kind, c.name, c.owner, _describe(c)) for c in host.components()]
    widths = [max(len(r[i]) for r in rows + [("kind", "name", "plugin", "")]) for i in range(3)]
    print(f"{'kind':<{widths[0]}}  {'name':<{widths[1]}}  {'plugin':<{widths[2]}}  options (defaults) or description")
    for kind, name, owner, opts in rows:
        print(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {owner:<{widths[2]}}  {opts}")
    for conflict in host.conflicts:
        print(f"CONFLICT  {conflict.describe()}")
    for failed in host.failed:
        print(f"FAILED  {failed.describe()}")
    return 0


def _train(args: argparse.Namespace, *, final_samples: bool) -> tuple[Path, RunConfig] | None:
    cfg = resolve(get_host(), args.preset, args.config, args.overrides, args.data)
    return _train_run(cfg, args.out, args.inception_weights, final_samples=final_samples)


def _train_run(cfg: RunConfig, out: str | None, weights: str | None, *,
               final_samples: bool) -> tuple[Path, RunConfig] | None:
    """Train ``cfg`` into ``out`` (a new ``runs/<name>-<timestamp>/`` when None), then draw the final samples.

    Returns the run directory and config on rank 0, None on the other ranks of a torchrun job."""
    host = get_host()
    # everything that can be wrong with the config or the data fails here, before a directory exists
    model, train_set, holdout, fid = _prepare(host, cfg, weights)
    env = distributed.detect()
    with _process_group(env, cfg.train.device):
        run_dir, created = _shared_run_dir(env, out, cfg.name)
        if env.is_main:
            print(f"run directory: {run_dir}\nmodel: {model}" + (
                f"\n{env.world_size} processes, {cfg.train.batch_size} examples per step in all" if env.active else ""))
        stepped = False

        def started(step: int, checkpoint: Path | None) -> None:
            # the run is known to start (its checkpoint, if any, accepted): only now does the directory describe it
            toml = to_toml(cfg.to_dict()).encode("utf-8")
            atomic_write(run_dir / "config.toml", lambda f: f.write(toml))
            write_json(run_dir / "config.json", cfg.to_dict())
            if checkpoint is not None:
                older = "" if checkpoint.name == "last.pt" else f" ({checkpoint.name})"
                print(f"resuming {run_dir} from step {step}{older}")

        def first_step(info: Any) -> None:
            nonlocal stepped
            stepped = True

        try:
            train(model, train_set, cfg.train, run_dir, run_config=cfg, holdout=holdout, on_start=started,
                  callback=first_step, **fid)
        except Exception:
            if created is not None and not stepped:  # a run that never took a step leaves nothing behind
                shutil.rmtree(created, ignore_errors=True)
            raise
    if not env.is_main:  # rank 0 alone samples and evaluates; the others are done
        return None
    if fid:
        from scorekit.cli.evaluate import plot_history

        plot_history(run_dir, "fid")
    if final_samples:
        _sample(run_dir, n=None, seed=cfg.sample.seed, raw=False, out=run_dir / "samples.pt", overwrite=True)
    return run_dir, cfg


@contextlib.contextmanager
def _process_group(env: distributed.DistEnv, device: str) -> Iterator[None]:
    """The process group of a torchrun job for the duration of a command (nothing for one process)."""
    created = distributed.setup(env, distributed.device_for(env, device))
    try:
        yield
    finally:
        distributed.teardown(created)


def _shared_run_dir(env: distributed.DistEnv, out: str | None, name: str) -> tuple[Path, Path | None]:
    """:func:`_make_run_dir` on rank 0, broadcast to the other ranks (which create nothing)."""
    if not env.active:
        return _make_run_dir(out, name)
    message: list[Any] = [None]
    created = None
    if env.is_main:
        try:
            run_dir, created = _make_run_dir(out, name)
            message = [str(run_dir)]
        except OSError as exc:
            message = [OSError(exc.errno, exc.strerror, exc.filename)]
    dist.broadcast_object_list(message, src=0)
    if isinstance(message[0], OSError):
        raise message[0]
    return Path(message[0]), created


def _prepare(host: Any, cfg: RunConfig, weights: str | None) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The model, the two splits and the FID hook of a run, every part of them checked: the datasets with
    their options, the first batch (readable, one shape, pixels in range), the composition, and one forward
    pass of (a copy of) the network on one example."""
    train_set = outputs.load_dataset(host, cfg.data, train=True)
    holdout = outputs.load_dataset(host, cfg.data, train=False)
    first = outputs.stack(train_set, limit=cfg.train.batch_size, what=f"dataset {cfg.data.name!r}")
    held = outputs.stack(holdout, limit=1, what=f"the held-out split of dataset {cfg.data.name!r}")
    if held.shape[1:] != first.shape[1:]:
        raise DataError(f"dataset {cfg.data.name!r}: held-out examples of shape {tuple(held.shape[1:])} differ from "
                        f"the training examples, {tuple(first.shape[1:])}")
    outputs.check_pixels(first, cfg.sample.clamp, f"dataset {cfg.data.name!r}")
    distributed.device_for(distributed.detect(), cfg.train.device)  # 'cuda' without CUDA fails now, not later
    model = build_model(cfg, host)
    with torch.random.fork_rng(devices=[]):  # a copy: the run's own model is sized by the trainer, from its seed
        copy.deepcopy(model).eval().materialize(first[:1])
    fid: dict[str, Any] = {}
    if cfg.train.fid_samples:
        from scorekit.cli.evaluate import checkpoint_fid, extractor_for

        hook = checkpoint_fid(cfg, outputs.stack(train_set), extractor=extractor_for(train_set), weights_path=weights)
        fid = {"on_checkpoint": hook, "best_metric": "fid"}
    n = len(train_set)
    if n < cfg.train.batch_size:
        raise DataError(f"dataset {cfg.data.name!r} has {n} training examples, fewer than "
                        f"train.batch_size={cfg.train.batch_size}; lower train.batch_size or use more data")
    return model, train_set, holdout, fid


def _make_run_dir(out: str | None, name: str) -> tuple[Path, Path | None]:
    """The run directory, and the topmost directory this call created (None when it existed: a resume)."""
    if out is None:
        run_dir = new_run_dir(name)
        return run_dir, run_dir
    run_dir = Path(out)
    created = None
    for candidate in [run_dir, *run_dir.parents]:
        if candidate.exists():
            break
        created = candidate
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, created


def _load(run_dir: Path, raw: bool, checkpoint: str = "last") -> tuple[Any, RunConfig, dict[str, Any]]:
    """The model of a run's ``last.pt`` (the newest readable checkpoint, with a warning when that is an older
    one) or ``best.pt``, its config and the checkpoint itself."""
    if checkpoint == "best":
        path = run_dir / "best.pt"
        if not path.is_file():
            raise CheckpointError(f"{run_dir} has no checkpoint best.pt; it is written only with train.fid_samples > 0 "
                                  "(use --checkpoint last)")
        ckpt = load_checkpoint(path)
    else:
        found = load_latest_checkpoint(run_dir)
        if found is None:
            raise CheckpointError(f"{run_dir} has no checkpoint last.pt; train first: "
                                  f"scorekit train --out {run_dir} ...")
        ckpt, path, skipped = found
        for bad, error in skipped:
            reason = getattr(error, "reason", None) or " ".join(str(error).split())[:200]
            print(f"warning: {bad} cannot be read ({reason}); using {path.name} (step {ckpt['step']}), the newest "
                  "readable checkpoint of this run", file=sys.stderr)
    model, cfg = model_from_checkpoint(ckpt, path, get_host(), ema=False if raw else None)
    return model, cfg, ckpt


def _like(host: Any, cfg: RunConfig, ckpt: dict[str, Any], model: Any) -> torch.Tensor:
    """One example-shaped tensor: from the checkpoint (no data needed), else the first held-out example."""
    shape = ckpt.get("example_shape")
    if shape is not None:
        param = next(model.parameters(), None)
        return torch.zeros(1, *shape, dtype=param.dtype if param is not None else torch.get_default_dtype())
    return outputs.stack(outputs.load_dataset(host, cfg.data, train=False), limit=1)


def _sample(run_dir: Path, n: int | None, seed: int, raw: bool, checkpoint: str = "last", *,
            out: Path | None = None, overwrite: bool = False) -> Path:
    """Samples of a run into ``out`` (default ``samples-seed<S>-n<N>.pt``; ``overwrite`` without ``out``:
    the run's ``samples.pt``), with the grid beside it as ``.png``."""
    import attrs

    model, cfg, ckpt = _load(run_dir, raw, checkpoint)
    count = cfg.sample.n_samples if n is None else n
    if out is None:
        out = run_dir / ("samples.pt" if overwrite else f"samples-seed{seed}-n{count}.pt")
    elif out.exists() and not overwrite:
        raise OptionError(f"{out} exists; pass --overwrite to replace it, or another --out FILE")
    sample_cfg = attrs.evolve(cfg.sample, seed=seed)
    samples = outputs.sample_images(model, _like(get_host(), cfg, ckpt, model), sample_cfg, n=count,
                                    mean=ckpt.get("data_mean"))
    outputs.save_samples(out, samples, cfg.sample.grid_size)
    print(f"wrote {samples.shape[0]} samples to {out} and {out.with_suffix('.png')}")
    return out


def _inpaint(run_dir: Path, n: int | None, seed: int, raw: bool, checkpoint: str = "last") -> Path:
    model, cfg, _ = _load(run_dir, raw, checkpoint)
    holdout = outputs.load_dataset(get_host(), cfg.data, train=False)
    available = len(holdout)
    if n is not None and n > available:
        raise DataError(f"-n {n} asks for more images than the {available} held-out images of dataset "
                        f"{cfg.data.name!r}; pass -n {available} or fewer")
    images = outputs.stack(holdout, limit=16 if n is None else n, what=f"the held-out split of {cfg.data.name!r}")
    mask, filled = outputs.inpaint_images(model, images, seed=seed)
    outputs.save_inpainting(run_dir, images, mask, filled)
    print(f"wrote {run_dir / 'inpaint.png'} (rows: original, right half hidden, inpainted)")
    return run_dir / "inpaint.png"


def _evaluate(run_dir: Path, raw: bool, checkpoint: str = "last", weights: str | None = None, *,
              samples: Path | None = None, metrics: tuple[str, ...] = ("fid", "isc", "kid")) -> dict:
    from scorekit.cli import evaluate as evaluation
    from scorekit.errors import TooFewSamplesError

    model, cfg, _ = _load(run_dir, raw, checkpoint)
    try:
        report = evaluation.evaluate_run(run_dir, model, cfg, get_host(), weights_path=weights,
                                         samples_path=samples, metrics=metrics)
    except TooFewSamplesError as exc:  # say it in the command's own terms
        message = str(exc).split(". Pass more images")[0].split("; pass more images")[0]
        raise TooFewSamplesError(f"{message}; draw more samples (scorekit sample {run_dir} -n 1000) or leave that "
                                 "metric out (e.g. --metrics is,kid)") from None
    print(evaluation.format_report(report))
    return report


def cmd_train(args: argparse.Namespace) -> int:
    _train(args, final_samples=not args.no_samples)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    done = _train(args, final_samples=True)
    if done is not None:  # rank 0
        _inpaint(done[0], None, 0, False)
        _evaluate(done[0], False, weights=args.inception_weights)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    config = run_dir / "config.toml"
    if not config.is_file():
        raise CheckpointError(f"{run_dir} has no config.toml; scorekit resume continues a run written by "
                              "scorekit train or run")
    for item in args.overrides:
        key = item.partition("=")[0].strip()
        section, _, leaf = key.partition(".")
        if not (section == "sample" and leaf) and not (section == "train" and leaf in SCHEDULE_KEYS):
            raise OptionError(f"{key} cannot change on resume (only what schedules the run may: "
                              f"{', '.join('train.' + k for k in SCHEDULE_KEYS)}, sample.*); for other changes start a "
                              f"new run: scorekit train --config {config} {item}")
    cfg = resolve(get_host(), None, config, args.overrides)
    if not any(run_dir.glob("*.pt")) and distributed.detect().is_main:
        print(f"{run_dir} has no checkpoint yet: training starts at step 0 with its config.toml")
    _train_run(cfg, str(run_dir), args.inception_weights, final_samples=not args.no_samples)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    cfg = resolve(get_host(), args.preset, args.config, args.overrides, args.data)
    sys.stdout.write(to_toml(cfg.to_dict()))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    _sample(args.run_dir, args.n, args.seed, args.raw_weights, args.checkpoint, out=args.out,
            overwrite=args.overwrite)
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    _inpaint(args.run_dir, args.n, args.seed, args.raw_weights, args.checkpoint)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _evaluate(args.run_dir, args.raw_weights, args.checkpoint, args.inception_weights, samples=args.samples,
              metrics=args.metrics)
    return 0


#: sub-command -> handler(args) -> exit status
COMMANDS = {"plugins": cmd_plugins, "train": cmd_train, "run": cmd_run, "resume": cmd_resume,
            "config": cmd_config, "sample": cmd_sample, "inpaint": cmd_inpaint, "evaluate": cmd_evaluate}


def main(argv: Sequence[str] | None = None) -> int:
    """The ``scorekit`` command; returns the exit status (0, 2 for an error, 128 + signal when stopped)."""
    parser = _parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # overrides written after an option (`--out DIR train.n_iters=5`) land here
            sub = parser.subcommands[args.command]  # type: ignore[attr-defined]
            if not hasattr(args, "overrides") or any(item.startswith("-") for item in extra):
                sub.error(f"unrecognized arguments: {' '.join(extra)}")
            args.overrides = [*args.overrides, *extra]
    except SystemExit as exc:  # argparse: --help, --version, or a usage error (already printed, one line)
        return exc.code if isinstance(exc.code, int) else 2
    configure_logging()  # scorekit's INFO lines (held-out loss, FID, time budget) on stderr, unless the app set up logging
    keep_freed_memory()  # large temporaries stay in the heap instead of page-faulting in each step
    # argv None: the process's own arguments, so the process ends when this returns
    return report_errors(f"scorekit {args.command}", lambda: COMMANDS[args.command](args), final=argv is None)


def report_errors(prog: str, action: Callable[[], int | None], *, final: bool = False) -> int:
    """Run ``action()`` and return its exit status, reporting what goes wrong the way the command does.

    An error scorekit reports (:class:`~scorekit.errors.ScorekitError`) or the operating
    system raises (a full disk, a missing or unwritable path) prints one line,
    ``<prog>: error: <message>``, on stderr and returns 2; Ctrl-C, SIGTERM or SIGHUP
    return ``128 + signal`` after one line saying what was saved. The examples end the
    same way: ``sys.exit(report_errors("examples/x.py", run, final=True))``. ``final``: the
    process ends right after, so once interrupted it ignores further signals (a second
    Ctrl-C would otherwise break the exit with a traceback).
    """
    try:
        status = action()
        return 0 if status is None else status
    except (ScorekitError, OSError) as exc:
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if final:
            _ignore_signals()
        signum = int(getattr(exc, "signum", signal.SIGINT))
        name = getattr(exc, "signal_name", "SIGINT")
        saved, checkpoint = getattr(exc, "saved_step", None), getattr(exc, "checkpoint", None)
        again = _resume_hint(prog, checkpoint)
        if checkpoint is not None:
            what = f"saved step {saved} to {checkpoint}; {again}"
        elif saved is not None:
            what = f"the checkpoint of step {saved} is kept; {again}"
        else:
            what = "stopped"
        print(f"{prog}: interrupted by {name}; {what}", file=sys.stderr)
        return 128 + signum


def _resume_hint(prog: str, checkpoint: object | None) -> str:
    """How to continue an interrupted run: ``scorekit resume RUN_DIR`` for a run the command wrote."""
    if checkpoint is not None and prog.startswith("scorekit") and (Path(str(checkpoint)).parent / "config.toml").is_file():
        return f"resume with: scorekit resume {Path(str(checkpoint)).parent}"
    return "run the same command to resume"


def _ignore_signals() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, signal.SIG_IGN)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, OSError) and not isinstance(exc, ScorekitError) and exc.filename is not None:
        text = f"{exc.strerror or type(exc).__name__}: {exc.filename}" + (
            f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return text or type(exc).__name__
