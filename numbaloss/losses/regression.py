r"""Regression losses: ``l1_loss``, ``mse_loss``, ``smooth_l1_loss``, ``huber_loss``, ``poisson_nll_loss``,
``gaussian_nll_loss``.

Elementwise losses, each its scalar formulas and one registration with the
elementwise template (:mod:`numbaloss.core.elementwise`), which makes their CPU
and CUDA kernels.  Formulas take ``(x, t, p, k)``: input, target, an unused
parameter slot (1) and the scalar option ``k`` (``beta``, ``delta``, ``eps``).
As in torch, ``input`` and ``target`` broadcast against each other (torch warns
when their sizes differ, for the losses that warn); the input's gradient is
summed back to its own shape.  ``gaussian_nll_loss`` reads its ``var`` as the
template's param ``p``, with a gradient of its own.
"""

import math

from ..core import elementwise
from ..core import vmath as vm
from ..core.jit import scalar
from ..core.registry import run

# ------------------------------------------------------------------ formulas


@scalar
def _sign(d):
    """``sign(d)``, 0 at 0 and at NaN (torch's gradient of ``|d|`` at NaN is 0)."""
    one = vm.like(1.0, d)
    zero = vm.like(0.0, d)
    return one if d > zero else (-one if d < zero else zero)


@scalar
def l1_value(x, t, p, k):
    """``|x - t|``."""
    return abs(x - t)


@scalar
def l1_grad(x, t, p, k):
    """``sign(x - t)``."""
    return _sign(x - t)


@scalar
def mse_value(x, t, p, k):
    """``(x - t)^2``."""
    d = x - t
    return d * d


@scalar
def mse_grad(x, t, p, k):
    """``2 (x - t)``."""
    return vm.like(2.0, x) * (x - t)


@scalar
def smooth_l1_value(x, t, p, k):
    """``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta`` (``beta = k``; 0 gives ``|d|``)."""
    beta = vm.like(k, x)
    d = x - t
    a = abs(d)
    half = vm.like(0.5, x)
    return half * d * d / beta if a < beta else a - half * beta


@scalar
def smooth_l1_grad(x, t, p, k):
    """``-1`` below ``-beta``, ``1`` above ``beta``, else ``d / beta`` (NaN stays NaN, as torch);
    ``beta = 0`` is l1's ``sign(d)`` (0 at NaN)."""
    beta = vm.like(k, x)
    one = vm.like(1.0, x)
    d = x - t
    g = -one if d < -beta else (one if d > beta else d / beta)
    return _sign(d) if beta == vm.like(0.0, x) else g


@scalar
def huber_value(x, t, p, k):
    """``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)`` (``delta = k``)."""
    delta = vm.like(k, x)
    d = x - t
    a = abs(d)
    half = vm.like(0.5, x)
    return half * d * d if a < delta else delta * (a - half * delta)


@scalar
def huber_grad(x, t, p, k):
    """``-delta`` below ``-delta``, ``delta`` above it, else ``d`` (NaN stays NaN, as torch)."""
    delta = vm.like(k, x)
    d = x - t
    return -delta if d < -delta else (delta if d > delta else d)


@scalar
def _stirling(t):
    """``t log t - t + 0.5 log(2 pi t)`` where ``t > 1``, else 0 (torch's ``full=True`` term)."""
    zero = vm.like(0.0, t)
    s = t * vm.log(t) - t + vm.like(0.5, t) * vm.log(vm.like(2.0 * math.pi, t) * t)
    return s if t > vm.like(1.0, t) else zero


@scalar
def poisson_log_value(x, t, p, k):
    """``exp(x) - t x`` (``log_input=True``)."""
    return vm.exp(x) - t * x


@scalar
def poisson_log_grad(x, t, p, k):
    """``exp(x) - t``."""
    return vm.exp(x) - t


@scalar
def poisson_value(x, t, p, k):
    """``x - t log(x + eps)`` (``log_input=False``; ``eps = k``)."""
    return x - t * vm.log(x + vm.like(k, x))


