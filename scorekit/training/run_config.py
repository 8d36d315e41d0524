"""The full configuration of a training run, as frozen attrs classes.

A :class:`RunConfig` is what a preset returns, what ``scorekit train`` resolves from
``--preset``, a TOML file and ``key=value`` overrides, and what a checkpoint stores, so
that a run can be resumed or sampled from with exactly the settings it was trained with.
Every default is written once, here.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs
import torch

from scorekit.errors import OptionError
from scorekit.options import closest
from scorekit.sigmas import as_sigmas, geometric_sigmas
from scorekit.training.schedules import LR_SCHEDULES
from scorekit.validators import (
    as_pair,
    boolean,
    frozen,
    non_negative_int,
    one_of,
    optional,
    positive,
    positive_int,
    probability,
    seed_value,
    string,
    value_range,
)


def _run_name(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    from scorekit.training.run_dir import _NAME

    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(f"option 'name' (the run directory's stem) must be letters, digits, '.', '_' or '-', "
                         f"starting with a letter or digit (no path separators), got {value!r}")


def _dict(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"option '{attribute.name}' must be a table (dict), got {value!r}")


@frozen
class SigmaConfig:
    """Noise levels: geometric from ``first`` to ``last`` in ``n`` levels, or an explicit ``values`` list."""

    first: float = attrs.field(default=1.0, validator=positive)
    last: float = attrs.field(default=0.01, validator=positive)
    n: int = attrs.field(default=10, validator=positive_int)
    values: tuple[float, ...] | None = attrs.field(default=None, converter=as_pair)

    def __attrs_post_init__(self) -> None:
        # the whole schedule is checked here, so that a config is never accepted and then rejected by compose()
        if self.values is not None:
            if not isinstance(self.values, tuple) or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values):
                raise ValueError(f"option 'values' must be a list of numbers, largest first, got {self.values!r}")
            try:
                as_sigmas(list(self.values))
            except ValueError as exc:
                raise ValueError(f"option 'values': {exc}") from None
        elif self.n == 1 and self.first != self.last:
            raise ValueError(f"with option 'n' = 1, 'first' ({self.first}) and 'last' ({self.last}) must be equal")
        elif self.n > 1 and not self.first > self.last:
            raise ValueError(f"option 'first' ({self.first}) must be greater than option 'last' ({self.last}): "
                             "the noise levels descend from first (the largest) to last")

    def tensor(self) -> torch.Tensor:
        """The schedule as a validated 1-D tensor."""
        if self.values is not None:
            return as_sigmas(list(self.values))  # type: ignore[return-value]
        return geometric_sigmas(self.first, self.last, self.n)


@frozen
class ModelConfig:
    """What to pass to :func:`scorekit.compose`. ``sigmas=None`` composes an unconditional model."""

    network: str = "mlp"
    estimator: str = "dsm"
    sampler: str = "annealed_langevin"
    sigmas: SigmaConfig | None = attrs.field(factory=SigmaConfig)
    network_options: dict[str, Any] = attrs.field(factory=dict, validator=_dict)
    estimator_options: dict[str, Any] = attrs.field(factory=dict, validator=_dict)
    sampler_options: dict[str, Any] = attrs.field(factory=dict, validator=_dict)


@frozen
class DataConfig:
    """A registered dataset and where it lives. ``root=None`` is the dataset's default location.

    Every dataset factory takes ``train``: ``True`` for the training split, ``False`` for
    the held-out split (Eq. 6 loss, the real-against-real metric floor, inpainting).
    """

    name: str = attrs.field(default="digits", validator=string)
    root: str | None = attrs.field(default=None, validator=optional(string))
    options: dict[str, Any] = attrs.field(factory=dict, validator=_dict)


#: the values of ``train.logger``
LOGGERS = ("none", "tensorboard")
#: the ``train`` keys that only schedule a run (how long, how often to write what): they change neither the
#: model nor the data nor the updates, so a resume may change them (``scorekit resume`` accepts only these
#: and the ``sample`` section)
SCHEDULE_KEYS = ("n_iters", "time_budget", "checkpoint_every", "sample_every", "eval_every", "log_every", "logger",
                 "keep_checkpoints")


@frozen
class TrainConfig:
    """Optimisation, checkpointing and monitoring (section 5 and appendix B.2 of the paper)."""

    n_iters: int = attrs.field(default=200_000, validator=positive_int)
    batch_size: int = attrs.field(default=128, validator=positive_int)
    lr: float = attrs.field(default=1e-3, validator=positive)
    #: how the rate evolves over ``n_iters`` (:mod:`scorekit.training.schedules`): the
    #: paper's "constant", or "cosine" / "linear" decay towards 0 at the last step
    lr_schedule: str = attrs.field(default="constant", validator=one_of(*LR_SCHEDULES))
    #: updates of linear warm-up from 0 to ``lr`` before the schedule starts
    lr_warmup: int = attrs.field(default=0, validator=non_negative_int)
    beta1: float = attrs.field(default=0.9, validator=probability)
    beta2: float = attrs.field(default=0.999, validator=probability)
    weight_decay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    grad_clip: float | None = attrs.field(default=None, validator=optional(positive))
    ema_decay: float | None = attrs.field(default=None, validator=optional(probability))
    #: EMA decay min(ema_decay, (1 + n) / (10 + n)) at update n: forget the initial weights fast
    ema_warmup: bool = attrs.field(default=False, validator=boolean)
    checkpoint_every: int = attrs.field(default=5_000, validator=positive_int)
    #: checkpoints kept: ``last.pt`` (the newest) and the ``keep_checkpoints - 1`` before it as
    #: ``ckpt_<step>.pt``, so that a damaged ``last.pt`` falls back to the one before
    keep_checkpoints: int = attrs.field(default=2, validator=positive_int)
    sample_every: int = attrs.field(default=5_000, validator=non_negative_int)
    eval_every: int = attrs.field(default=5_000, validator=non_negative_int)
    log_every: int = attrs.field(default=100, validator=positive_int)
    #: seconds of training (not counting the final sampling) after which the run stops as if ``n_iters``
    #: were reached: the current step finishes and is checkpointed; None: no limit
    time_budget: float | None = attrs.field(default=None, validator=optional(positive))
    #: where the training figures go besides ``metrics.jsonl``: "none", or "tensorboard" (needs the
    #: ``tensorboard`` extra) writing event files to ``<run dir>/tensorboard/``
    logger: str = attrs.field(default="none", validator=one_of(*LOGGERS))
    seed: int = attrs.field(default=0, validator=seed_value)
    num_workers: int = attrs.field(default=0, validator=non_negative_int)
    #: FID on this many samples at every checkpoint, keeping ``best.pt`` by the lowest
    #: (the paper's rule for CIFAR-10 and CelebA uses 1,000); 0 turns it off
    fid_samples: int = attrs.field(default=0, validator=non_negative_int)
    bf16: bool = attrs.field(default=False, validator=boolean)
    channels_last: bool = attrs.field(default=False, validator=boolean)
    compile: bool = attrs.field(default=False, validator=boolean)
    device: str = attrs.field(default="auto", validator=string)

    @lr_warmup.validator
    def _warmup_within_run(self, attribute: attrs.Attribute, value: int) -> None:
        if value >= self.n_iters:
            raise ValueError(f"option 'lr_warmup' ({value}) must be smaller than n_iters ({self.n_iters})")


@frozen
class SampleConfig:
    """Final sampling: how many samples, in which batches, from which initial noise."""

    n_samples: int = attrs.field(default=1_000, validator=positive_int)
    batch_size: int = attrs.field(default=250, validator=positive_int)
    grid_size: int = attrs.field(default=64, validator=positive_int)
    clamp: tuple[float, float] | None = attrs.field(default=(0.0, 1.0), validator=value_range,
                                                    converter=attrs.converters.optional(tuple))
    use_ema: bool = attrs.field(default=True, validator=boolean)
    seed: int = attrs.field(default=0, validator=seed_value)
    #: ``torch.compile`` the network for the final samples (``sample``, ``run``): pays off only when the
    #: sampling outlasts the compilation (docs/results.md, "Compiled sampling")
    compile: bool = attrs.field(default=False, validator=boolean)


@frozen
class RunConfig:
    """One run: the composition, the data, training and sampling."""

    name: str = attrs.field(default="run", validator=_run_name)
    model: ModelConfig = attrs.field(factory=ModelConfig)
    data: DataConfig = attrs.field(factory=DataConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    sample: SampleConfig = attrs.field(factory=SampleConfig)

    # --- (de)serialisation ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts (TOML/JSON-ready; tuples become lists)."""
        return _plain(attrs.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Build from nested dicts, with errors that name the section and key."""
        return _structure(cls, data, "")

    def override(self, updates: Mapping[str, Any]) -> "RunConfig":
        """A copy with dotted-key updates applied, e.g. ``{"train.lr": 1e-4, "model.sigmas.n": 20}``."""
        data = self.to_dict()
        for dotted, value in updates.items():
            *path, leaf = dotted.split(".")
            node: Any = data
            for i, key in enumerate(path):
                if not isinstance(node, dict) or key not in node:
                    raise OptionError(f"unknown config section {'.'.join(path[: i + 1])!r} in override {dotted!r}")
                if node[key] is None:  # e.g. model.sigmas = None, now being filled in
                    node[key] = {}
                node = node[key]
            if not isinstance(node, dict):
                raise OptionError(f"cannot set {dotted!r}: {'.'.join(path)!r} is not a section")
            node[leaf] = value
        return RunConfig.from_dict(data)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


_NESTED: dict[type, dict[str, type]] = {
    RunConfig: {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "sample": SampleConfig},
    ModelConfig: {"sigmas": SigmaConfig},
}

# hand-written, not cattrs: cattrs' converter casts (n_iters=3.7 becomes 3) and its errors name neither the
# allowed keys nor the nearest one, nor the validator's reason (docs/architecture.md, Libraries)
def _structure(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise OptionError(f"config section {where or '(top)'!r} must be a table, got {data!r}")
    names = [a.name for a in attrs.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        here = f"{where}.{key}" if where else key
        if key not in names:
            hint = closest(key, names)
            raise OptionError(
                f"unknown config key {here!r}; allowed in {where or 'the top level'}: {', '.join(names)}"
                + (f" (did you mean {hint!r}?)" if hint else "")
            )
        sub = _NESTED.get(cls, {}).get(key)
        kwargs[key] = _structure(sub, value, here) if (sub is not None and value is not None) else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise OptionError(f"config section {where or '(top)'!r}: {exc}") from exc
