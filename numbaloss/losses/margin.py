r"""Margin losses on a ±1 target: ``soft_margin_loss``, ``hinge_embedding_loss``, ``margin_ranking_loss``.

Elementwise losses: scalar formulas ``(x, t, p, k)`` (``k`` the ``margin``) and one
registration each with the elementwise template (:mod:`numbaloss.core.elementwise`).
``margin_ranking_loss`` reads its second input as the template's param ``p``,
with a gradient of its own.
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
    return pos + vm.log1p_unit(vm.exp(-abs(z)))


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


@scalar
def ranking_value(x, t, p, k):
    """``max(0, -t (x1 - x2) + margin)`` (``x = x1``, ``p = x2``; NaN propagates through the clamp, as torch)."""
    zero = vm.like(0.0, x)
    u = -t * (x - p) + vm.like(k, x)
    return zero if u < zero else u


@scalar
def _ranking_active(x, t, p, k):
    """1 where the clamp passes its gradient (``-t (x1 - x2) + margin >= 0``, the tie included), else 0."""
    u = -t * (x - p) + vm.like(k, x)
    return vm.like(1.0, x) if u >= vm.like(0.0, x) else vm.like(0.0, x)


@scalar
def ranking_grad1(x, t, p, k):
    """``-t [u >= 0]``."""
    return -t * _ranking_active(x, t, p, k)


@scalar
def ranking_grad2(x, t, p, k):
    """``t [u >= 0]``."""
    return t * _ranking_active(x, t, p, k)


def _same_ndim(input_shape, target_shape, input2_shape):
    """torch's check: the three arrays have the same number of dimensions (sizes then broadcast)."""
    if not len(input_shape) == len(input2_shape) == len(target_shape):
        raise ValueError(
            f"margin_ranking_loss : All input tensors should have same dimension but got sizes: input1: {input_shape}, "
            f"input2: {input2_shape}, target: {target_shape}"
        )
    return input2_shape


@elementwise.register(
    module="MarginRankingLoss",
    value=ranking_value,
    grad=ranking_grad1,
    param_grad=ranking_grad2,
    param="input2",
    roles=("input", "param", "target"),
    param_shape=_same_ndim,
    option="margin",
    broadcast="both",
    arrays=("input1", "input2", "target"),
    grads=("input1", "input2"),
)
def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean", *, return_grad=False, grad_output=None):
    r"""Margin ranking loss, as ``torch.nn.functional.margin_ranking_loss``.

    .. math::
        \ell = \max(0,\, -t\,(x_1 - x_2) + m), \qquad
        \frac{\partial \ell}{\partial x_1} = -t\,[u \ge 0], \quad
        \frac{\partial \ell}{\partial x_2} = t\,[u \ge 0]

    with :math:`u = -t (x_1 - x_2) + m`: at the tie ``u = 0`` the gradient passes
    through the clamp, as in torch.  The three arrays must have the same number of
    dimensions and broadcast together (each gradient is summed back to its
    array's shape).  ``return_grad=True`` gives ``(loss, (g_input1, g_input2))``.

    Example:
        >>> import numpy as np, numbaloss
        >>> numbaloss.margin_ranking_loss(np.array([1.0, 2.0]), np.array([2.0, 0.5]), np.array([1.0, 1.0]),
        ...                               margin=0.5, reduction="none")
        array([1.5, 0. ])
    """
    return run(margin_ranking_loss.spec, (input1, input2, target), {"margin": margin}, reduction, return_grad,
               grad_output)
