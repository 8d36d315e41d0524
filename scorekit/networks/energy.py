"""Energy networks: a score as the negative gradient of a learned energy.

"Our approach can be used to train energy-based models by using the gradient of an
energy-based model as the score model" (Song & Ermon 2019, section 6). Exposing
``energy(x, sigma)`` is what lets HMC apply a Metropolis correction.
"""

from __future__ import annotations

import torch
from torch import nn

from scorekit.networks.mlp import MLP


class EnergyScoreNetwork(nn.Module):
    """Wraps ``energy_net(x, sigma) -> [B]`` as ``score(x, sigma) = -dE/dx``.

    Works under every estimator: the score is differentiable in the parameters and
    composes with forward-mode AD; under ``torch.no_grad()`` (sampling) no graph is kept.
    """

    def __init__(self, energy_net: nn.Module) -> None:
        super().__init__()
        self.energy_net = energy_net

    def energy(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        """Per-example energy ``E(x, sigma)``, shape ``[B]``."""
        e = self.energy_net(x, sigma)
        return e.reshape(x.shape[0])

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        # torch.func.grad composes with jvp/vmap (forward-mode SSM, exact SM) and with
        # ordinary autograd (DSM training), and keeps no graph under torch.no_grad()
        return -torch.func.grad(lambda inp: self.energy(inp, sigma).sum())(x)


class EnergyMLP(nn.Module):
    """An MLP energy ``E(x, sigma) -> [B]``: the :class:`MLP` body with a scalar head."""

    def __init__(self, *, dim: int, hidden: int = 128, depth: int = 3, activation: str = "softplus",
                 sigmas: torch.Tensor | None = None) -> None:
        super().__init__()
        self.features = MLP(dim=dim, hidden=hidden, depth=depth, activation=activation, sigmas=sigmas, sigma_scaling=False)
        self.head = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return self.head(self.features(x, sigma).flatten(1)).squeeze(1)


def energy_mlp(*, dim: int, hidden: int = 128, depth: int = 3, activation: str = "softplus",
               sigmas: torch.Tensor | None = None) -> EnergyScoreNetwork:
    """Factory of the ``energy_mlp`` network: an :class:`EnergyMLP` seen through its score."""
    return EnergyScoreNetwork(EnergyMLP(dim=dim, hidden=hidden, depth=depth, activation=activation, sigmas=sigmas))
