"""The training loop: any composition, any dataset.

:func:`train` runs Adam on ``model.loss`` over shuffled batches, with optional EMA and
gradient clipping, and writes into its run directory:

- ``last.pt`` every ``checkpoint_every`` steps and at the end; the checkpoint it replaces
  becomes ``ckpt_<step>.pt`` (a hard link, no copy), of which the ``keep_checkpoints - 1``
  newest are kept (every checkpoint, as ``ckpt_<step>.pt``, with ``keep_all=True``);
  ``best.pt`` with ``best_metric``;
- ``metrics.jsonl``: training loss, learning rate and iterations per second every
  ``log_every`` steps, the held-out loss every ``eval_every`` steps, and what
  ``on_checkpoint`` returns;
- ``grid_<step>.png`` every ``sample_every`` steps for image data;
- ``loss.png`` at the end (training and held-out loss against the step, with matplotlib);
- ``tensorboard/`` with ``logger="tensorboard"``: the scalars of ``metrics.jsonl``.

Progress is a bar on a terminal and a plain line every 10 s elsewhere
(:func:`~scorekit.samplers.monitor.progress_bar`); the held-out loss, the checkpoint hook's
metrics and the end of the time budget are logged (logger ``scorekit.training``, shown on
the console by :func:`~scorekit.training.monitor.configure_logging`). ``time_budget`` stops the
run after that many seconds of this process, as if ``n_iters`` had been reached.

On CPU, the same seed, config and thread count train to bit-identical weights, and a
run resumed from a checkpoint continues bit-identically (``num_workers=0``): the
checkpoint holds the optimiser, the EMA and every random state, and evaluation, grids
and hooks run in a forked RNG so that they never change what training draws.

Faults: SIGINT, SIGTERM and SIGHUP (where their handler is Python's default) save the last
completed step and raise :class:`~scorekit.errors.TrainingInterrupted`; a signal that lands
inside an update or a checkpoint write waits until it is done, and a second signal never
interrupts the save. A damaged ``last.pt`` makes a resume fall back to the newest readable
``ckpt_<step>.pt`` with a warning.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import threading
import time
import zlib
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import attrs
import numpy as np
import torch
import torch.distributed as dist

from scorekit.batch_checks import check_batch, check_same_device_dtype
from scorekit.errors import CheckpointError, CompositionError, DivergenceError, OptionError, TrainingInterrupted
from scorekit.files import atomic_copy, link_or_copy, remove_stale_temporaries
from scorekit.model import ScoreModel
from scorekit.samplers.monitor import progress_bar
from scorekit.training import distributed
from scorekit.training.checkpoint import (
    CKPT_NAME,
    capture_rng,
    checkpoint_files,
    load_latest_checkpoint,
    preserved_rng,
    restore_global_rng,
    save_checkpoint,
    writing_checkpoint,
)
from scorekit.training.data import Batches, Data, DataOrder, dataset_size, fetch
from scorekit.training.ema import EMA
from scorekit.training.monitor import (
    MetricsLog,
    heldout_loss,
    is_image_batch,
    open_tensorboard,
    plot_losses,
    save_grid,
    summary_writer_class,
)
from scorekit.training.run_config import SCHEDULE_KEYS, RunConfig, SampleConfig, TrainConfig
from scorekit.training.schedules import lr_scheduler

logger = logging.getLogger("scorekit.training")

#: device types with a fused Adam kernel
_FUSED_ADAM = ("cpu", "cuda")

#: ``on_checkpoint(step, model, run_dir) -> {metric: value}`` (or None)
CheckpointHook = Callable[[int, ScoreModel, Path], "dict[str, Any] | None"]
#: ``on_start(step, checkpoint)``: the run is set up and starts from ``step`` (0, or that of ``checkpoint``)
StartHook = Callable[[int, "Path | None"], None]
#: training options that do not change the trained weights (a resume may change them freely)
_BOOKKEEPING = SCHEDULE_KEYS
#: the clock of ``time_budget`` (a test replaces it)
_clock = time.monotonic


@attrs.frozen
class StepInfo:
    """What a per-step ``callback`` receives, after the optimiser step."""

    step: int  #: completed steps
    loss: torch.Tensor  #: the step's loss, detached (``.item()`` synchronises a GPU)
    lr: float
    grad_norm: torch.Tensor | None  #: global gradient norm before clipping (only with ``grad_clip``)


@attrs.frozen
class TrainResult:
    """What :func:`train` returns; the model passed in carries the trained (raw) weights."""

    run_dir: Path
    step: int
    checkpoint: Path | None  #: ``last.pt`` (None on ranks other than 0)
    loss: float | None  #: mean training loss of the last logging window
    heldout_loss: float | None  #: the last held-out loss, if evaluated
    ema: EMA | None  #: the EMA weights (``result.ema.copy_to(model)`` to use them)
    best: dict[str, Any] | None = None  #: ``{"metric", "value", "step"}`` of ``best.pt``
    time_budget_reached: bool = False  #: stopped by ``time_budget`` at ``step``, before ``n_iters``


def derive_seed(seed: int, *keys: int | str) -> int:
    """An independent 63-bit seed for each purpose (and rank) from the one ``TrainConfig.seed``."""
    words = [seed] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def train(
    model: ScoreModel,
    dataset: Data,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    run_config: RunConfig | None = None,
    holdout: Data | None = None,
    on_checkpoint: CheckpointHook | None = None,
    best_metric: str | None = None,
    best_mode: Literal["min", "max"] = "min",
    keep_all: bool = False,
    callback: Callable[[StepInfo], None] | None = None,
    on_start: StartHook | None = None,
    resume: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on ``dataset`` (a map-style dataset or a tensor ``[N, ...]``) for ``config.n_iters`` steps.

    ``run_dir`` receives the checkpoints, ``metrics.jsonl`` and grids. With ``resume``
    an existing ``run_dir/last.pt`` is continued; without, it is an error (a run is
    never overwritten; see :func:`new_run_dir`). ``run_config`` is stored in the
    checkpoints (with ``train`` replaced by ``config``) so that
    :func:`load_model_from_checkpoint` can rebuild the model; its ``sample`` section
    sets the grids. ``holdout`` enables the held-out loss (:func:`heldout_loss`).

    ``on_checkpoint(step, model, run_dir)`` runs at every checkpoint (rank 0 only, model
    in eval mode with the weights sampling uses, global RNG preserved) and returns
    metrics to log; with ``best_metric`` (one of those names, or ``"heldout_loss"``
    when evaluations fall on checkpoint steps), the best checkpoint by ``best_mode``
    is copied to ``best.pt``. ``callback(StepInfo)`` runs after every step.
    ``on_start(step, checkpoint)`` runs once on rank 0 when everything is set up and
    checked (the data, the model, the checkpoint resumed from, if any) and before the
    first step: what a caller writes there describes a run that is known to start.

    ``run_dir/last.pt`` is resumed; when it cannot be read, the newest readable
    ``ckpt_<step>.pt`` beside it is, with a warning naming both. A fresh run (no
    checkpoint) starts a fresh ``metrics.jsonl``; a resumed one drops the lines logged
    after its checkpoint. A NaN or inf loss raises :class:`DivergenceError` and keeps the
    last good checkpoint. ``KeyboardInterrupt`` (Ctrl-C, and SIGTERM or SIGHUP as
    :class:`~scorekit.errors.TrainingInterrupted`) saves the state of the last completed
    step and is re-raised. Seeds: torch's, numpy's and Python's global generators are seeded from
    ``config.seed`` at the start of a fresh run (they drive lazy initialisation, dropout
    and data transforms), and restored from the checkpoint on resume.

    ``config.time_budget`` seconds after this call (setup included; a resumed run gets the
    whole budget again), the step under way is finished and checkpointed and training stops
    as if ``n_iters`` had been reached (``result.time_budget_reached``; a ``time_budget`` line
    in ``metrics.jsonl``). ``config.logger="tensorboard"`` also writes the scalars of
    ``metrics.jsonl`` to ``run_dir/tensorboard/`` (an :class:`OptionError` here, before anything
    else, when tensorboard is not installed). ``progress`` shows a bar, or plain lines when
    stderr is not a terminal. ``loss.png`` is drawn at the end when matplotlib is installed.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the network is wrapped in DDP and every
    process trains on its share of each batch; see :mod:`scorekit.training.distributed`.
    """
    started = _clock()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a scorekit.training.TrainConfig, got {type(config).__name__}")
    if best_mode not in ("min", "max"):
        raise OptionError(f"best_mode must be 'min' or 'max', got {best_mode!r}")
    if config.logger == "tensorboard":
        summary_writer_class()  # a missing package fails now, not after the first checkpoint
    env = distributed.detect()
    device = distributed.device_for(env, config.device)
    created = distributed.setup(env, device)
    try:
        run = _Run(model, dataset, config, Path(run_dir), env=env, device=device, run_config=run_config,
                   holdout=holdout, on_checkpoint=on_checkpoint, best_metric=best_metric, best_mode=best_mode,
                   keep_all=keep_all, callback=callback, resume=resume)
        if on_start is not None and env.is_main:
            on_start(run.step, run.resumed_from)
        return run.fit(progress, started)
    finally:
        distributed.teardown(created)


