r"""``kl_div``: the Kullback-Leibler divergence loss, elementwise.

Its formulas ``(x, t, p, k)`` for the two target conventions (probabilities or
log-probabilities, picked by ``log_target``) and one registration with the
elementwise template (:mod:`numbaloss.core.elementwise`).
"""

import warnings

from ..core import elementwise
from ..core import vmath as vm
from ..core.jit import scalar
from ..core.registry import run


@scalar
def kl_value(x, t, p, k):
    """``t log t - t x`` with ``0 log 0 = 0`` (torch's ``xlogy(t, t) - t x``)."""
    zero = vm.like(0.0, x)
    tlogt = zero if t == zero else t * vm.log(t)
    return tlogt - t * x


@scalar
def kl_grad(x, t, p, k):
    """``-t``."""
    return -t


@scalar
def kl_log_value(x, t, p, k):
    """``exp(t) (t - x)`` (``log_target=True``)."""
    return vm.exp(t) * (t - x)


@scalar
def kl_log_grad(x, t, p, k):
    """``-exp(t)``."""
    return -vm.exp(t)


def _mean_warning(options, reduction):
    if reduction == "mean":
        warnings.warn(
            "reduction: 'mean' divides the total loss by both the batch size and the support size."
            "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
            "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
            UserWarning,
            stacklevel=5,  # here < run_cpu < registry.run < kl_div < its caller
        )


@elementwise.register(
    module="KLDivLoss",
    switches=("log_target",),
    variants={(False,): (kl_value, kl_grad), (True,): (kl_log_value, kl_log_grad)},
    broadcast="both",
    precheck=_mean_warning,
    reductions=("none", "mean", "sum", "batchmean"),
)
def kl_div(input, target, reduction="mean", log_target=False, *, return_grad=False, grad_output=None):
    r"""KL divergence loss with log-probability ``input``, as ``torch.nn.functional.kl_div``.

    .. math::
        \ell = t\,(\log t - x) \;\; (0 \text{ where } t = 0), \qquad \frac{\partial \ell}{\partial x} = -t

    or with ``log_target=True``: :math:`\ell = e^t (t - x)`, gradient :math:`-e^t`.
    ``"batchmean"`` divides the sum by ``input.shape[0]`` (the KL divergence per
    sample; the plain sum for a 0-d input); ``"mean"`` divides by the number of
    elements and warns, as torch does.

    Example:
        >>> import numpy as np, numbaloss
        >>> logq = np.log(np.array([[0.5, 0.5]])); p = np.array([[0.9, 0.1]])
        >>> round(float(numbaloss.kl_div(logq, p, reduction="batchmean")), 4)
        0.3681
    """
    return run(kl_div.spec, (input, target), {"log_target": log_target}, reduction, return_grad, grad_output)
