r"""Multi-class margin losses over a row of class scores: ``multi_margin_loss``.

A row loss with a class target per row: the target is checked inside the kernel
before its score is read (no read out of bounds; IndexError naming the first bad
target), the row's hinge terms are summed pairwise in float64, then divided by
the number of classes.  The scalar formulas below are shared by the CPU kernel
here and the CUDA kernel (:mod:`numbaloss.losses.multiclass_cuda`); the host code
around the kernel is :mod:`numbaloss.core.rows`.
"""

import numbers

import numpy as np

from ..core import reduce, rows
from ..core import vmath as vm
from ..core.dispatch import host_array, host_param
from ..core.jit import blocked, scalar
from ..core.registry import register, run
from ..core.validate import float_dtype, integer_dtype


# ------------------------------------------------------------------ formulas
@scalar
def hinge_term(z, squared):
    """``max(0, z)`` or its square: a NaN ``z`` gives 0 (torch tests ``z > 0``, so NaN terms are skipped)."""
    v = z if z > vm.like(0.0, z) else vm.like(0.0, z)
    return v * v if squared else v


@scalar
def hinge_slope(z, squared):
    """``d hinge_term / d z``: 1 or ``2 z`` where ``z > 0``, else 0 (no gradient at the tie ``z = 0``, as torch)."""
    zero = vm.like(0.0, z)
    return (z + z if squared else vm.like(1.0, z)) if z > zero else zero


