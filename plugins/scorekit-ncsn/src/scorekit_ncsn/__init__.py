"""NCSN (Song & Ermon 2019) noise-conditional RefineNet score network for scorekit."""

from .normalization import CondInstanceNormPlusPlus
from .refinenet import NCSN

__all__ = ["NCSN", "CondInstanceNormPlusPlus"]
