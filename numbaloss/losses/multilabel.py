r"""Multi-label losses over a row of classes: ``multilabel_soft_margin_loss``.

A row loss: per-element terms summed over the last dimension (the classes),
divided by their number, then reduced over the batch.  The scalar formulas
below are shared by the CPU kernel here and the CUDA kernel
(:mod:`numbaloss.losses.multilabel_cuda`); the host code around the kernel is
:mod:`numbaloss.core.rows`.
"""

import numpy as np

from ..core import reduce, rows
from ..core import vmath as vm
from ..core.dispatch import host_array, host_param
from ..core.elementwise import sum_to_shape
from ..core.jit import blocked, scalar
from ..core.registry import register, run
from ..core.validate import broadcast_shape, float_dtype


# ------------------------------------------------------------------ formulas
@scalar
def mlsm_value(x, t):
    """``-(t log sigmoid(x) + (1 - t) log sigmoid(-x))``, each ``log sigmoid(z) = min(z, 0) - log(1 + e^{-|z|})``
    as torch computes it (so ``t = 1`` at ``x = inf`` is NaN, ``0 * -inf``, as in torch)."""
    zero = vm.like(0.0, x)
    soft = vm.log1p_unit(vm.exp(-abs(x)))
    pos = (x if x < zero else zero) - soft
    neg = (-x if -x < zero else zero) - soft
    return -(t * pos + (vm.like(1.0, x) - t) * neg)


@scalar
def mlsm_grad(x, t):
    """``sigmoid(x) - t`` as ``(1 - t) sigmoid(x) - t sigmoid(-x)`` (torch's form: no cancellation where
    ``sigmoid(x)`` is near ``t = 1``), both sigmoids from one ``exp(-|x|)`` (no overflow)."""
    one = vm.like(1.0, x)
    e = vm.exp(-abs(x))
    inv = one / (one + e)
    big = x >= vm.like(0.0, x)
    return (one - t) * (inv if big else e * inv) - t * (e * inv if big else inv)


