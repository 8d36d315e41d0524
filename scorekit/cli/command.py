"""The ``scorekit`` command: train, sample, inpaint, evaluate, list plugins.

A run is ``--preset NAME`` plus an optional config file (TOML; YAML only through
``yaml.safe_load``) plus ``section.key=value`` overrides, and writes everything to its
own directory (``--out DIR``, default ``runs/<name>-<timestamp>/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

import scorekit
from scorekit.cli import outputs
from scorekit.cli.config_files import resolve, to_toml
from scorekit.cli.heap import keep_freed_memory
from scorekit.errors import ScorekitError
from scorekit.files import write_json
from scorekit.options import option_defaults
from scorekit.plugins import get_host
from scorekit.training import build_model, load_model_from_checkpoint, new_run_dir, train
from scorekit.training.run_config import RunConfig


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="a registered preset (see `scorekit plugins`), e.g. ncsn-digits")
    p.add_argument("--config", metavar="FILE", help="a TOML config file applied on top of the preset")
    p.add_argument("--data", metavar="PATH", help="dataset root, or a folder of images with data.name=folder")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<name>-<timestamp>/; an existing one resumes)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. train.n_iters=1000")
    _add_weights_argument(p)


def _add_weights_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inception-weights", metavar="PATH",
                   help="the Inception-v3 weights file (or its folder) for FID/IS on images other than 8x8 digits")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scorekit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"scorekit {scorekit.__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a composition; writes checkpoints, grids, metrics and samples")
    _add_run_arguments(p)
    p.add_argument("--no-samples", action="store_true", help="skip the final samples.pt / samples.png")
    p = sub.add_parser("run", help="train, sample, inpaint and evaluate in one go (what `make run` does)")
    _add_run_arguments(p)
    for name, text in (("sample", "draw samples from a run's last checkpoint"),
                       ("inpaint", "fill in the hidden right half of held-out images"),
                       ("evaluate", "compute metrics of a run's samples; writes metrics.json")):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_dir", type=Path)
        if name != "evaluate":
            default = "the run's sample.n_samples" if name == "sample" else "16"
            p.add_argument("-n", type=int, default=None, help=f"number of images (default: {default})")
            p.add_argument("--seed", type=int, default=0)
        p.add_argument("--raw-weights", action="store_true", help="use the raw weights even when EMA weights exist")
        p.add_argument("--checkpoint", default="last", choices=["last", "best"],
                       help="last.pt, or best.pt (lowest FID at a checkpoint, with train.fid_samples)")
        if name == "evaluate":
            _add_weights_argument(p)
    sub.add_parser("plugins", help="list every component with its kind, owning plugin and options")
    return parser


def cmd_plugins(args: argparse.Namespace) -> int:
    host = get_host()
    rows = [(c.kind, c.name, c.owner, ", ".join(f"{k}={v!r}" for k, v in option_defaults(c.factory).items()
                                                 if k != "sigmas")) for c in host.components()]
    widths = [max(len(r[i]) for r in rows + [("kind", "name", "plugin", "")]) for i in range(3)]
    print(f"{'kind':<{widths[0]}}  {'name':<{widths[1]}}  {'plugin':<{widths[2]}}  options (defaults)")
    for kind, name, owner, opts in rows:
        print(f"{kind:<{widths[0]}}  {name:<{widths[1]}}  {owner:<{widths[2]}}  {opts}")
    for conflict in host.conflicts:
        print(f"CONFLICT  {conflict.describe()}")
    for failed in host.failed:
        print(f"FAILED  {failed.describe()}")
    return 0


def _train(args: argparse.Namespace, *, final_samples: bool) -> tuple[Path, RunConfig]:
    host = get_host()
    cfg = resolve(host, args.preset, args.config, args.overrides, args.data)
    run_dir = Path(args.out) if args.out else new_run_dir(cfg.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(to_toml(cfg.to_dict()))
    write_json(run_dir / "config.json", cfg.to_dict())
    train_set = outputs.load_dataset(host, cfg.data, train=True)
    holdout = outputs.load_dataset(host, cfg.data, train=False)
    first = outputs.stack(train_set, limit=cfg.train.batch_size)
    outputs.check_pixels(first, cfg.sample.clamp, f"dataset {cfg.data.name!r}")
    model = build_model(cfg, host)
    print(f"run directory: {run_dir}\nmodel: {model}")
    fid = {}
    if cfg.train.fid_samples:
        from scorekit.cli.evaluate import checkpoint_fid, extractor_for

        hook = checkpoint_fid(cfg, outputs.stack(train_set), extractor=extractor_for(train_set),
                              weights_path=args.inception_weights)
        fid = {"on_checkpoint": hook, "best_metric": "fid"}
    train(model, train_set, cfg.train, run_dir, run_config=cfg, holdout=holdout, **fid)
    if fid:
        from scorekit.cli.evaluate import plot_history

        plot_history(run_dir, "fid")
    if final_samples:
        _sample(run_dir, n=None, seed=cfg.sample.seed, raw=False)
    return run_dir, cfg


def _load(run_dir: Path, raw: bool, checkpoint: str = "last"):
    path = run_dir / f"{checkpoint}.pt"
    if not path.is_file():
        hint = ("best.pt is written only with train.fid_samples > 0" if checkpoint == "best"
                else f"train first: scorekit train --out {run_dir} ...")
        raise ScorekitError(f"{run_dir} has no checkpoint {path.name}; {hint}")
    return load_model_from_checkpoint(path, get_host(), ema=False if raw else None)


def _like(host, cfg: RunConfig) -> torch.Tensor:
    return outputs.stack(outputs.load_dataset(host, cfg.data, train=False), limit=1)


def _sample(run_dir: Path, n: int | None, seed: int, raw: bool, checkpoint: str = "last") -> Path:
    import attrs

    model, cfg = _load(run_dir, raw, checkpoint)
    sample_cfg = attrs.evolve(cfg.sample, seed=seed)
    samples = outputs.sample_images(model, _like(get_host(), cfg), sample_cfg, n=n)
    outputs.save_samples(run_dir, samples, cfg.sample.grid_size)
    print(f"wrote {samples.shape[0]} samples to {run_dir / 'samples.pt'} and {run_dir / 'samples.png'}")
    return run_dir / "samples.pt"


def _inpaint(run_dir: Path, n: int | None, seed: int, raw: bool, checkpoint: str = "last") -> Path:
    model, cfg = _load(run_dir, raw, checkpoint)
    images = outputs.stack(outputs.load_dataset(get_host(), cfg.data, train=False), limit=n or 16)
    mask, filled = outputs.inpaint_images(model, images, seed=seed)
    torch.save({"images": images, "mask": mask, "inpainted": filled}, run_dir / "inpaint.pt")
    outputs.save_grid(torch.cat([images, images * mask, filled]), run_dir / "inpaint.png", nrow=len(images))
    print(f"wrote {run_dir / 'inpaint.png'} (rows: original, right half hidden, inpainted)")
    return run_dir / "inpaint.png"


def _evaluate(run_dir: Path, raw: bool, checkpoint: str = "last", weights: str | None = None) -> dict:
    from scorekit.cli import evaluate as evaluation

    model, cfg = _load(run_dir, raw, checkpoint)
    report = evaluation.evaluate_run(run_dir, model, cfg, get_host(), weights_path=weights)
    print(evaluation.format_report(report))
    return report


def cmd_train(args: argparse.Namespace) -> int:
    _train(args, final_samples=not args.no_samples)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    run_dir, _ = _train(args, final_samples=True)
    _inpaint(run_dir, None, 0, False)
    _evaluate(run_dir, False, weights=args.inception_weights)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    _sample(args.run_dir, args.n, args.seed, args.raw_weights, args.checkpoint)
    return 0


def cmd_inpaint(args: argparse.Namespace) -> int:
    _inpaint(args.run_dir, args.n, args.seed, args.raw_weights, args.checkpoint)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _evaluate(args.run_dir, args.raw_weights, args.checkpoint, args.inception_weights)
    return 0


#: sub-command -> handler(args) -> exit status
COMMANDS = {"plugins": cmd_plugins, "train": cmd_train, "run": cmd_run, "sample": cmd_sample,
            "inpaint": cmd_inpaint, "evaluate": cmd_evaluate}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    keep_freed_memory()  # large temporaries stay in the heap instead of page-faulting in each step
    try:
        return COMMANDS[args.command](args)
    except ScorekitError as exc:
        print(f"scorekit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"scorekit {args.command}: interrupted; the last checkpoint is kept, run the same command to resume",
              file=sys.stderr)
        return 130

