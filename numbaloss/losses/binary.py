r"""Binary losses: ``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``.

Both are elementwise losses: their scalar formulas below, registered once with
the elementwise template (:mod:`numbaloss.core.elementwise`), which makes their
CPU and CUDA kernels.  Formulas take ``(x, t, p, k)``: input, target,
``pos_weight`` (1 when absent) and the scalar option (unused here).
"""

import numpy as np

from ..core import elementwise
from ..core import vmath as vm
from ..core.registry import run
from ..core.jit import scalar

#: torch clamps each log at -100 so that input 0 or 1 gives a finite loss of 100.
LOG_CLAMP = -100.0
#: torch's floor on ``x (1 - x)`` in the BCE gradient; torch declares it as a
#: C++ ``float``, so float64 inputs see float32(1e-12) too.
GRAD_EPS = float(np.float32(1e-12))


@scalar
def bce_value(x, t, p, k):
    """``-(t * max(log x, -100) + (1 - t) * max(log(1 - x), -100))``, as torch computes it."""
    one = vm.like(1.0, x)
    clamp = vm.like(LOG_CLAMP, x)
    return (t - one) * max(vm.log1p(-x), clamp) - t * max(vm.log(x), clamp)


@scalar
def bce_grad(x, t, p, k):
    """``(x - t) / max(x (1 - x), 1e-12)``: finite at x = 0 and x = 1, as in torch."""
    return (x - t) / max((vm.like(1.0, x) - x) * x, vm.like(GRAD_EPS, x))


@scalar
def _softplus_parts(x):
    """``(log(1 + e), 1 / (1 + e), e)`` with ``e = exp(-|x|) <= 1``: never overflows."""
    e = vm.exp(-abs(x))
    return vm.log1p_unit(e), vm.like(1.0, x) / (vm.like(1.0, x) + e), e


@scalar
def bce_logits_value(x, t, pw, k):
    """``(1 - t) x - (1 + (pw - 1) t) log_sigmoid(x)``, rearranged without cancellation.

    With ``L = log(1 + exp(-|x|))`` and ``l_p = 1 + (pw - 1) t`` this equals
    ``(1 - t) max(x, 0) - pw t min(x, 0) + l_p L``: non-negative terms for
    ``t`` in [0, 1].  torch's form subtracts two terms of size ``|x|`` and loses
    up to ``ulp(|x|)``, e.g. 1e-4 relative at x = -6 in float32.
    """
    one = vm.like(1.0, x)
    zero = vm.like(0.0, x)
    big, _, _ = _softplus_parts(x)
    pos = x if x > zero else zero
    neg = x - pos  # min(x, 0); NaN stays NaN
    return (one - t) * pos - pw * t * neg + (one + (pw - one) * t) * big


@scalar
def bce_logits_grad(x, t, pw, k):
    """``(pw t + 1 - t) sigmoid(x) - pw t``, computed as ``(1 - t) sigmoid(x) - pw t sigmoid(-x)``.

    Both sigmoids come from one ``exp(-|x|)``, so neither is ``1 - (something
    close to 1)``.
    """
    one = vm.like(1.0, x)
    _, inv, e = _softplus_parts(x)
    s_abs = inv  # sigmoid(|x|)
    s_neg_abs = e * inv  # sigmoid(-|x|)
    sig = s_abs if x >= vm.like(0.0, x) else s_neg_abs
    sig_neg = s_neg_abs if x >= vm.like(0.0, x) else s_abs
    return (one - t) * sig - pw * t * sig_neg


@scalar
def in_unit_interval(x, t, p, k):
    """BCE's domain: ``0 <= x <= 1`` (NaN is outside, as in torch)."""
    return (x >= 0) & (x <= 1)


@elementwise.register(
    module="BCELoss",
    value=bce_value,
    grad=bce_grad,
    check=in_unit_interval,
    check_error="all elements of input should be between 0 and 1",
    scale="weight",
)
def binary_cross_entropy(input, target, weight=None, reduction="mean", *, return_grad=False, grad_output=None):
    r"""Binary cross-entropy between probabilities ``input`` and ``target``.

    Same semantics as ``torch.nn.functional.binary_cross_entropy``:

    .. math::
        \ell = -w\,[\,t \max(\log x, -100) + (1 - t) \max(\log(1 - x), -100)\,],
        \qquad
        \frac{\partial \ell}{\partial x} = w\,\frac{x - t}{\max(x (1 - x), 10^{-12})}

    ``input`` must lie in ``[0, 1]`` (else ValueError, NaN included, as torch);
    ``target`` has the input's shape and is cast to its dtype; ``weight``
    broadcasts to the input.  ``mean`` divides by the number of elements.

    Example:
        >>> import numpy as np, numbaloss
        >>> p = np.array([0.9, 0.2, 1.0]); y = np.array([1.0, 0.0, 0.0])
        >>> numbaloss.binary_cross_entropy(p, y, reduction="none").round(4)
        array([  0.1054,   0.2231, 100.    ])
    """
    return run(binary_cross_entropy.spec, (input, target), {"weight": weight}, reduction, return_grad, grad_output)


@elementwise.register(
    module="BCEWithLogitsLoss", value=bce_logits_value, grad=bce_logits_grad, scale="weight", param="pos_weight"
)
def binary_cross_entropy_with_logits(
    input, target, weight=None, reduction="mean", pos_weight=None, *, return_grad=False, grad_output=None
):
    r"""Binary cross-entropy on logits, numerically stable for any ``|x|``.

    Same semantics as ``torch.nn.functional.binary_cross_entropy_with_logits``.
    With :math:`\log\sigma(x) = \min(x, 0) - \log(1 + e^{-|x|})` and
    :math:`l_p = 1 + (p - 1)\,t` for ``pos_weight`` :math:`p`:

    .. math::
        \ell = w\,[\,(1 - t)\,x - l_p \log\sigma(x)\,],
        \qquad
        \frac{\partial \ell}{\partial x} = w\,[\,(p t + 1 - t)\,\sigma(x) - p t\,]

    ``weight`` and ``pos_weight`` broadcast to the input (``pos_weight`` of shape
    ``(C,)`` along the last dimension).  ``mean`` divides by the number of elements.

    Example:
        >>> import numpy as np, numbaloss
        >>> x = np.array([3.0, -1.0, 1e4]); y = np.array([1.0, 0.0, 0.0])
        >>> numbaloss.binary_cross_entropy_with_logits(x, y, reduction="none").round(4)
        array([4.860e-02, 3.133e-01, 1.000e+04])
    """
    return run(
        binary_cross_entropy_with_logits.spec,
        (input, target),
        {"weight": weight, "pos_weight": pos_weight},
        reduction,
        return_grad,
        grad_output,
    )