# ------------------------------------------------------------------ CPU kernel
@blocked
def _multi_margin_kernel(b, x, y, w, squared, margin, rpb, gscale, gstride, loss_rows, grad, partials, bad):
    """Rows ``b * rpb`` on of ``x`` (``(N, C)``) with class targets ``y``: ``loss_rows[r] = w_y / C
    sum_{i != y} hinge(margin - x_y + x_i)``, the gradient ``w_y g / C`` times the hinge's slope at
    each ``i != y`` and minus their sum at ``y``.  A target outside ``[0, C)`` is never read
    through: its row gets 0 and ``bad[b]`` its position (the block's first, else -1)."""
    N, C = x.shape
    r0 = b * rpb
    r1 = min(r0 + rpb, N)
    has_w = w.size > 0
    m = vm.like(margin, x)
    terms = np.empty(C, x.dtype)
    slopes = np.empty(C, x.dtype)
    scratch = np.empty((C + 1) // 2)
    first_bad = -1
    for r in range(r0, r1):
        yr = y[r]
        if yr < 0 or yr >= C:
            if first_bad < 0:
                first_bad = r
            loss_rows[r] = 0.0
            continue
        k = np.int64(yr)
        xs = x[r]
        xy = xs[k]
        wy = w[k] if has_w else 1.0
        for i in range(C):
            terms[i] = hinge_term(m - xy + xs[i], squared)
        terms[k] = 0.0
        loss_rows[r] = reduce.tree_sum(terms, scratch) * wy / C
        if grad is not None:
            g = gscale[r * gstride] * wy / C
            gc = vm.like(g, x)
            gr = grad[r]
            for i in range(C):
                slopes[i] = hinge_slope(m - xy + xs[i], squared)
                gr[i] = slopes[i] * gc
            slopes[k] = 0.0
            gr[k] = vm.like(0.0 - reduce.tree_sum(slopes, scratch) * g, x)  # 0 - 0: +0, as torch
    partials[b] = reduce.tree_sum(loss_rows[r0:r1], np.empty((r1 - r0 + 1) // 2))
    bad[b] = first_bad


# ------------------------------------------------------------------ host
def multi_margin_layout(x_shape, t_shape, t_dtype, w_shape, p):
    """torch's rules: ``(N, C, loss shape, squared)``; raises the errors torch raises, in Python's types."""
    x_shape, t_shape = tuple(x_shape), tuple(t_shape)
    if not (isinstance(p, numbers.Real) and p in (1, 2)):  # True is 1, as for torch
        raise ValueError(f"only p == 1 and p == 2 supported, got p={p!r}")
    if len(x_shape) not in (1, 2) or x_shape[-1] == 0:
        raise ValueError(f"Expected non-empty vector or matrix with optional 0-dim batch size, but got: {list(x_shape)}")
    integer_dtype(t_dtype)
    N = x_shape[0] if len(x_shape) == 2 else 1
    if (len(x_shape) == 2 and t_shape != (N,)) or (len(x_shape) == 1 and t_shape not in ((), (1,))):
        raise ValueError(f"multi_margin_loss: target tensor should be 1-D with size equal to the number of input samples "
                         f"(batch size). Expected target size [{N}], but got {list(t_shape)}. Input has shape {list(x_shape)}.")
    C = x_shape[-1]
    if w_shape is not None:
        if len(w_shape) != 1:
            raise ValueError(f"weight must be one-dimensional, got shape {tuple(w_shape)}")
        if w_shape[0] != C:
            raise ValueError(f"inconsistent weight size, expected {C} but got {list(w_shape)}")
    return N, C, t_shape, p == 2


def raise_out_of_bounds(target, pos, n_classes):
    """IndexError for the target at flat position ``pos`` (``target``: anything indexable, a device view too)."""
    value = target.reshape(-1)[pos] if hasattr(target, "reshape") else target[pos]
    where = np.unravel_index(pos, target.shape) if len(target.shape) else ()
    raise IndexError(f"Target {value} is out of bounds. (at target index {tuple(int(i) for i in where)}; "
                     f"valid classes are 0..{n_classes - 1})")


def _multi_margin_cpu(spec, input, target, *, reduction, return_grad, grad_output, p=1, margin=1.0, weight=None):
    x = host_array(input, "input")
    t = host_array(target, "target")
    dtype = float_dtype(x.dtype)
    w = host_param(weight, "weight", dtype)
    N, C, loss_shape, squared = multi_margin_layout(x.shape, t.shape, t.dtype, None if w is None else w.shape, p)
    xr = np.ascontiguousarray(x).reshape(N, C)
    y = np.ascontiguousarray(t).reshape(N)
    data = (xr, y, np.empty(0, dtype) if w is None else w, squared, float(margin))
    value, (grad,), pos = rows.launch(_multi_margin_kernel, data, N, C, loss_shape, dtype, reduction, grad_output,
                                      return_grad, checked=True)
    if pos >= 0:
        raise_out_of_bounds(t, pos, C)
    return (value, (grad.reshape(x.shape),)) if return_grad else (value, ())


@register(module="MultiMarginLoss", cpu=_multi_margin_cpu, cuda="numbaloss.losses.multiclass_cuda", params=("weight",),
          mean="the samples (rows)", family=rows.Rows(values=(("target", "classes"),), per_row=("target",)))
def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean", *, return_grad=False,
                      grad_output=None):
    r"""Multi-class hinge loss, as ``torch.nn.functional.multi_margin_loss``.

    .. math::
        \ell_n = \frac{w_{y_n}}{C} \sum_{i \ne y_n} \max(0, m - x_{n y_n} + x_{ni})^p, \qquad
        \frac{\partial \ell_n}{\partial x_{ni}} = \frac{w_{y_n}}{C}\, p \max(0, z_{ni})^{p - 1}\,[z_{ni} > 0]
        \ (i \ne y_n), \quad \frac{\partial \ell_n}{\partial x_{n y_n}} = -\sum_{i \ne y_n} \frac{\partial \ell_n}{\partial x_{ni}}

    with :math:`z_{ni} = m - x_{n y_n} + x_{ni}` and ``p`` 1 or 2.  ``input`` is ``(N, C)`` with ``(N,)``
    class indices (any integer dtype), or ``(C,)`` with a 0-d (or one-element) target; ``weight`` is
    ``(C,)``.  Terms where ``z`` is NaN are skipped and the tie ``z = 0`` passes no gradient, as torch.
    A target outside ``[0, C)`` raises IndexError before its score is read.

    Example:
        >>> import numpy as np, numbaloss
        >>> x = np.array([[0.1, 0.2, 0.4, 0.8]])
        >>> round(float(numbaloss.multi_margin_loss(x, np.array([3]))), 4)
        0.325
    """
    return run(multi_margin_loss.spec, (input, target), {"p": p, "margin": margin, "weight": weight}, reduction,
               return_grad, grad_output)
