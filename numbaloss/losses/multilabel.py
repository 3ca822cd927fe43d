r"""Multi-label losses over a row of classes: ``multilabel_soft_margin_loss``, ``multilabel_margin_loss``.

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
from ..core.validate import broadcast_shape, float_dtype, integer_dtype


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
    value, (grad,), _ = rows.launch(_mlsm_kernel, (xr, tr, wr), N, C, loss_shape, dtype, reduction, grad_output,
                                    return_grad)
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


# ------------------------------------------------------------------ multilabel_margin_loss
@scalar
def label_hinge(x_target, x_other):
    """``max(0, 1 - x_t + x_d)``: 0 for a NaN argument (torch tests ``z > 0``: NaN terms are skipped)."""
    z = vm.like(1.0, x_other) - x_target + x_other
    return z if z > vm.like(0.0, z) else vm.like(0.0, z)


@blocked
def _mlm_kernel(b, x, y, rpb, gscale, gstride, loss_rows, grad, partials, bad):
    """Rows ``b * rpb`` on of ``x`` (``(N, C)``) with ``-1``-terminated label rows ``y``: ``loss_rows[r] =
    sum_{t in labels} sum_{d not a label} max(0, 1 - x_t + x_d) / C`` (a label listed twice counts twice,
    as torch); the gradient ``g / C`` per active pair, ``+`` at ``d`` and ``-`` at ``t``.  Every entry of
    a row, those after the ``-1`` too, must be in ``[-1, C)``, checked before any label is read
    through: a bad row gets 0 and ``bad[b]`` the first bad entry's flat position."""
    N, C = x.shape
    r0 = b * rpb
    r1 = min(r0 + rpb, N)
    is_label = np.empty(C, np.bool_)
    terms = np.empty(C, x.dtype)
    scratch = np.empty((C + 1) // 2)
    zero = vm.like(0.0, x)
    first_bad = -1
    for r in range(r0, r1):
        ys = y[r]
        ok = True
        for j in range(C):
            if ys[j] < -1 or ys[j] >= C:
                ok = False
                if first_bad < 0:
                    first_bad = r * C + j
                break
        if not ok:
            loss_rows[r] = 0.0
            continue
        k = C  # labels before the first -1
        for j in range(C):
            if ys[j] < 0:
                k = j
                break
        is_label[:] = False
        for j in range(k):
            is_label[np.int64(ys[j])] = True
        xs = x[r]
        gc = zero
        if grad is not None:
            grad[r] = zero
            gc = vm.like(gscale[r * gstride] / C, x)
        total = 0.0
        for j in range(k):
            t = np.int64(ys[j])
            xt = xs[t]
            for d in range(C):
                terms[d] = zero if is_label[d] else label_hinge(xt, xs[d])
            total += reduce.tree_sum(terms, scratch)
            if grad is not None:  # the active pairs are the positive terms (an integer count: it vectorizes)
                gr = grad[r]
                count = 0
                for d in range(C):
                    on = terms[d] > zero
                    gr[d] += gc if on else zero
                    count += 1 if on else 0
                gr[t] -= vm.like(count, x) * gc
        loss_rows[r] = total / C
    partials[b] = reduce.tree_sum(loss_rows[r0:r1], np.empty((r1 - r0 + 1) // 2))
    bad[b] = first_bad


def multilabel_margin_layout(x_shape, t_shape, t_dtype):
    """torch's rules: ``(N, C, loss shape)``; a 1-d input is one sample."""
    x_shape, t_shape = tuple(x_shape), tuple(t_shape)
    if len(x_shape) not in (1, 2) or x_shape[-1] == 0:
        raise ValueError(f"Expected non-empty vector or matrix with optional 0-dim batch size, but got: {list(x_shape)}")
    integer_dtype(t_dtype)
    if t_shape != x_shape:
        raise ValueError(f"inconsistent target size: {list(t_shape)} for input of size: {list(x_shape)}")
    return (x_shape[0] if len(x_shape) == 2 else 1), x_shape[-1], x_shape[:-1]


def raise_label_out_of_range(target, pos, n_classes):
    """IndexError for the label at flat position ``pos`` of ``target`` (a device view too)."""
    value = target.reshape(-1)[pos] if hasattr(target, "reshape") else target[pos]
    where = np.unravel_index(pos, target.shape)
    raise IndexError(f"Target {value} is out of bounds. (at target index {tuple(int(i) for i in where)}; every entry, "
                     f"those after the first -1 too, must be a class in 0..{n_classes - 1} or -1)")


def _mlm_cpu(spec, input, target, *, reduction, return_grad, grad_output):
    x = host_array(input, "input")
    t = host_array(target, "target")
    dtype = float_dtype(x.dtype)
    N, C, loss_shape = multilabel_margin_layout(x.shape, t.shape, t.dtype)
    xr = np.ascontiguousarray(x).reshape(N, C)
    yr = np.ascontiguousarray(t).reshape(N, C)
    value, (grad,), pos = rows.launch(_mlm_kernel, (xr, yr), N, C, loss_shape, dtype, reduction, grad_output, return_grad,
                                      checked=True)
    if pos >= 0:
        raise_label_out_of_range(t, pos, C)
    return (value, (grad.reshape(x.shape),)) if return_grad else (value, ())


@register(module="MultiLabelMarginLoss", cpu=_mlm_cpu, cuda="numbaloss.losses.multilabel_cuda", mean="the samples (rows)",
          family=rows.Rows(values=(("target", "label_lists"),)))
def multilabel_margin_loss(input, target, reduction="mean", *, return_grad=False, grad_output=None):
    r"""Multi-label hinge loss, as ``torch.nn.functional.multilabel_margin_loss``.

    .. math::
        \ell_n = \frac{1}{C} \sum_{j < k_n} \sum_{d \notin T_n} \max(0, 1 - x_{n y_{nj}} + x_{nd}), \qquad
        \frac{\partial \ell_n}{\partial x_{nd}} = \frac{1}{C} \#\{j : z_{njd} > 0\}\ (d \notin T_n), \quad
        \frac{\partial \ell_n}{\partial x_{nt}} = -\frac{1}{C} \sum_{j : y_{nj} = t} \#\{d \notin T_n : z_{njd} > 0\}

    ``target`` has the input's shape (``(N, C)`` or ``(C,)``): each row lists the sample's classes,
    ended by the first ``-1`` (``k_n`` labels, :math:`T_n` their set; a class listed twice counts
    twice, as torch).  Every entry, those after the ``-1`` too, must be -1 or a class (IndexError
    otherwise, naming it, before any is read through).  NaN terms are skipped and the tie
    ``z = 0`` passes no gradient, as torch.

    Example:
        >>> import numpy as np, numbaloss
        >>> x = np.array([[0.1, 0.2, 0.4, 0.8]])
        >>> round(float(numbaloss.multilabel_margin_loss(x, np.array([[3, 0, -1, 1]]))), 4)
        0.85
    """
    return run(multilabel_margin_loss.spec, (input, target), {}, reduction, return_grad, grad_output)