# ------------------------------------------------------------------ CPU kernel
@blocked
def _mlsm_kernel(b, x, t, w, rpb, gscale, gstride, loss_rows, grad, partials):
    """Rows ``b * rpb`` on of ``x`` (``(N, C)``): ``loss_rows[r] = sum_c w_c value(x, t) / C`` and the
    gradient ``w (sigmoid(x) - t) g_r / C``.  ``t`` and ``w`` have ``N`` rows or one (shared); ``w``
    has none when absent.  ``partials[b]``: the block's pairwise sum of its rows' losses."""
    N, C = x.shape
    r0 = b * rpb
    r1 = min(r0 + rpb, N)
    has_w = w.shape[0] > 0
    one = vm.like(1.0, x)
    vals = np.empty(C, x.dtype)
    scratch = np.empty((C + 1) // 2)
    for r in range(r0, r1):
        xs = x[r]
        ts = t[r if t.shape[0] > 1 else 0]
        ws = w[r if w.shape[0] > 1 else 0] if has_w else xs
        for i in range(C):
            vals[i] = mlsm_value(xs[i], ts[i]) * (ws[i] if has_w else one)
        loss_rows[r] = reduce.tree_sum(vals, scratch) / C  # C = 0: 0 / 0, NaN as torch
        if grad is not None:
            g = vm.like(gscale[r * gstride] / C, x)
            gr = grad[r]
            for i in range(C):
                gr[i] = mlsm_grad(xs[i], ts[i]) * (ws[i] if has_w else one) * g
    partials[b] = reduce.tree_sum(loss_rows[r0:r1], np.empty((r1 - r0 + 1) // 2))


# ------------------------------------------------------------------ host
def layout(x_shape, t_shape, t_dtype, w_shape):
    """torch's shape rules: the loss's shape (input, target and weight broadcast, without adding
    dimensions to the input: torch would then sum over a dimension that is not the classes) and the
    shape of the per-row losses.  Raises the errors torch raises, worded for numbaloss."""
    if len(x_shape) == 0:
        raise ValueError("multilabel_soft_margin_loss needs an input with a class dimension (the last), got a 0-d input")
    if np.dtype(t_dtype).kind not in "iuf":
        raise TypeError(f"target must be a numeric (not bool) array of 0/1 labels, got {np.dtype(t_dtype)}")
    try:
        shape = np.broadcast_shapes(tuple(x_shape), tuple(t_shape))
    except ValueError:
        raise ValueError(f"target of shape {tuple(t_shape)} does not broadcast with the input's shape {tuple(x_shape)}") from None
    if len(shape) != len(x_shape):
        raise ValueError(f"target of shape {tuple(t_shape)} has more dimensions than the input {tuple(x_shape)}: "
                         "torch would sum over a dimension that is not the classes; give them the same number of dimensions")
    if w_shape is not None:
        broadcast_shape(w_shape, shape, "weight")
    return shape, shape[:-1]


def _as_rows(a, shape, dtype):
    """``a`` as a contiguous ``(rows, C)`` array of ``dtype`` for the loss ``shape``: its own rows when it
    has the loss's shape, one shared row when it varies along the classes only, else expanded."""
    C = shape[-1]
    N = int(np.prod(shape[:-1], dtype=np.int64))
    full = (1,) * (len(shape) - a.ndim) + a.shape
    if full == tuple(shape):
        return np.ascontiguousarray(a, dtype).reshape(N, C)
    if all(n == 1 for n in full[:-1]):
        return np.ascontiguousarray(np.broadcast_to(a.reshape(full[-1:]), (C,)), dtype).reshape(1, C)
    return np.ascontiguousarray(np.broadcast_to(a, shape), dtype).reshape(N, C)


def _mlsm_cpu(spec, input, target, *, reduction, return_grad, grad_output, weight=None):
    x = host_array(input, "input")
    t = host_array(target, "target")
    dtype = float_dtype(x.dtype)
    w = host_param(weight, "weight", dtype)
    shape, loss_shape = layout(x.shape, t.shape, t.dtype, None if w is None else w.shape)
    C = shape[-1]
    N = int(np.prod(loss_shape, dtype=np.int64))
    xr = _as_rows(x, shape, dtype)
    if xr.shape[0] != N:  # the input broadcast along its rows by the target: expanded (rare)
        xr = np.ascontiguousarray(np.broadcast_to(x, shape), dtype).reshape(N, C)
    tr = _as_rows(t, shape, dtype)
    wr = np.empty((0, C), dtype) if w is None else _as_rows(w, shape, dtype)
    rpb = rows.rows_per_block(C)
    nb = reduce.n_blocks(N, rpb)
    loss_rows = np.empty(N)
    partials = np.empty(nb)
    grad = np.empty((N, C), dtype) if return_grad else None
    gscale, gstride = rows.grad_scale(reduction, grad_output, loss_shape, return_grad)
    _mlsm_kernel(nb, xr, tr, wr, rpb, gscale, gstride, loss_rows, grad, partials, work=N * C)
    value = rows.finish(reduction, loss_rows, partials, dtype, loss_shape)
    if not return_grad:
        return value, ()
    return value, (sum_to_shape(grad.reshape(shape), x.shape),)


@register(module="MultiLabelSoftMarginLoss", cpu=_mlsm_cpu, cuda="numbaloss.losses.multilabel_cuda",
          params=("weight",), mean="the samples (rows)", family=rows.Rows(values=(("target", "labels"),)))
def multilabel_soft_margin_loss(input, target, weight=None, reduction="mean", *, return_grad=False, grad_output=None):
    r"""Multi-label one-versus-all logistic loss, as ``torch.nn.functional.multilabel_soft_margin_loss``.

    .. math::
        \ell_n = -\frac{1}{C} \sum_c w_c \bigl(t_{nc} \log\sigma(x_{nc}) + (1 - t_{nc}) \log\sigma(-x_{nc})\bigr),
        \qquad \frac{\partial \ell_n}{\partial x_{nc}} = \frac{w_c}{C} \bigl(\sigma(x_{nc}) - t_{nc}\bigr)

    ``input`` is ``(..., C)`` (the classes last; a 1-d input is one sample), ``target`` the
    0/1 (or soft) labels, broadcast to the input's shape, ``weight`` any shape that broadcasts to it.
    The loss has the input's shape less its last dimension for ``"none"``; ``"mean"`` averages the samples.

    Example:
        >>> import numpy as np, numbaloss
        >>> x = np.array([[2.0, -1.0, 0.5]])
        >>> numbaloss.multilabel_soft_margin_loss(x, np.array([[1.0, 0.0, 1.0]]), reduction="none").round(4)
        array([0.3048])
    """
    return run(multilabel_soft_margin_loss.spec, (input, target), {"weight": weight}, reduction, return_grad, grad_output)
