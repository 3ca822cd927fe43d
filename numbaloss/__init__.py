"""numbaloss: PyTorch's loss functions on NumPy (and CUDA) arrays, values and gradients, compiled with Numba."""

from . import modules
from .core.registry import REGISTRY
from .losses import *  # noqa: F403
from .losses import __all__ as _functions
from .modules import *  # noqa: F403

__version__ = "0.1.0"

__all__ = list(_functions) + list(modules.__all__)
