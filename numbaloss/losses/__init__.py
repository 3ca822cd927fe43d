"""The loss families: each module (or package) holds one family's formulas, kernels and public
functions, imports only :mod:`numbaloss.core`, and registers its losses on import."""

from .binary import binary_cross_entropy, binary_cross_entropy_with_logits
from .classification import cross_entropy, nll_loss
from .ctc import ctc_loss
from .divergence import kl_div
from .embedding import cosine_embedding_loss, triplet_margin_loss, triplet_margin_with_distance_loss
from .multiclass import multi_margin_loss
from .multilabel import multilabel_margin_loss, multilabel_soft_margin_loss
from .margin import hinge_embedding_loss, margin_ranking_loss, soft_margin_loss
from .regression import gaussian_nll_loss, huber_loss, l1_loss, mse_loss, poisson_nll_loss, smooth_l1_loss

__all__ = [
    "cross_entropy",
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "l1_loss",
    "mse_loss",
    "smooth_l1_loss",
    "huber_loss",
    "soft_margin_loss",
    "kl_div",
    "poisson_nll_loss",
    "hinge_embedding_loss",
    "gaussian_nll_loss",
    "margin_ranking_loss",
    "multilabel_soft_margin_loss",
    "cosine_embedding_loss",
    "multi_margin_loss",
    "triplet_margin_loss",
    "multilabel_margin_loss",
    "triplet_margin_with_distance_loss",
    "ctc_loss",
]
