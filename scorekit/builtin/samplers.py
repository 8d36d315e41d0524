"""The built-in samplers, registered through the same hook as any plugin's."""

from __future__ import annotations

from scorekit.hookspecs import Register, hookimpl
from scorekit.samplers import HMC, AnnealedLangevin, Langevin


@hookimpl
def register_samplers(register: Register) -> None:
    register("langevin", Langevin)
    register("annealed_langevin", AnnealedLangevin)
    register("hmc", HMC)