@scalar
def poisson_grad(x, t, p, k):
    """``1 - t / (x + eps)``."""
    return vm.like(1.0, x) - t / (x + vm.like(k, x))


@scalar
def poisson_log_full_value(x, t, p, k):
    return poisson_log_value(x, t, p, k) + _stirling(t)


@scalar
def poisson_full_value(x, t, p, k):
    return poisson_value(x, t, p, k) + _stirling(t)


@scalar
def _clamped(v, k):
    """``max(var, eps)`` with NaN kept (torch's ``clamp_(min=eps)``)."""
    eps = vm.like(k, v)
    return eps if v < eps else v


# One explicit reciprocal r = 1 / v in every formula, not divisions by v: with the ``arcp`` flag LLVM
# turns divisions sharing a divisor into one reciprocal and products, and in the template's fused
# value-and-gradient loop the divisions of both formulas would share it, so the value would round
# differently with and without the gradient.  Written this way it is the same bits either way.
@scalar
def gaussian_value(x, t, p, k):
    """``0.5 (log v + (x - t)^2 / v)``, ``v = max(var, eps)`` (``p = var``, ``k = eps``)."""
    v = _clamped(p, k)
    r = vm.like(1.0, x) / v
    d = x - t
    return vm.like(0.5, x) * (vm.log(v) + d * d * r)


@scalar
def gaussian_full_value(x, t, p, k):
    """The value plus ``0.5 log(2 pi)`` (``full=True``)."""
    return gaussian_value(x, t, p, k) + vm.like(0.5 * math.log(2.0 * math.pi), x)


@scalar
def gaussian_grad(x, t, p, k):
    """``(x - t) / v``."""
    return (x - t) * (vm.like(1.0, x) / _clamped(p, k))


@scalar
def gaussian_var_grad(x, t, p, k):
    """``0.5 (1 / v - (x - t)^2 / v^2)`` at ``v = max(var, eps)``: torch clamps without tracking the
    clamp, so below ``eps`` this is the formula at ``eps``, not 0."""
    r = vm.like(1.0, x) / _clamped(p, k)
    q = (x - t) * r
    return vm.like(0.5, x) * (r - q * q)


@scalar
def var_not_negative(x, t, p, k):
    """``var >= 0`` (NaN passes, as in torch)."""
    return not p < vm.like(0.0, p)


def _var_shape(input_shape, target_shape, var_shape):
    """The shape ``var`` broadcasts as, by torch's rules: the input's shape; the input's less its last
    dimension (then per row: ``(N,)`` on ``(N, D)`` is ``(N, 1)``, even when ``N == D``); or the
    input's with exactly one dimension of size 1.  Anything else is torch's ValueError."""
    if var_shape == input_shape:
        return var_shape
    if input_shape[:-1] == var_shape:
        return var_shape + (1,)
    if len(var_shape) == len(input_shape) and sum(v for i, v in zip(input_shape, var_shape) if i != v) == 1:
        return var_shape
    raise ValueError(f"var is of incorrect size: var of shape {var_shape}, input of shape {input_shape}")


# ------------------------------------------------------------------ option checks
def _beta_check(options, reduction):
    if float(options["beta"]) < 0:
        raise ValueError("smooth_l1_loss does not support negative values for beta")


def _delta_check(options, reduction):
    if not float(options["delta"]) > 0:
        raise ValueError("huber_loss does not support non-positive values for delta")


# ------------------------------------------------------------------ losses
_PAIRWISE = dict(broadcast="both", warn_broadcast=True)
_WEIGHTED = dict(scale="weight", scale_shape="input")


