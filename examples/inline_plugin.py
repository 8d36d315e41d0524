"""Register a component in the running process and compose with it by name.

A plugin is any object with ``@scorekit.hookimpl`` functions: no package, no entry point.
Here it adds a network, the exact score of N(0, I), and Langevin dynamics samples from it.
Run: python examples/inline_plugin.py
"""

import torch
from torch import nn

import scorekit


class StandardGaussianScore(nn.Module):
    """s(x) = -x: the score of N(0, I) (an unconditional network: it ignores sigma)."""

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None) -> torch.Tensor:
        return -x


class MyPlugin:
    @scorekit.hookimpl
    def register_networks(self, register):
        register("standard_gaussian", StandardGaussianScore)


scorekit.register_plugin(MyPlugin(), name="my_plugin")
model = scorekit.compose(network="standard_gaussian", estimator=None, sampler="langevin", sigmas=None,
                         sampler_options={"step_size": 0.1, "n_steps": 500})
owner = scorekit.get_host().get("network", "standard_gaussian").owner
print(f"network 'standard_gaussian' registered by {owner!r}: {model}")

x = model.sample(torch.full((2000, 2), 5.0), generator=torch.Generator().manual_seed(0))
mean, std = x.mean(0).tolist(), x.std(0).tolist()
print(f"2000 Langevin chains from (5, 5): mean ({mean[0]:.3f}, {mean[1]:.3f}), std ({std[0]:.3f}, {std[1]:.3f})")
print("target N(0, I): mean (0, 0), std (1, 1); Langevin with step 0.1 inflates the std by about 1.3%")
