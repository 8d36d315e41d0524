"""The contract of a score network: ``network(x, sigma) -> tensor shaped like x``."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

import scorekit
from scorekit.plugins import PluginHost
from scorekit.testing.contract import Contract, ContractReport, devices, isolated_rng, label, resolve
from scorekit.testing.options_contract import check_options

#: per-example data shapes checked by default: 2-D vectors and 1x8x8 images
DEFAULT_SHAPES: tuple[tuple[int, ...], ...] = ((2,), (1, 8, 8))
#: the paper's ten noise levels from 1 to 0.01
DEFAULT_SIGMAS: tuple[float, ...] = tuple(torch.logspace(0, -2, 10, dtype=torch.float64).tolist())

#: rtol, atol of "the same computation batched and alone", by dtype (float64 leaves only reordering error)
BATCH_TOLERANCE = {torch.float64: (1e-7, 1e-9), torch.float32: (1e-4, 1e-5), torch.float16: (1e-2, 1e-3), torch.bfloat16: (5e-2, 1e-2)}


def check_network(
    network: str | Callable[..., nn.Module],
    *,
    options: Mapping[str, Any] | None = None,
    shapes: Sequence[tuple[int, ...]] = DEFAULT_SHAPES,
    sigmas: Sequence[float] | torch.Tensor | None = DEFAULT_SIGMAS,
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
    batch_size: int = 3,
    seed: int = 0,
    host: PluginHost | None = None,
) -> ContractReport:
    """Check that a network keeps the score-network contract; raise :class:`ContractViolation` if not.

    ``network`` is a registered name (looked up on ``host``, default the process-wide one)
    or a factory. It is built by ``compose()`` with ``options`` and ``sigmas`` (``None``
    for an unconditional network), afresh for every per-example shape in ``shapes``
    (leave out ranks the network does not support, e.g. ``shapes=((3, 32, 32),)``), and
    checked in eval mode. Rules:

    - ``builds``: ``compose()`` builds it from the options.
    - ``runs``: it runs on standard normal input of every shape without raising.
    - ``shape``: the output is shaped like the input, for every shape.
    - ``finite``: outputs are finite on standard normal inputs.
    - ``determinism``: the same input gives bit-identical outputs twice.
    - ``input_unchanged``: ``x`` and ``sigma`` are not modified in place.
    - ``trainable``: the output carries gradients to the parameters.
    - ``dtype``: the output has the input's dtype, for every dtype in ``dtypes``.
    - ``per_example_sigma``: a batch whose examples have different sigmas gives each
      example the output it gets alone (no mixing across the batch, no ``sigma[0]``).
    - ``energy``: a network with ``energy(x, sigma)`` returns ``[B]`` energies whose negative
      gradient is its score.
    - ``device``: the output is on the input's device (CUDA, when available).
    - ``options``: an unknown option raises OptionError naming it.
    """
    name, host = resolve("network", network, host)
    contract = Contract(label("network", name))
    options = dict(options or {})
    levels = None if sigmas is None else [float(s) for s in torch.as_tensor(sigmas).tolist()]

    def build(opts: dict[str, Any]) -> nn.Module:
        return scorekit.compose(
            network=name, estimator=None, sampler=None, sigmas=levels, network_options=opts, host=host
        ).network

    with isolated_rng(seed):
        for shape in shapes:
            with contract.calling("builds", f"being built with options {options}"):
                net = build(options).eval()
            contract.passed("builds")
            _check_shape(contract, net, tuple(shape), levels, dtypes, batch_size, seed)
        check_options(contract, host.get("network", name).factory, options, build)
    return contract.report()


def _inputs(shape: tuple[int, ...], levels: list[float] | None, batch: int, seed: int,
            dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Standard normal ``x`` and one sigma per example, spread over the levels (largest to smallest)."""
    x = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    sigma = None
    if levels is not None:
        idx = torch.linspace(0, len(levels) - 1, batch).round().long()
        sigma = torch.tensor(levels, dtype=torch.float64)[idx]
        sigma = sigma.to(device=device, dtype=dtype)
    return x.to(device=device, dtype=dtype), sigma


def _check_shape(contract: Contract, net: nn.Module, shape: tuple[int, ...], levels: list[float] | None,
                 dtypes: Sequence[torch.dtype], batch: int, seed: int) -> None:
    where = f"for examples of shape {shape}"
    x, sigma = _inputs(shape, levels, batch, seed, dtypes[0], torch.device("cpu"))
    with contract.calling("runs", f"called {where}"), torch.no_grad():
        net.to(dtypes[0])(x[:1], None if sigma is None else sigma[:1])  # sizes a lazily built network
    net.eval()  # again: layers built by that first call start in training mode
    for i, dtype in enumerate(dtypes):
        x, sigma = _inputs(shape, levels, batch, seed, dtype, torch.device("cpu"))
        with contract.calling("dtype" if i else "runs", f"converted to {dtype} and called {where}"):
            net.to(dtype)
            out = _forward(contract, net, x, sigma, where)
        contract.passed("runs")
        contract.require(out.dtype == x.dtype, "dtype", f"returned {out.dtype} for {x.dtype} input {where}")
        contract.passed("dtype")
    _check_per_example_sigma(contract, net, shape, levels, dtypes, batch, seed)
    _check_energy(contract, net, shape, levels, dtypes, batch, seed)
    _check_devices(contract, net, shape, levels, dtypes[0], batch, seed)


