"""The contract of a sampler: ``sampler(score, x_init, *, sigmas, generator, callback) -> samples``."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

import scorekit
from scorekit.model import ScoreModel
from scorekit.plugins import PluginHost
from scorekit.targets import StandardGaussianScore
from scorekit.testing.contract import Contract, ContractReport, devices, generator, isolated_rng, label, resolve
from scorekit.testing.network_contract import DEFAULT_SHAPES, DEFAULT_SIGMAS
from scorekit.testing.options_contract import check_options

#: the fields of the object every callback receives (scorekit.samplers.SamplerStep has them all)
CALLBACK_FIELDS: tuple[str, ...] = (
    "step", "level", "sigma", "step_size", "score_norm", "acceptance_rate", "warmup", "divergent", "x",
)

#: the target check starts every chain at this value of every coordinate, far from N(0, I)
TARGET_START = 10.0
#: chains of the target check (the mean over 64 chains of N(0, I) draws has a spread of 0.125 per coordinate)
TARGET_CHAINS = 64
#: the mean must end within this fraction of the starting distance: the exact score of N(0, I) points
#: straight at 0, so a sampler that follows it for enough steps ends within a few tenths of 0 (the
#: built-ins with the options of tests/test_contract_builtin.py: within 0.15), while one that ignores
#: the score stays at 10 and one that follows it backwards runs away. Too few steps to cover 75% of
#: the way is a matter of options: more steps or a larger step size through `options`.
TARGET_MAX_FRACTION = 0.25


def check_sampler(
    sampler: str | Callable[..., Any],
    *,
    options: Mapping[str, Any] | None = None,
    shapes: Sequence[tuple[int, ...]] = DEFAULT_SHAPES,
    sigmas: Sequence[float] | torch.Tensor | None = DEFAULT_SIGMAS,
    stochastic: bool = True,
    batch_size: int = 4,
    seed: int = 0,
    host: PluginHost | None = None,
) -> ContractReport:
    """Check that a sampler keeps the sampler contract; raise :class:`ContractViolation` if not.

    ``sampler`` is a registered name (looked up on ``host``) or a factory, built by
    ``compose()`` with ``options`` (keep its step count small: every rule samples) and
    ``sigmas``, and run on the exact score of N(0, I) perturbed by each sigma,
    :class:`~scorekit.targets.StandardGaussianScore` (which also has an energy,
    for Metropolis-adjusted samplers). Rules:

    - ``builds``: ``compose()`` builds it (its ``validate_composition`` accepts the composition).
    - ``runs``: it samples from standard normal ``x_init`` of every shape without raising.
    - ``shape``: samples are shaped like ``x_init`` and of its dtype, for every shape in ``shapes``.
    - ``finite``: the samples are finite.
    - ``determinism``: the same generator seed gives identical samples whatever the state of
      torch's global RNG, and (``stochastic=True``) different seeds give different samples;
      either failure means the sampler ignores its generator.
    - ``callback``: the callback is called at least once, with an object that has every
      field of :data:`CALLBACK_FIELDS`, integer steps counting up, and ``x`` shaped like ``x_init``.
    - ``moves_to_target``: 64 chains started at +10 end with a mean within 2.5 of 0.
    - ``initial_noise``: if the sampler has ``initial_noise(like, generator)`` (or
      ``initial_noise(like, generator, *, sigmas)``, then given the composition's sigmas), what
      ``model.initial_noise`` draws with it is shaped like ``like``, finite and reproducible.
      Without one the rule is skipped: the model's own start applies (``init_range``, else
      N(0, sigma_1^2 I); see :meth:`~scorekit.ScoreModel.initial_noise`).
    - ``inpaint``: if the sampler has ``inpaint``, the known entries come back equal to ``y``.
    - ``device``: samples are on ``x_init``'s device (CUDA, when available).
    - ``options``: an unknown option, or an invalid value of an attrs field, raises OptionError naming it.
    """
    name, host = resolve("sampler", sampler, host)
    contract = Contract(label("sampler", name))
    options = dict(options or {})
    levels = None if sigmas is None else [float(s) for s in torch.as_tensor(sigmas).tolist()]

    def build(opts: dict[str, Any]) -> ScoreModel:
        return scorekit.compose(
            network=StandardGaussianScore(), estimator=None, sampler=name, sigmas=levels, sampler_options=opts, host=host
        )

    with isolated_rng(seed):
        with contract.calling("builds", f"being built with options {options}"):
            model = build(options)
        contract.passed("builds")
        for device in devices():
            model.to(device)
            for shape in shapes:
                _check_samples(contract, model, tuple(shape), stochastic, batch_size, seed, device)
            if device.type != "cpu":
                contract.passed("device")
        model.to("cpu")
        if len(devices()) == 1:
            contract.skipped("device", "no accelerator available; only the CPU was checked")
        _check_moves_to_target(contract, model, tuple(shapes[0]), seed)
        _check_initial_noise(contract, model, tuple(shapes[0]), seed)
        _check_inpaint(contract, model, tuple(shapes[0]), seed)
        check_options(contract, host.get("sampler", name).factory, options, build)
    return contract.report()


class _Recorder:
    """A callback that keeps what it was given."""

    def __init__(self) -> None:
        self.infos: list[Any] = []

    def __call__(self, info: Any) -> None:
        self.infos.append(info)


def _sample(contract: Contract, model: ScoreModel, x_init: torch.Tensor, seed: int, global_seed: int,
            where: str, callback: Callable[[Any], None] | None = None) -> torch.Tensor:
    torch.manual_seed(global_seed)  # a sampler that uses the global RNG sees a different state each time
    with contract.calling("runs", f"sampling {where}"):
        return model.sample(x_init, generator=generator(x_init.device, seed), callback=callback)


def _check_samples(contract: Contract, model: ScoreModel, shape: tuple[int, ...], stochastic: bool,
                batch: int, seed: int, device: torch.device) -> None:
    where = f"from x_init of shape {(batch, *shape)} on {device}"
    x_init = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed + 1)).to(device)
    first, second = _Recorder(), _Recorder()
    out = _sample(contract, model, x_init, seed, 1, where, first)
    contract.passed("runs")
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    contract.require(isinstance(out, torch.Tensor) and out.shape == x_init.shape, "shape",
                     f"returned samples of shape {got} {where}; samples must be shaped like x_init")
    contract.require(out.dtype == x_init.dtype, "shape", f"returned {out.dtype} samples {where} of dtype {x_init.dtype}")
    contract.passed("shape")
    contract.require(out.device == x_init.device, "device", f"returned samples on {out.device} {where}")
    contract.require(bool(torch.isfinite(out).all()), "finite", f"returned NaN or inf samples {where}")
    contract.passed("finite")

    again = _sample(contract, model, x_init, seed, 2, where, second)
    contract.require(torch.equal(out, again), "determinism",
                     f"the same generator seed gave different samples {where}: the sampler ignores its generator "
                     "(it draws from torch's global RNG or another source); draw every random number with `generator`")
    if stochastic:
        other = _sample(contract, model, x_init, seed + 1, 1, where)
        contract.require(not torch.equal(out, other), "determinism",
                         f"different generator seeds gave identical samples {where}: the sampler ignores its generator "
                         "(pass stochastic=False for a deterministic sampler)")
    contract.passed("determinism")
    _check_callback(contract, first, x_init, where)


def _check_callback(contract: Contract, recorder: _Recorder, x_init: torch.Tensor, where: str) -> None:
    rule = "callback"
    contract.require(bool(recorder.infos), rule, f"never called the callback {where}")
    previous = -1
    for info in recorder.infos:
        missing = [f for f in CALLBACK_FIELDS if not hasattr(info, f)]
        contract.require(not missing, rule, f"passed the callback a {type(info).__name__} without the fields {missing} "
                         f"{where}; use scorekit.samplers.SamplerStep")
        step = info.step
        contract.require(isinstance(step, int) and not isinstance(step, bool) and step > previous, rule,
                         f"passed step={step!r} after step {previous} {where}; steps are integers counting up from 0")
        previous = step
        x = info.x
        contract.require(isinstance(x, torch.Tensor) and x.shape == x_init.shape, rule,
                         f"passed x of shape {tuple(getattr(x, 'shape', ()))} to the callback {where}; "
                         f"expected the current samples, shaped like x_init")
    contract.passed(rule)


def _check_moves_to_target(contract: Contract, model: ScoreModel, shape: tuple[int, ...], seed: int) -> None:
    rule = "moves_to_target"
    x_init = torch.full((TARGET_CHAINS, *shape), TARGET_START)
    with contract.calling(rule, f"sampling N(0, I) from {TARGET_START:g}"):
        out = model.sample(x_init, generator=generator(x_init.device, seed + 3))
    mean = float(out.mean())
    limit = TARGET_MAX_FRACTION * TARGET_START
    contract.require(abs(mean) <= limit, rule,
                     f"chains started at {TARGET_START:g} on the exact score of N(0, I) ended with mean {mean:.3g}; "
                     f"expected within {limit:g} of 0. If the sampler is right but slow, give it more steps or a larger "
                     "step size through `options`, or (annealed samplers) a largest sigma of the order of 10")
    contract.passed(rule)


def _check_initial_noise(contract: Contract, model: ScoreModel, shape: tuple[int, ...], seed: int) -> None:
    rule = "initial_noise"
    if not callable(getattr(model.sampler, "initial_noise", None)):
        contract.skipped(rule, "the sampler has no initial_noise; model.initial_noise uses its init_range or "
                               "N(0, sigma_1^2 I)")
        return
    like = torch.zeros((3, *shape), dtype=torch.float64)
    with contract.calling(rule, "drawing initial noise"):  # as the model calls it: with sigmas= if it takes them
        a = model.initial_noise(like, generator(like.device, seed))
        b = model.initial_noise(like, generator(like.device, seed))
    contract.require(isinstance(a, torch.Tensor) and a.shape == like.shape and a.dtype == like.dtype, rule,
                     f"initial_noise returned {tuple(getattr(a, 'shape', ()))} {getattr(a, 'dtype', type(a).__name__)} "
                     f"for `like` of shape {tuple(like.shape)} {like.dtype}")
    contract.require(bool(torch.isfinite(a).all()), rule, "initial_noise returned NaN or inf")
    contract.require(torch.equal(a, b), rule, "initial_noise gave different noise for the same generator seed")
    contract.passed(rule)


def _check_inpaint(contract: Contract, model: ScoreModel, shape: tuple[int, ...], seed: int) -> None:
    rule = "inpaint"
    if getattr(model.sampler, "inpaint", None) is None:
        contract.skipped(rule, "the sampler has no inpaint")
        return
    y = torch.randn((4, *shape), generator=torch.Generator().manual_seed(seed + 4))
    mask = torch.rand(y.shape, generator=torch.Generator().manual_seed(seed + 5)) < 0.5
    with contract.calling(rule, "inpainting"):
        out = model.inpaint(y, mask, generator=generator(y.device, seed + 6))
    contract.require(isinstance(out, torch.Tensor) and out.shape == y.shape, rule,
                     f"inpaint returned shape {tuple(getattr(out, 'shape', ()))} for y of shape {tuple(y.shape)}")
    contract.require(torch.equal(out[mask], y[mask]), rule, "inpaint changed known entries (where mask is 1); "
                     "they must come back equal to y, bit for bit")
    contract.require(bool(torch.isfinite(out).all()), rule, "inpaint returned NaN or inf")
    contract.passed(rule)
