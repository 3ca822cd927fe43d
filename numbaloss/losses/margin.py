r"""Margin losses on a ±1 target: ``soft_margin_loss`` and ``hinge_embedding_loss``.

Elementwise losses: scalar formulas ``(x, t, p, k)`` (``k`` the ``margin``) and one
registration each with the elementwise template (:mod:`numbaloss.core.elementwise`).
"""

from ..core import elementwise
from ..core import vmath as vm
from ..core.jit import scalar
from ..core.registry import run


@scalar
def soft_margin_value(x, t, p, k):
    """``log(1 + exp(-t x))`` as ``max(z, 0) + log1p(exp(-|z|))``, ``z = -t x``: finite for any ``z``."""
    z = -t * x
    zero = vm.like(0.0, x)
    pos = z if z > zero else zero
    return pos + vm.log1p(vm.exp(-abs(z)))


@scalar
def soft_margin_grad(x, t, p, k):
    """``-t sigmoid(-t x)``, the sigmoid from one ``exp(-|z|)`` (no overflow)."""
    z = -t * x
    one = vm.like(1.0, x)
    e = vm.exp(-abs(z))
    inv = one / (one + e)
    sig = inv if z >= vm.like(0.0, x) else e * inv
    return -t * sig


@scalar
def hinge_value(x, t, p, k):
    """``x [t != -1] + max(0, margin - x) [t != 1]`` (NaN propagates through the max, as torch's clamp)."""
    zero = vm.like(0.0, x)
    one = vm.like(1.0, x)
    v = vm.like(k, x) - x
    clamp = zero if v < zero else v
    return (x if t != -one else zero) + (clamp if t != one else zero)


@scalar
def hinge_grad(x, t, p, k):
    """``[t != -1] - [t != 1][margin - x >= 0]``: the clamp passes its gradient at the tie, as torch."""
    zero = vm.like(0.0, x)
    one = vm.like(1.0, x)
    v = vm.like(k, x) - x
    return (one if t != -one else zero) - (one if (t != one) & (v >= zero) else zero)


@elementwise.register(module="SoftMarginLoss", value=soft_margin_value, grad=soft_margin_grad, broadcast="target")
def soft_margin_loss(input, target, reduction="mean", *, return_grad=False, grad_output=None):
    r"""Two-class logistic loss, as ``torch.nn.functional.soft_margin_loss``.

    .. math::
        \ell = \log(1 + e^{-t x}), \qquad \frac{\partial \ell}{\partial x} = -t\,\sigma(-t x)

    ``target`` (usually ±1) broadcasts to the input's shape.  Computed without
    overflow: where torch's float32 gives ``inf`` (``t x`` below about -88) this
    gives the finite value.

    Example:
        >>> import numpy as np, numbaloss
        >>> numbaloss.soft_margin_loss(np.array([2.0, -1.0]), np.array([1.0, 1.0]), reduction="none").round(4)
        array([0.1269, 1.3133])
    """
    return run(soft_margin_loss.spec, (input, target), {}, reduction, return_grad, grad_output)


@elementwise.register(module="HingeEmbeddingLoss", value=hinge_value, grad=hinge_grad, option="margin", broadcast="both")
def hinge_embedding_loss(input, target, margin=1.0, reduction="mean", *, return_grad=False, grad_output=None):
    r"""Hinge embedding loss, as ``torch.nn.functional.hinge_embedding_loss``.

    .. math::
        \ell = x\,[t \ne -1] + \max(0, m - x)\,[t \ne 1], \qquad
        \frac{\partial \ell}{\partial x} = [t \ne -1] - [t \ne 1]\,[m - x \ge 0]

    for any target value (torch's definition; ±1 is the usual case).  At the tie
    ``x = margin`` the gradient passes through the clamp, as in torch.

    Example:
        >>> import numpy as np, numbaloss
        >>> numbaloss.hinge_embedding_loss(np.array([0.3, 0.3]), np.array([1.0, -1.0]), reduction="none")
        array([0.3, 0.7])
    """
    return run(hinge_embedding_loss.spec, (input, target), {"margin": margin}, reduction, return_grad, grad_output)