@elementwise.register(module="L1Loss", value=l1_value, grad=l1_grad, weighted_mean=True, **_WEIGHTED, **_PAIRWISE)
def l1_loss(input, target, reduction="mean", weight=None, *, return_grad=False, grad_output=None):
    r"""Mean absolute error, as ``torch.nn.functional.l1_loss``.

    .. math::
        \ell = w\,|x - t|, \qquad \frac{\partial \ell}{\partial x} = w\,\mathrm{sign}(x - t)

    (0 at ``x = t`` and at NaN, as torch).  ``weight`` must have the input's shape;
    with it, ``"mean"`` is ``sum(w |x - t|) / sum(w)``.  ``target`` broadcasts with
    ``input`` (with torch's warning when their sizes differ).

    Example:
        >>> import numpy as np, numbaloss
        >>> numbaloss.l1_loss(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 2.0]))
        np.float64(0.8333333333333334)
    """
    return run(l1_loss.spec, (input, target), {"weight": weight}, reduction, return_grad, grad_output)


@elementwise.register(module="MSELoss", value=mse_value, grad=mse_grad, weighted_mean=True, **_WEIGHTED, **_PAIRWISE)
def mse_loss(input, target, reduction="mean", weight=None, *, return_grad=False, grad_output=None):
    r"""Mean squared error, as ``torch.nn.functional.mse_loss``.

    .. math::
        \ell = w\,(x - t)^2, \qquad \frac{\partial \ell}{\partial x} = 2 w\,(x - t)

    ``weight`` must have the input's shape; with it, ``"mean"`` is
    ``sum(w (x - t)^2) / sum(w)``.

    Example:
        >>> import numpy as np, numbaloss
        >>> numbaloss.mse_loss(np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 2.0]), reduction="sum")
        np.float64(4.25)
    """
    return run(mse_loss.spec, (input, target), {"weight": weight}, reduction, return_grad, grad_output)


@elementwise.register(module="SmoothL1Loss", value=smooth_l1_value, grad=smooth_l1_grad, option="beta",
                      precheck=_beta_check, **_PAIRWISE)
def smooth_l1_loss(input, target, reduction="mean", beta=1.0, *, return_grad=False, grad_output=None):
    r"""Smooth L1 loss, as ``torch.nn.functional.smooth_l1_loss``.  With :math:`d = x - t`:

    .. math::
        \ell = \begin{cases} 0.5\,d^2/\beta & |d| < \beta \\ |d| - 0.5\,\beta & \text{else} \end{cases},
        \qquad
        \frac{\partial \ell}{\partial x} = \begin{cases} d/\beta & |d| \le \beta \\ \mathrm{sign}(d) & \text{else} \end{cases}

    ``beta = 0`` is :func:`l1_loss` (gradient included); a negative ``beta`` raises ValueError.

    Example:
        >>> import numpy as np, numbaloss
        >>> numbaloss.smooth_l1_loss(np.array([0.5, 3.0]), np.zeros(2), reduction="none")
        array([0.125, 2.5  ])
    """
    return run(smooth_l1_loss.spec, (input, target), {"beta": beta}, reduction, return_grad, grad_output)


@elementwise.register(module="HuberLoss", value=huber_value, grad=huber_grad, option="delta", precheck=_delta_check,
                      **_WEIGHTED, **_PAIRWISE)
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None, *, return_grad=False, grad_output=None):
    r"""Huber loss, as ``torch.nn.functional.huber_loss``: ``delta * smooth_l1_loss(beta=delta)``.

    .. math::
        \ell = w \begin{cases} 0.5\,d^2 & |d| < \delta \\ \delta\,(|d| - 0.5\,\delta) & \text{else} \end{cases},
        \qquad
        \frac{\partial \ell}{\partial x} = w \begin{cases} d & |d| < \delta \\ \delta\,\mathrm{sign}(d) & \text{else} \end{cases}

    ``delta <= 0`` raises ValueError.  ``weight`` must have the input's shape, and
    ``"mean"`` is ``mean(w * loss)`` (torch divides by the element count here, unlike l1/mse).

    Example:
        >>> import numpy as np, numbaloss
        >>> numbaloss.huber_loss(np.array([0.5, 3.0]), np.zeros(2), reduction="none")
        array([0.125, 2.5  ])
    """
    return run(huber_loss.spec, (input, target), {"delta": delta, "weight": weight}, reduction, return_grad, grad_output)


