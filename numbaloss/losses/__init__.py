"""The loss families: each module (or package) holds one family's formulas, kernels and public
functions, imports only :mod:`numbaloss.core`, and registers its losses on import."""

from .binary import binary_cross_entropy, binary_cross_entropy_with_logits
from .classification import cross_entropy, nll_loss

__all__ = ["cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]