class _Run:
    """The state of one training run, set up from scratch or from ``last.pt``."""

    def __init__(self, model: ScoreModel, dataset: Data, config: TrainConfig, run_dir: Path, *,
                 env: distributed.DistEnv, device: torch.device, run_config: RunConfig | None, holdout: Data | None,
                 on_checkpoint: CheckpointHook | None, best_metric: str | None, best_mode: str, keep_all: bool,
                 callback: Callable[[StepInfo], None] | None, resume: bool) -> None:
        self.model, self.config, self.run_dir, self.env, self.device = model, config, run_dir, env, device
        self.run_config = _run_config_for(model, config, run_config)
        self.sample_config = self.run_config.sample if self.run_config is not None else SampleConfig()
        self.holdout, self.on_checkpoint, self.callback, self.keep_all = holdout, on_checkpoint, callback, keep_all
        self.best_metric, self.best_mode = best_metric, best_mode
        self.best: dict[str, Any] | None = None
        self.last_path = run_dir / "last.pt"
        self.metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=env.is_main)
        self.saved_step: int | None = None
        #: whether last.pt holds ``saved_step`` (not after a fall back from a damaged last.pt)
        self.last_is_saved = True
        self.resumed_from: Path | None = None
        self.last_heldout: float | None = None
        #: why the run stops before ``n_iters`` (the time budget), stored in the last checkpoint
        self.stopped: dict[str, Any] | None = None
        self.signals = _Signals()

        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(run_dir)
        ckpt = self._existing_checkpoint(resume)
        if ckpt is None:
            torch.manual_seed(derive_seed(config.seed, "torch"))
            np.random.seed(derive_seed(config.seed, "numpy") % 2**32)
            random.seed(derive_seed(config.seed, "python"))
            self.metrics.reset()  # lines of a run that died before its first checkpoint are not this run's

        # size a lazy network on one example before anything collects its parameters
        self.n = dataset_size(dataset)
        first = check_batch(fetch(dataset, torch.tensor([0])).to(device), "the first training example")
        model.to(device)
        check_same_device_dtype(model.network, first, "the training data")
        was_training = model.training
        model.eval()
        model.materialize(first)
        model.train(was_training)
        if ckpt is not None:
            try:
                model.load_state_dict(ckpt["model"])
            except (RuntimeError, CompositionError) as exc:
                raise CheckpointError(f"the weights in {self.resumed_from} do not fit this model: {exc}") from exc
        self.images = is_image_batch(first)
        self.example = first
        # the centre of the default initial noise of a sampler without its own (ScoreModel.initial_noise): the
        # mean pixel of up to 256 examples spread over the data set, kept in checkpoints for `scorekit sample`
        spread = torch.linspace(0, self.n - 1, min(self.n, 256)).round().long()
        self.data_mean = float(fetch(dataset, spread).float().mean())
        self.channels_last = config.channels_last and first.ndim == 4
        if self.channels_last:
            model.to(memory_format=torch.channels_last)

        # the module the steps call: DDP and torch.compile wrap the network, checkpoints keep the plain one
        network = distributed.wrap(model.network, env, device)
        if config.compile:
            network = torch.compile(network)
        self.step_model = model if network is model.network else model.with_network(network)

        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise OptionError("the model has no trainable parameters")
        self.params = params
        # the fused kernel updates every tensor in one pass (4x faster than the per-tensor loop on CPU)
        self.optimizer = torch.optim.Adam(params, lr=config.lr, betas=(config.beta1, config.beta2),
                                          weight_decay=config.weight_decay, fused=device.type in _FUSED_ADAM)
        self.ema = EMA(model, config.ema_decay, warmup=config.ema_warmup) if config.ema_decay is not None else None

        self.train_generator = torch.Generator(device=device).manual_seed(derive_seed(config.seed, "train", env.rank))
        self.order = DataOrder(self.n, config.batch_size, torch.Generator().manual_seed(derive_seed(config.seed, "data")),
                               rank=env.rank, world_size=env.world_size)
        self.step = 0
        if ckpt is not None:
            self._restore(ckpt)
        # the rate is a function of the step alone: the scheduler is rebuilt from it, never restored
        self.scheduler = lr_scheduler(self.optimizer, self.step, lr=config.lr, schedule=config.lr_schedule,
                                      warmup=config.lr_warmup, n_iters=config.n_iters)
        self.batches = Batches(dataset, self.order, num_workers=config.num_workers, pin_memory=device.type == "cuda")

    # --- setup --------------------------------------------------------------------------------

    def _existing_checkpoint(self, resume: bool) -> dict[str, Any] | None:
        files = checkpoint_files(self.run_dir)
        if not files:
            return None
        if not resume:
            raise CheckpointError(
                f"{self.run_dir} already holds a run ({files[0]}); pass resume=True to continue it, "
                "or train in a new directory (scorekit.training.new_run_dir())"
            )
        found = load_latest_checkpoint(self.run_dir)
        assert found is not None
        ckpt, path, skipped = found
        for bad, error in skipped:
            logger.warning("%s cannot be read (%s); resuming from %s (step %d), the newest readable checkpoint of "
                           "this run", bad, _reason(error), path, ckpt["step"])
        self.resumed_from = path
        self.last_is_saved = path == self.last_path
        stored_names = ckpt.get("names") or {}
        if stored_names and stored_names != self.model.names:
            raise CheckpointError(
                f"{path} is a run of {stored_names}, but the model is {self.model.names}; "
                "use a new run directory for a different model"
            )
        if self.run_config is not None and ckpt["config"] is not None:
            stored, current = ckpt["config"], self.run_config.to_dict()
            if stored["model"] != current["model"]:
                changed = [f"model.{key} = {stored['model'].get(key)!r} there, {current['model'].get(key)!r} now"
                           for key in sorted(set(stored["model"]) | set(current["model"]))
                           if stored["model"].get(key) != current["model"].get(key)]
                raise CheckpointError(f"{path} was trained with another model config ({'; '.join(changed)}); "
                                      "the model section cannot change on resume: use a new run directory")
            changed = sorted(k for k in current["train"]
                             if k not in _BOOKKEEPING and stored["train"].get(k) != current["train"][k])
            if changed:
                logger.warning("resuming %s with changed training options %s; the run will not match an "
                               "uninterrupted one", path, changed)
        threads = ckpt.get("num_threads")
        if threads is not None and threads != torch.get_num_threads() and self.device.type == "cpu":
            logger.warning("%s was written by a run on %d CPU threads, resumed on %d: on a CPU the result is then not "
                           "bit-identical to an uninterrupted run (set OMP_NUM_THREADS=%d or torch.set_num_threads(%d) "
                           "to match)", path, threads, torch.get_num_threads(), threads, threads)
        return ckpt

    def _restore(self, ckpt: dict[str, Any]) -> None:
        where = self.resumed_from
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"the optimizer state in {where} does not fit this model: {exc}") from exc
        # the config given now wins (e.g. a lower lr after a divergence: the scheduler is rebuilt with it)
        for group in self.optimizer.param_groups:
            group.update(betas=(self.config.beta1, self.config.beta2),
                         weight_decay=self.config.weight_decay)
        if self.ema is not None:
            if ckpt["ema"] is None:
                logger.warning("%s has no EMA; the EMA starts from the current weights", where)
            else:
                try:
                    self.ema.load_state_dict(ckpt["ema"])
                except (ValueError, KeyError, TypeError, RuntimeError) as exc:
                    raise CheckpointError(f"the EMA state in {where} does not fit this model: {exc}") from exc
        self.step = ckpt["step"]
        self.saved_step = ckpt["step"]
        self.best = ckpt.get("best")
        rng = ckpt["rng"]
        restore_global_rng(rng)
        if not self.order.load_state_dict(rng["data"]):
            logger.warning("%s was written for another dataset size or batch size; a new epoch starts", where)
        if ckpt.get("world_size", 1) != self.env.world_size:
            logger.warning("%s was written by %s processes, resumed by %s: the batches are split differently",
                           where, ckpt.get("world_size", 1), self.env.world_size)
        if self.env.rank == 0:
            try:
                self.train_generator.set_state(rng["train"])
            except RuntimeError:  # a CPU generator state cannot seed a CUDA generator, and vice versa
                logger.warning("%s was written on another device type; the training noise is reseeded", where)
                self.train_generator.manual_seed(derive_seed(self.config.seed, "train", 0, self.step))
        else:  # only rank 0's generator is stored; the others continue from fresh, distinct seeds
            self.train_generator.manual_seed(derive_seed(self.config.seed, "train", self.env.rank, self.step))
        self.metrics.truncate_after(self.step)
        logger.info("resuming %s from step %d", where, self.step)

    # --- the loop -------------------------------------------------------------------------------

    def fit(self, progress: bool, started: float) -> TrainResult:
        config = self.config
        window_loss, window_steps, window_start = torch.zeros((), device=self.device), 0, time.perf_counter()
        last_loss: float | None = None
        budget_reached = False
        if config.logger == "tensorboard" and self.env.is_main:
            self.metrics.writer = open_tensorboard(self.run_dir, resumed_step=self.step)
        first_step = self.step
        bar = progress_bar(config.n_iters, "training", "step", initial=self.step,
                           disable=not (progress and self.env.is_main))
        # the random states before each step, for a Ctrl-C in the middle of it; numpy's and Python's
        # generators are only drawn from by dataset transforms, which a tensor dataset does not have
        host_rngs = not isinstance(self.batches.dataset, torch.Tensor)
        snapshot, committed = None, True
        self.model.train()
        self.signals.install()
        try:
            while self.step < config.n_iters:
                snapshot, committed = capture_rng(self.train_generator, self.order, host_rngs=host_rngs), False
                loss, grad_norm = self._forward_backward()
                lr = self.optimizer.param_groups[0]["lr"]  # the scheduled rate of this update
                # an update is applied whole or not at all, and its metrics line goes with it
                with self.signals.held():
                    self.optimizer.step()
                    if self.ema is not None:
                        self.ema.update(self.model)
                    self.step += 1
                    self.scheduler.step()  # the rate of the next update
                    committed = True
                    bar.update(1)
                    window_loss += loss
                    window_steps += 1
                    if self.callback is not None:
                        self.callback(StepInfo(step=self.step, loss=loss, lr=lr, grad_norm=grad_norm))
                    budget_reached = self._budget_reached(started)
                    done = self.step == config.n_iters or budget_reached
                    if self.step % config.log_every == 0 or done:
                        elapsed = time.perf_counter() - window_start
                        last_loss = window_loss.item() / window_steps
                        rate = window_steps / elapsed if elapsed > 0 else float("inf")
                        extra = {} if grad_norm is None else {"grad_norm": grad_norm.item()}
                        self.metrics.write("train", self.step, loss=last_loss, lr=lr, it_per_s=rate, **extra)
                        bar.set_postfix(loss=f"{last_loss:.4g}", refresh=False)
                        if config.time_budget is not None and not done:  # the bar's end: where the budget ends
                            bar.total = self._projected_last_step(started, first_step)
                        window_loss.zero_()
                        window_steps = 0
                    if budget_reached:
                        bar.total = self.step  # the run ends here: the display says 100 %
                        bar.close()  # its last line comes before the message
                        self._stop_on_budget(_clock() - started)
                if self.env.is_main:
                    self._after_step(done)
                if window_steps == 0:  # it/s counts training steps, not evaluation or checkpoints
                    window_start = time.perf_counter()
                if budget_reached:
                    break
        except DivergenceError as exc:
            self._diverged(exc, self.step if committed else self.step + 1)
        except KeyboardInterrupt as exc:
            bar.close()  # the messages below start on a line of their own
            self._interrupted(exc, None if committed else snapshot)
            raise
        finally:
            self.signals.uninstall()
            bar.close()
            self.batches.close()
            self.metrics.close()
        if self.env.is_main:
            plot_losses(self.run_dir)
        return TrainResult(run_dir=self.run_dir, step=self.step, checkpoint=self.last_path if self.env.is_main else None,
                           loss=last_loss, heldout_loss=self.last_heldout, ema=self.ema, best=self.best,
                           time_budget_reached=budget_reached)

    def _budget_reached(self, started: float) -> bool:
        """Whether ``time_budget`` seconds have passed since ``started``; under torchrun rank 0's clock decides
        (one one-element broadcast a step), so that every rank stops after the same step."""
        budget = self.config.time_budget
        if budget is None:
            return False
        reached = _clock() - started >= budget
        if self.env.active and dist.is_initialized():
            flag = torch.tensor([float(reached)], device=self.device)
            dist.broadcast(flag, src=0)
            reached = bool(flag.item())
        return reached

    def _projected_last_step(self, started: float, first_step: int) -> int:
        """The step at which ``time_budget`` will end the run at this process's pace so far (at most ``n_iters``):
        the progress display's total, so that its percentage and remaining time follow the budget."""
        elapsed = _clock() - started
        if elapsed <= 0 or self.step <= first_step:
            return self.config.n_iters
        left = max(0.0, self.config.time_budget - elapsed)  # type: ignore[operator]
        return min(self.config.n_iters, self.step + math.ceil((self.step - first_step) / elapsed * left))

    def _stop_on_budget(self, elapsed: float) -> None:
        """Record that the time budget ends the run at this step (its checkpoint follows)."""
        budget, step, n_iters = self.config.time_budget, self.step, self.config.n_iters
        self.stopped = {"reason": "time_budget", "time_budget": budget, "seconds": elapsed, "n_iters": n_iters}
        self.metrics.write("time_budget", step, time_budget=budget, seconds=elapsed, n_iters=n_iters)
        if self.env.is_main:
            logger.info("time budget of %g s reached at step %d of %d; checkpointing and stopping", budget, step,
                        n_iters)

    def _forward_backward(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = next(self.batches).to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self.config.bf16 else nullcontext()
        with autocast:
            loss = self.step_model.loss(x, generator=self.train_generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = None
        if self.config.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
            if not torch.isfinite(grad_norm):
                raise DivergenceError(f"the gradient norm is {grad_norm.item()} (loss {loss.item():.4g})")
        return loss.detach(), grad_norm

    def _after_step(self, done: bool) -> None:
        config, step = self.config, self.step
        values: dict[str, Any] = {}
        if config.eval_every and self.holdout is not None and (step % config.eval_every == 0 or done):
            with self._sampling_weights():
                values = heldout_loss(self.model, self.holdout, batch_size=config.batch_size)
            self.last_heldout = values["heldout_loss"]
            self.metrics.write("eval", step, **values)
            logger.info("step %d: held-out loss %.5g", step, values["heldout_loss"])
        if config.sample_every and self.images and (step % config.sample_every == 0 or done):
            self._grid()
        if step % config.checkpoint_every == 0 or done:
            self._checkpoint({"heldout_loss": values["heldout_loss"]} if values else {})

    @contextmanager
    def _sampling_weights(self) -> Iterator[None]:
        """Eval mode with the weights that sampling uses (EMA when present and ``use_ema``), in a forked RNG."""
        use_ema = self.ema is not None and self.sample_config.use_ema
        self.model.eval()
        try:
            with preserved_rng(), (self.ema.apply(self.model) if use_ema else nullcontext()):  # type: ignore[union-attr]
                yield
        finally:
            self.model.train()

    def _grid(self) -> None:
        if not self.model.has_initial_noise():
            logger.info("no sample grids: the composition cannot draw initial noise (ScoreModel.has_initial_noise)")
            self.images = False
            return
        with self._sampling_weights():
            save_grid(self.model, self.example, self.run_dir / f"grid_{self.step}.png", n=self.sample_config.grid_size,
                      clamp=self.sample_config.clamp, seed=self.sample_config.seed, mean=self.data_mean)

    # --- checkpoints ------------------------------------------------------------------------------

    def _checkpoint(self, values: dict[str, Any]) -> None:
        if self.on_checkpoint is not None:
            try:
                with self._sampling_weights():
                    values.update(self.on_checkpoint(self.step, self.model, self.run_dir) or {})
            except Exception:
                self._save(capture_rng(self.train_generator, self.order))  # a failing hook loses no training
                raise
            self.metrics.write("checkpoint", self.step, **values)
        improved = False
        if self.best_metric is not None and self.best_metric in values:
            value = float(values[self.best_metric])
            old = None if self.best is None else self.best["value"]
            improved = math.isfinite(value) and (old is None or (value < old if self.best_mode == "min" else value > old))
            if improved:
                self.best = {"metric": self.best_metric, "value": value, "step": self.step}
        if self.on_checkpoint is not None:
            logger.info("%s", _checkpoint_line(self.step, values, self.best if improved else None))
        self._save(capture_rng(self.train_generator, self.order), metrics=values)
        with self.signals.held():
            if improved:
                with writing_checkpoint(self.run_dir / "best.pt"):
                    atomic_copy(self.last_path, self.run_dir / "best.pt")
            if self.keep_all:
                with writing_checkpoint(self.run_dir / f"ckpt_{self.step}.pt"):
                    atomic_copy(self.last_path, self.run_dir / f"ckpt_{self.step}.pt")

    def _save(self, rng: dict[str, Any], metrics: dict[str, Any] | None = None) -> None:
        """Write ``last.pt``; the one it replaces stays as ``ckpt_<step>.pt`` (``keep_checkpoints``).

        Signals wait until the files are written: a checkpoint is never half rotated.
        """
        if not all(torch.isfinite(p).all() for p in self.params):
            raise DivergenceError(f"the weights contain NaN or inf at step {self.step}")
        with self.signals.held():
            keep = self.config.keep_checkpoints
            previous = self.saved_step
            if (not self.keep_all and keep > 1 and previous is not None and previous != self.step
                    and self.last_is_saved and self.last_path.is_file()):
                with writing_checkpoint(self.run_dir / f"ckpt_{previous}.pt"):
                    link_or_copy(self.last_path, self.run_dir / f"ckpt_{previous}.pt")
            save_checkpoint(self.last_path, model=self.model, step=self.step, optimizer=self.optimizer, ema=self.ema,
                            rng=rng, run_config=self.run_config, train_config=attrs.asdict(self.config),
                            world_size=self.env.world_size, metrics=metrics or {}, best=self.best,
                            num_threads=torch.get_num_threads(), example_shape=list(self.example.shape[1:]),
                            data_mean=self.data_mean, stopped=self.stopped)
            self.saved_step = self.step
            self.last_is_saved = True
            if not self.keep_all:
                self._prune(keep - 1)

    def _prune(self, older: int) -> None:
        """Keep the ``older`` newest ``ckpt_<step>.pt`` before the current step; delete the rest (among them
        the files of steps after it, left by a run that was resumed from an older checkpoint)."""
        found = sorted(((int(m.group(1)), p) for p in self.run_dir.iterdir() if (m := CKPT_NAME.match(p.name))),
                       reverse=True)
        before = [p for step, p in found if step < self.step]
        for path in before[older:] + [p for step, p in found if step >= self.step]:
            path.unlink(missing_ok=True)

    def _diverged(self, exc: DivergenceError, step: int) -> None:
        kept = (f"the last good checkpoint ({self.last_path}, step {self.saved_step}) is kept"
                if self.saved_step is not None else "no checkpoint had been written yet")
        self.metrics.write("diverged", step, message=str(exc))
        raise DivergenceError(
            f"training diverged at step {step}: {exc}. Stopped; {kept}. Lower TrainConfig.lr or set "
            "TrainConfig.grad_clip, then resume from the checkpoint or start again"
        ) from exc

    def _interrupted(self, exc: KeyboardInterrupt, snapshot: dict[str, Any] | None) -> None:
        self.signals.quiet()  # a second Ctrl-C (or SIGTERM) must not interrupt the save
        if not self.env.is_main:
            return
        if self.saved_step == self.step and self.last_is_saved:  # e.g. a signal right after a checkpoint
            exc.saved_step, exc.checkpoint = self.step, self.last_path  # type: ignore[attr-defined]
            logger.warning("interrupted: step %d is saved in %s; run again to continue", self.step, self.last_path)
            return
        rng = capture_rng(self.train_generator, self.order)
        if snapshot is not None:  # the step was not completed: its draws must not reach the checkpoint
            rng.update({key: value for key, value in snapshot.items() if value is not None})
        try:
            self._save(rng)
        except DivergenceError:
            exc.saved_step, exc.checkpoint = self.saved_step, None  # type: ignore[attr-defined]
            logger.warning("interrupted at step %d; the weights are not finite, so no checkpoint was written "
                           "(the last good one, step %s, is kept)", self.step, self.saved_step)
            return
        except CheckpointError as error:  # e.g. a full disk: the interrupt still ends the run
            exc.saved_step, exc.checkpoint = self.saved_step, None  # type: ignore[attr-defined]
            logger.error("interrupted at step %d, but the checkpoint could not be written: %s", self.step, error)
            return
        exc.saved_step, exc.checkpoint = self.step, self.last_path  # type: ignore[attr-defined]
        logger.warning("interrupted: saved step %d to %s; run again to continue", self.step, self.last_path)


def _run_config_for(model: ScoreModel, config: TrainConfig, run_config: RunConfig | None) -> RunConfig | None:
    """The run config to store: ``run_config`` with ``train`` replaced by the config actually used."""
    if run_config is None:
        return None
    if not isinstance(run_config, RunConfig):
        raise TypeError(f"run_config must be a scorekit.training.RunConfig, got {type(run_config).__name__}")
    for kind in ("network", "estimator", "sampler"):
        wanted, actual = getattr(run_config.model, kind), model.names.get(kind)
        if actual is not None and actual != wanted:
            raise OptionError(
                f"the model was composed with {kind}={actual!r} but run_config.model.{kind}={wanted!r}; "
                "a checkpoint would rebuild the wrong model (build it with scorekit.training.build_model(run_config))"
            )
    return attrs.evolve(run_config, train=config)


def _checkpoint_line(step: int, values: dict[str, Any], best: dict[str, Any] | None) -> str:
    """``step 5000: fid 23.4, fid_samples 1000 (best so far)``: the checkpoint hook's numbers on one line."""
    shown = ", ".join(f"{key} {value:.5g}" if isinstance(value, float) else f"{key} {value}"
                      for key, value in values.items() if key != "heldout_loss" and _is_number(value))
    return f"step {step}: {shown or 'checkpoint'}" + (" (best so far)" if best is not None else "")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reason(error: BaseException) -> str:
    """The part of a checkpoint error that says what is wrong with the file, on one line."""
    return getattr(error, "reason", None) or " ".join(str(error).split())[:200]


class _Signals:
    """SIGINT, SIGTERM and SIGHUP while training: the first raises :class:`TrainingInterrupted` at once, or at
    the end of a :meth:`held` block (an update, a checkpoint write) when it lands inside one; later ones are
    only noted, so that they never interrupt the save that follows the first.

    Installed only in the main thread and only over Python's default handlers: a handler of the
    program's own (or SIGHUP ignored, as under ``nohup``) stays as it is.
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.pending: int | None = None
        self.depth = 0
        self.silent = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.NAMES:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            current = signal.getsignal(signum)
            default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            if current is default:
                self.previous[signum] = current
                signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        self.previous.clear()

    def quiet(self) -> None:
        """From now on signals are only noted (the run is already stopping)."""
        self.silent = True

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pending is None:
            self.pending = signum
            if self.depth == 0 and not self.silent:
                self._raise()

    def _raise(self) -> None:
        self.silent = True
        raise TrainingInterrupted(self.pending or signal.SIGINT)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A signal that arrives inside the block takes effect when the block is done."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.depth == 0 and self.pending is not None and not self.silent:
            self._raise()