@elementwise.register(
    module="PoissonNLLLoss",
    switches=("log_input", "full"),
    variants={
        (True, False): (poisson_log_value, poisson_log_grad),
        (True, True): (poisson_log_full_value, poisson_log_grad),
        (False, False): (poisson_value, poisson_grad),
        (False, True): (poisson_full_value, poisson_grad),
    },
    option="eps",
    broadcast="both",
)
def poisson_nll_loss(input, target, log_input=True, full=False, eps=1e-8, reduction="mean", *, return_grad=False,
                     grad_output=None):
    r"""Poisson negative log likelihood, as ``torch.nn.functional.poisson_nll_loss``.

    .. math::
        \ell = \begin{cases} e^x - t\,x & \text{log\_input} \\ x - t \log(x + \epsilon) & \text{else} \end{cases}
        \;[+\; t \log t - t + \tfrac12 \log(2 \pi t) \text{ where } t > 1 \text{ with full}],
        \qquad
        \frac{\partial \ell}{\partial x} = \begin{cases} e^x - t \\ 1 - t / (x + \epsilon) \end{cases}

    The Stirling term (``full=True``) depends on the target only; a target of exactly 1 gets none.

    Example:
        >>> import numpy as np, numbaloss
        >>> numbaloss.poisson_nll_loss(np.array([0.0, 1.0]), np.array([1.0, 2.0]), reduction="none").round(4)
        array([1.    , 0.7183])
    """
    options = {"log_input": log_input, "full": full, "eps": eps}
    return run(poisson_nll_loss.spec, (input, target), options, reduction, return_grad, grad_output)


@elementwise.register(
    module="GaussianNLLLoss",
    switches=("full",),
    variants={
        (False,): (gaussian_value, gaussian_grad, gaussian_var_grad),
        (True,): (gaussian_full_value, gaussian_grad, gaussian_var_grad),
    },
    check=var_not_negative,
    check_error="var has negative entry/entries",
    check_on="param",
    param="var",
    roles=("input", "target", "param"),
    param_shape=_var_shape,
    param_float=True,
    param_kinds="f",
    option="eps",
    broadcast="both",
    arrays=("input", "target", "var"),
    grads=("input", "var"),
)
def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean", *, return_grad=False,
                      grad_output=None):
    r"""Gaussian negative log likelihood, as ``torch.nn.functional.gaussian_nll_loss``.  With
    :math:`v = \max(\mathrm{var}, \epsilon)` and :math:`d = x - t`:

    .. math::
        \ell = \tfrac12 \left(\log v + d^2 / v\right) \;[+ \tfrac12 \log 2\pi \text{ with full}],
        \qquad
        \frac{\partial \ell}{\partial x} = \frac{d}{v}, \quad
        \frac{\partial \ell}{\partial \mathrm{var}} = \tfrac12 \left(\frac1v - \frac{d^2}{v^2}\right)

    torch clamps ``var`` without tracking the clamp: below ``eps`` the ``var``
    gradient is the formula at ``eps``, not 0; so is this one.  ``var`` has the
    input's shape, the input's less its last dimension (one variance per row:
    ``(N,)`` on ``(N, D)``, even when ``N == D``), the input's with one dimension
    of size 1, or is a Python float (no gradient then); other shapes, a negative
    entry and an integer ``var`` raise.  ``return_grad=True`` gives
    ``(loss, (g_input, g_var))``, ``g_var`` of ``var``'s own shape (None for a float).

    Example:
        >>> import numpy as np, numbaloss
        >>> numbaloss.gaussian_nll_loss(np.array([1.0, 2.0]), np.array([1.0, 0.0]), np.array([1.0, 4.0]),
        ...                             reduction="none").round(4)
        array([0.    , 1.1931])
    """
    options = {"full": full, "eps": eps}
    return run(gaussian_nll_loss.spec, (input, target, var), options, reduction, return_grad, grad_output)
