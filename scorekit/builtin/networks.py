"""Registers scorekit's built-in networks."""

from scorekit.hookspecs import Register, hookimpl
from scorekit.networks.energy import energy_mlp
from scorekit.networks.mlp import MLP


@hookimpl
def register_networks(register: Register) -> None:
    register("mlp", MLP)
    register("energy_mlp", energy_mlp)
