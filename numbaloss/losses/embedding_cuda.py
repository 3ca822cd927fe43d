"""``cosine_embedding_loss`` and ``triplet_margin_loss`` on the GPU: one thread block per row, the
row's sums in a fixed order.

The per-row finishes and the norms' formulas are the CPU kernels' (:mod:`numbaloss.losses.embedding`).
Imported by name only when a CUDA array arrives.
"""

import numpy as np
from numba import cuda, float64

from ..core import cuda_host
from ..core.cuda_host import device_grad_scale, finish_rows
from ..core.cuda_reduce import TPB, group_max, group_sum, nan_max, row_scale
from ..core.validate import float_dtype
from .embedding import (NORM_INF, cosine_layout, cosine_row, norm_kind, norm_of, norm_slope, power_term, triplet_layout,
                        triplet_row)


@cuda.jit
def _cosine_rows(x1, x2, y, margin, gscale, g0, n_rows, is_mean, loss_rows, g1, g2):
    """Row ``blockIdx.x``: ``x1.x2``, ``|x1|^2``, ``|x2|^2`` (threads stride over the row in float64, then
    :func:`group_sum`), the loss and, with ``g1``, both gradients.  ``y`` has the rows or one entry."""
    sm = cuda.shared.array(TPB, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    D = x1.shape[1]
    a12 = 0.0
    a11 = 0.0
    a22 = 0.0
    for d in range(tid, D, TPB):
        a = float64(x1[r, d])
        c = float64(x2[r, d])
        a12 += a * c
        a11 += a * a
        a22 += c * c
    s12 = group_sum(a12, sm, tid, TPB)
    s11 = group_sum(a11, sm, tid, TPB)
    s22 = group_sum(a22, sm, tid, TPB)
    loss, coef, cos, den, m1, m2 = cosine_row(s12, s11, s22, y[r if y.size > 1 else 0], margin)
    if tid == 0:
        loss_rows[r] = loss
    if g1.size > 0:
        g = row_scale(gscale, g0, r, n_rows, is_mean)
        g = 0.0 if coef == 0.0 else g * coef  # as the CPU kernel
        ga = g / den
        b1 = g * cos / m1
        b2 = g * cos / m2
        for d in range(tid, D, TPB):
            a = float64(x1[r, d])
            c = float64(x2[r, d])
            g1[r, d] = ga * c - b1 * a
            g2[r, d] = ga * a - b2 * c


def _rows(call, a, name, shape, dtype, together="input1 and input2", first="input1"):
    """``a`` as a contiguous device ``(rows, D)`` array of the loss's input shape (``together``: the arrays
    that must share it, ``first`` the one whose dtype the others take)."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} of shape {tuple(a.shape)}: on the device {together} must have the same shape "
                         f"{tuple(shape)}; broadcast them first")
    if np.dtype(a.dtype) != dtype:
        raise TypeError(f"{name} on the device must have {first}'s dtype {dtype}, got {np.dtype(a.dtype)}")
    if not a.is_c_contiguous():
        raise ValueError(f"{name}: non-contiguous Numba device arrays are not supported here; pass a contiguous array")
    return a.reshape(int(np.prod(shape[:-1], dtype=np.int64)), shape[-1])


def run(spec, *arrays, **options):
    """The device path of ``cosine_embedding_loss`` and the triplet losses (see
    :class:`numbaloss.core.registry.Loss`)."""
    if spec.name == "triplet_margin_with_distance_loss":
        if options.pop("distance_function") is not None:
            raise TypeError("distance_function: a Numba CPU function cannot run on CUDA arrays; on the device only the "
                            "default (None: pairwise_distance) is supported")
        return run_triplet(spec, *arrays, **options)
    return (run_triplet if spec.name == "triplet_margin_loss" else run_cosine)(spec, *arrays, **options)


def run_cosine(spec, input1, input2, target, *, reduction, return_grad, grad_output, margin=0.0):
    """The device path of ``cosine_embedding_loss``."""
    call = cuda_host.Call(input1)
    x1 = call.input(input1, "input1")
    x2 = call.input(input2, "input2")
    y = call.input(target, "target")
    dtype = float_dtype(x1.dtype, "input1")
    shape, loss_shape = cosine_layout(x1.shape, x2.shape, y.shape, y.dtype)
    a = _rows(call, x1, "input1", shape, dtype)
    c = _rows(call, x2, "input2", shape, dtype)
    N, D = a.shape
    if np.dtype(y.dtype) != np.float64:  # the labels as float64, one per row or one for all (small)
        y64 = call.empty(y.size, np.float64)
        if y.size:
            call.launch(cuda_host.cast_kernel, max(1, -(-y.size // TPB)), y.reshape(y.size), y64)
        y = y64
    else:
        y = y.reshape(y.size)
    gscale, g0 = device_grad_scale(call, reduction, grad_output, loss_shape, return_grad)
    g1 = call.empty((N, D), dtype) if return_grad else call.nothing(dtype, 2)
    g2 = call.empty((N, D), dtype) if return_grad else call.nothing(dtype, 2)
    loss_rows = call.empty(N, np.float64)
    if N:
        call.launch(_cosine_rows, N, a, c, y, float(margin), gscale, g0, float(N), reduction == "mean", loss_rows, g1, g2)
    value = finish_rows(call, reduction, loss_rows, (call.nothing(np.float64), float(N)), dtype, loss_shape)
    if not return_grad:
        return value, ()
    return value, (call.result(g1.reshape(shape)), call.result(g2.reshape(shape)))


@cuda.jit
def _triplet_rows(a, pos, neg, margin, p, kind, eps, swap, gscale, g0, n_rows, is_mean, loss_rows, ga, gp, gn):
    """Row ``blockIdx.x``: the two (three with ``swap``) distances (threads stride over the row, then
    :func:`group_sum`, or :func:`group_max` for ``p = inf``), the loss and the three gradients."""
    sm = cuda.shared.array(TPB, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    D = a.shape[1]
    s_ap = 0.0
    s_an = 0.0
    s_pn = 0.0
    m_ap = 0.0
    m_an = 0.0
    m_pn = 0.0
    for i in range(tid, D, TPB):
        v_ap = a[r, i] - pos[r, i] + eps
        v_an = a[r, i] - neg[r, i] + eps
        v_pn = pos[r, i] - neg[r, i] + eps
        s_ap += power_term(v_ap, p, kind)
        s_an += power_term(v_an, p, kind)
        m_ap = nan_max(m_ap, abs(float64(v_ap)))
        m_an = nan_max(m_an, abs(float64(v_an)))
        if swap:
            s_pn += power_term(v_pn, p, kind)
            m_pn = nan_max(m_pn, abs(float64(v_pn)))
    if kind == NORM_INF:
        d_ap = group_max(m_ap, sm, tid, TPB)
        d_an = group_max(m_an, sm, tid, TPB)
        d_pn = group_max(m_pn, sm, tid, TPB) if swap else 0.0
    else:
        d_ap = norm_of(group_sum(s_ap, sm, tid, TPB), p, kind)
        d_an = norm_of(group_sum(s_an, sm, tid, TPB), p, kind)
        d_pn = norm_of(group_sum(s_pn, sm, tid, TPB), p, kind) if swap else 0.0
    # for p = inf: how many entries reach each max (the gradient is split among them)
    c_ap = 1.0
    c_an = 1.0
    c_pn = 1.0
    if kind == NORM_INF and ga.size > 0:
        k_ap = 0.0
        k_an = 0.0
        k_pn = 0.0
        for i in range(tid, D, TPB):
            k_ap += 1.0 if abs(float64(a[r, i] - pos[r, i] + eps)) == d_ap else 0.0
            k_an += 1.0 if abs(float64(a[r, i] - neg[r, i] + eps)) == d_an else 0.0
            k_pn += 1.0 if abs(float64(pos[r, i] - neg[r, i] + eps)) == d_pn else 0.0
        c_ap = group_sum(k_ap, sm, tid, TPB)
        c_an = group_sum(k_an, sm, tid, TPB)
        c_pn = group_sum(k_pn, sm, tid, TPB)
    loss, c, sh_an, sh_pn = triplet_row(d_ap, d_an, d_pn, swap, margin)
    if tid == 0:
        loss_rows[r] = loss
    if ga.size > 0:
        g = row_scale(gscale, g0, r, n_rows, is_mean)
        g = g * c
        for i in range(tid, D, TPB):
            q_ap = norm_slope(a[r, i] - pos[r, i] + eps, d_ap, c_ap, p, kind)
            q_an = norm_slope(a[r, i] - neg[r, i] + eps, d_an, c_an, p, kind)
            q_pn = norm_slope(pos[r, i] - neg[r, i] + eps, d_pn, c_pn, p, kind) if swap else 0.0
            ga[r, i] = g * q_ap - g * sh_an * q_an
            gp[r, i] = -(g * q_ap) - g * sh_pn * q_pn
            gn[r, i] = g * sh_an * q_an + g * sh_pn * q_pn


def run_triplet(spec, anchor, positive, negative, *, reduction, return_grad, grad_output, margin=1.0, p=2.0, eps=1e-6,
                swap=False):
    """The device path of ``triplet_margin_loss``."""
    call = cuda_host.Call(anchor)
    views = [call.input(v, n) for v, n in ((anchor, "anchor"), (positive, "positive"), (negative, "negative"))]
    dtype = float_dtype(views[0].dtype, "anchor")
    shape, loss_shape = triplet_layout([v.shape for v in views], margin, p)
    a, pos, neg = (_rows(call, v, n, shape, dtype, "anchor, positive and negative", "anchor")
                   for v, n in zip(views, ("anchor", "positive", "negative")))
    N, D = a.shape
    gscale, g0 = device_grad_scale(call, reduction, grad_output, loss_shape, return_grad)
    grads = [call.empty((N, D), dtype) if return_grad else call.nothing(dtype, 2) for _ in range(3)]
    loss_rows = call.empty(N, np.float64)
    if N:
        call.launch(_triplet_rows, N, a, pos, neg, float(margin), float(p), norm_kind(p), dtype.type(eps), bool(swap),
                    gscale, g0, float(N), reduction == "mean", loss_rows, *grads)
    value = finish_rows(call, reduction, loss_rows, (call.nothing(np.float64), float(N)), dtype, loss_shape)
    if not return_grad:
        return value, ()
    return value, tuple(call.result(g.reshape(shape)) for g in grads)
