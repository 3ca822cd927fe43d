"""numbaloss: PyTorch's loss functions on NumPy (and CUDA) arrays, values and gradients, compiled with Numba."""

from ._binary import binary_cross_entropy, binary_cross_entropy_with_logits
from ._classification import cross_entropy, nll_loss
from .modules import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, NLLLoss

__version__ = "0.1.0"

__all__ = [
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "CrossEntropyLoss",
    "NLLLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
]
