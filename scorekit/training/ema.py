"""An exponential moving average of a module's parameters (NCSNv2, section 3.4 of Song & Ermon 2020)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn


class EMA:
    """``shadow <- decay * shadow + (1 - decay) * param`` after every optimiser step.

    With ``warmup`` the decay of update ``n`` (from 0) is ``min(decay, (1 + n) / (10 + n))``
    (TensorFlow's ``num_updates`` rule): early averages forget the random initial weights
    quickly, so a long-memory decay such as 0.999 can be used in a short run.

    The shadow starts as a copy of the module's parameters and is keyed by parameter
    name (the names of ``module.state_dict()``), so :meth:`state_dict` merged into the
    module's own state dict gives a complete set of EMA weights. Buffers are not
    averaged: :meth:`apply` and :meth:`copy_to` leave them as the module has them.
    """

    def __init__(self, module: nn.Module, decay: float, *, warmup: bool = False) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.warmup = warmup
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad
        }
        if not self.shadow:
            raise ValueError(
                "EMA: the module has no trainable parameters yet; size a lazy network "
                "(one forward, e.g. model.loss(x)) before creating the EMA"
            )

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the shadow towards the module's current parameters."""
        params = dict(module.named_parameters())
        decay = self.current_decay()
        # one multi-tensor kernel: shadow + (1 - decay) * (param - shadow)
        torch._foreach_lerp_(list(self.shadow.values()), [params[name].detach() for name in self.shadow], 1.0 - decay)
        self.num_updates += 1

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite the module's parameters with the EMA weights."""
        params = dict(module.named_parameters())
        for name, shadow in self.shadow.items():
            params[name].copy_(shadow)

    @contextmanager
    def apply(self, module: nn.Module) -> Iterator[nn.Module]:
        """Within the block the module carries the EMA weights; its own weights come back afterwards."""
        params = dict(module.named_parameters())
        saved = {name: params[name].detach().clone() for name in self.shadow}
        self.copy_to(module)
        try:
            yield module
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    params[name].copy_(value)

    def weights(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """A complete state dict of ``module`` with the EMA values in place of its parameters."""
        state = dict(module.state_dict())
        state.update({name: shadow.clone() for name, shadow in self.shadow.items()})
        return state

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "shadow": dict(self.shadow)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        unexpected = set(state["shadow"]) - set(self.shadow)
        if missing or unexpected:
            raise ValueError(
                f"EMA state does not match the module: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
        self.decay = float(state["decay"])
        self.warmup = bool(state.get("warmup", False))
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