def _forward(contract: Contract, net: nn.Module, x: torch.Tensor, sigma: torch.Tensor | None, where: str) -> torch.Tensor:
    """One call with the per-call rules: shape, finite, determinism, input_unchanged, trainable."""
    x_before = x.clone()
    sigma_before = None if sigma is None else sigma.clone()
    with torch.enable_grad():
        out = net(x, sigma)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    contract.require(isinstance(out, torch.Tensor) and out.shape == x.shape, "shape",
                     f"returned shape {got} for input of shape {tuple(x.shape)} {where}; the output must be shaped like x")
    contract.passed("shape")
    contract.require(bool(torch.isfinite(out).all()), "finite", f"returned NaN or inf on standard normal input {where}")
    contract.passed("finite")
    unchanged = torch.equal(x, x_before) and (sigma is None or torch.equal(sigma, sigma_before))
    contract.require(unchanged, "input_unchanged", f"modified x or sigma in place {where}")
    contract.passed("input_unchanged")
    with torch.enable_grad():
        again = net(x, sigma)
    contract.require(torch.equal(out, again), "determinism",
                     f"gave different outputs for the same input and weights {where} (check for dropout or randomness "
                     "in eval mode)")
    contract.passed("determinism")
    if any(p.requires_grad for p in net.parameters()):
        contract.require(out.requires_grad, "trainable",
                         f"output carries no gradient to the parameters {where} (detached, or computed under no_grad)")
        contract.passed("trainable")
    return out.detach()


def _check_per_example_sigma(contract: Contract, net: nn.Module, shape: tuple[int, ...], levels: list[float] | None,
                             dtypes: Sequence[torch.dtype], batch: int, seed: int) -> None:
    rule = "per_example_sigma"
    if levels is None or len(levels) < 2 or batch < 2:
        contract.skipped(rule, "needs at least two sigmas and two examples")
        return
    dtype = torch.float64 if torch.float64 in dtypes else dtypes[0]
    rtol, atol = BATCH_TOLERANCE.get(dtype, (1e-2, 1e-3))
    x, sigma = _inputs(shape, levels, batch, seed, dtype, torch.device("cpu"))
    assert sigma is not None
    net.to(dtype)
    with torch.no_grad():
        together = net(x, sigma)
        for i in range(batch):
            alone = net(x[i : i + 1], sigma[i : i + 1])
            contract.require(
                torch.allclose(together[i : i + 1], alone, rtol=rtol, atol=atol), rule,
                f"example {i} (sigma {float(sigma[i]):.4g}) got a different output in a batch with sigmas "
                f"{[round(float(s), 4) for s in sigma]} than alone, for shape {shape}: the network mixes examples "
                "or uses one sigma for the whole batch",
            )
    contract.passed(rule)


def _check_energy(contract: Contract, net: nn.Module, shape: tuple[int, ...], levels: list[float] | None,
                  dtypes: Sequence[torch.dtype], batch: int, seed: int) -> None:
    rule = "energy"
    if not callable(getattr(net, "energy", None)):
        contract.skipped(rule, "the network has no energy(x, sigma)")
        return
    dtype = torch.float64 if torch.float64 in dtypes else dtypes[0]
    rtol, atol = BATCH_TOLERANCE.get(dtype, (1e-2, 1e-3))
    x, sigma = _inputs(shape, levels, batch, seed, dtype, torch.device("cpu"))
    net.to(dtype)
    with contract.calling(rule, f"computing energy(x, sigma) for shape {shape}"), torch.enable_grad():
        x = x.requires_grad_(True)
        energy = net.energy(x, sigma)
        contract.require(energy.shape == x.shape[:1], rule,
                         f"energy returned shape {tuple(energy.shape)}; expected one energy per example, {tuple(x.shape[:1])}")
        (grad,) = torch.autograd.grad(energy.sum(), x)
        score = net(x, sigma)
    contract.require(torch.allclose(score, -grad, rtol=rtol, atol=atol), rule,
                     f"the score is not the negative gradient of energy(x, sigma) for shape {shape}")
    contract.passed(rule)


def _check_devices(contract: Contract, net: nn.Module, shape: tuple[int, ...], levels: list[float] | None,
                   dtype: torch.dtype, batch: int, seed: int) -> None:
    others = [d for d in devices() if d.type != "cpu"]
    if not others:
        contract.skipped("device", "no accelerator available; only the CPU was checked")
        return
    for device in others:
        x, sigma = _inputs(shape, levels, batch, seed, dtype, device)
        with contract.calling("device", f"moved to {device} and called for shape {shape}"):
            net.to(device=device, dtype=dtype)
            out = _forward(contract, net, x, sigma, f"on {device} for shape {shape}")
        contract.require(out.device == x.device, "device", f"returned a tensor on {out.device} for input on {x.device}")
    net.to("cpu")
    contract.passed("device")
