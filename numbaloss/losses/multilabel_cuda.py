"""``multilabel_soft_margin_loss`` and ``multilabel_margin_loss`` on the GPU: one thread block per row,
the row's sums in a fixed order.

The formulas are the CPU kernels' (:mod:`numbaloss.losses.multilabel`).  A label outside
``[-1, C)`` is recorded in the error buffer before any label is read through.  Imported by
name only when a CUDA array arrives.
"""

import numpy as np
from numba import cuda, float64

from ..core import cuda_host
from ..core.cuda_host import HostTarget, device_grad_scale, finish_rows
from ..core.cuda_reduce import TPB, group_max, group_sum, row_scale
from ..core.validate import float_dtype
from .multilabel import label_hinge, layout, mlsm_grad, mlsm_value, multilabel_margin_layout, raise_label_out_of_range


@cuda.jit
def _mlsm_rows(x, t, w, gscale, g0, n_rows, is_mean, loss_rows, grad):
    """Row ``blockIdx.x`` of ``x`` (``(N, C)``): its loss ``sum_c w_c value / C`` (threads stride over
    the classes, then :func:`group_sum`) and its gradient.  ``t`` and ``w`` have ``N`` rows or one."""
    sm = cuda.shared.array(TPB, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    C = x.shape[1]
    tr = r if t.shape[0] > 1 else 0
    wr = r if w.shape[0] > 1 else 0
    g = row_scale(gscale, g0, r, n_rows, is_mean)
    g = g / C
    acc = 0.0
    for i in range(tid, C, TPB):
        xi = x[r, i]
        ti = t[tr, i]
        wi = w[wr, i] if w.shape[0] > 0 else 1.0
        acc += mlsm_value(xi, ti) * wi
        if grad.size > 0:
            grad[r, i] = mlsm_grad(xi, ti) * wi * g
    total = group_sum(acc, sm, tid, TPB)
    if tid == 0:
        loss_rows[r] = total / C


def _rows_of(call, a, name, shape, dtype):
    """A device ``(rows, C)`` view of the target or weight: the loss's shape, or one row of ``C``."""
    C = shape[-1]
    d = call.param(a, name, dtype)
    if tuple(d.shape) == tuple(shape):
        if not d.is_c_contiguous():
            raise ValueError(f"{name}: non-contiguous device arrays are not supported here; pass a contiguous array")
        return d.reshape(int(np.prod(shape[:-1], dtype=np.int64)), C)
    if d.size == C and all(n == 1 for n in d.shape[:-1]):
        return d.reshape(1, C)
    raise ValueError(f"{name} of shape {tuple(d.shape)}: on the device it must have the input's shape "
                     f"{tuple(shape)} or be one row of its {C} classes; broadcast it first")


def run(spec, *arrays, **options):
    """The device path of ``multilabel_soft_margin_loss`` and ``multilabel_margin_loss`` (see
    :class:`numbaloss.core.registry.Loss`)."""
    return (run_margin if spec.name == "multilabel_margin_loss" else run_soft_margin)(spec, *arrays, **options)


def run_soft_margin(spec, input, target, *, reduction, return_grad, grad_output, weight=None):
    """The device path of ``multilabel_soft_margin_loss``."""
    call = cuda_host.Call(input)
    x = call.input(input, "input")
    t = call.input(target, "target")
    dtype = float_dtype(x.dtype)
    w_shape = None if weight is None else tuple(np.shape(weight))
    shape, loss_shape = layout(x.shape, t.shape, t.dtype, w_shape)
    if tuple(x.shape) != shape:
        raise ValueError(f"input of shape {tuple(x.shape)} broadcast to {shape} by the target: on the device, "
                         "broadcast the input to the loss's shape first")
    if np.dtype(t.dtype) != dtype:
        raise TypeError(f"target on the device must have the input's dtype {dtype}, got {np.dtype(t.dtype)}")
    if not x.is_c_contiguous():
        raise ValueError("input: non-contiguous Numba device arrays are not supported here; pass a contiguous array")
    C = shape[-1]
    N = int(np.prod(loss_shape, dtype=np.int64))
    xr = x.reshape(N, C)
    tr = _rows_of(call, t, "target", shape, dtype)
    wr = call.nothing(dtype, 2) if weight is None else _rows_of(call, weight, "weight", shape, dtype)
    gscale, g0 = device_grad_scale(call, reduction, grad_output, loss_shape, return_grad)
    grad = call.empty((N, C), dtype) if return_grad else call.nothing(dtype, 2)
    loss_rows = call.empty(N, np.float64)
    if N:
        call.launch(_mlsm_rows, N, xr, tr, wr, gscale, g0, float(N), reduction == "mean", loss_rows, grad)
    value = finish_rows(call, reduction, loss_rows, (call.nothing(np.float64), float(N)), dtype, loss_shape)
    return value, ((call.result(grad.reshape(shape)),) if return_grad else ())


@cuda.jit
def _mlm_rows(x, y, gscale, g0, n_rows, is_mean, loss_rows, grad, is_label, err):
    """Row ``blockIdx.x`` of ``multilabel_margin_loss``: every thread checks its entries of the label row
    (a bad one: error buffer, the row's loss 0, nothing read through it), the labels before the first
    -1 are marked in ``is_label`` (global scratch of the input's shape), then per label (in order, a
    duplicate twice) the threads stride over the classes: loss terms, ``+g/C`` at each active class,
    and the label's ``-count g/C`` written by thread 0 after a :func:`group_sum` of the counts."""
    sm = cuda.shared.array(TPB, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    C = x.shape[1]
    bad = 0.0
    first_end = float64(C)
    for j in range(tid, C, TPB):
        t = y[r, j]
        if t < -1 or t >= C:
            cuda.atomic.min(err, 0, r * C + j)
            bad += 1.0
        if t < 0 and j < first_end:
            first_end = float64(j)
        is_label[r, j] = 0
    if group_sum(bad, sm, tid, TPB) > 0.0:  # the same for every thread: all leave together
        if tid == 0:
            loss_rows[r] = 0.0
        return
    k = np.int64(-group_max(-first_end, sm, tid, TPB))  # the labels before the first -1
    for j in range(tid, k, TPB):
        is_label[r, np.int64(y[r, j])] = 1  # threads may mark the same class: the same value
    g = row_scale(gscale, g0, r, n_rows, is_mean)
    gc = g / C
    if grad.size > 0:
        for d in range(tid, C, TPB):
            grad[r, d] = 0.0
    cuda.syncthreads()
    total = 0.0
    for j in range(k):
        t = np.int64(y[r, j])
        xt = x[r, t]
        acc = 0.0
        count = 0.0
        for d in range(tid, C, TPB):
            if is_label[r, d] == 0:
                h = label_hinge(xt, x[r, d])
                acc += h
                if h > 0.0:
                    count += 1.0
                    if grad.size > 0:
                        grad[r, d] += gc
        total += group_sum(acc, sm, tid, TPB)
        n_active = group_sum(count, sm, tid, TPB)
        if tid == 0 and grad.size > 0:
            grad[r, t] -= n_active * gc
    if tid == 0:
        loss_rows[r] = total / C


def run_margin(spec, input, target, *, reduction, return_grad, grad_output):
    """The device path of ``multilabel_margin_loss``."""
    call = cuda_host.Call(input)
    x = call.input(input, "input")
    t = call.input(target, "target")
    dtype = float_dtype(x.dtype)
    N, C, loss_shape = multilabel_margin_layout(x.shape, t.shape, t.dtype)
    if not (x.is_c_contiguous() and t.is_c_contiguous()):
        raise ValueError("input, target: non-contiguous Numba device arrays are not supported here; pass contiguous arrays")
    xr = x.reshape(N, C)
    yr = t.reshape(N, C)
    gscale, g0 = device_grad_scale(call, reduction, grad_output, loss_shape, return_grad)
    grad = call.empty((N, C), dtype) if return_grad else call.nothing(dtype, 2)
    loss_rows = call.empty(N, np.float64)
    err = call.error_buffer()
    if N:
        is_label = call.empty((N, C), np.int8)
        call.launch(_mlm_rows, N, xr, yr, gscale, g0, float(N), reduction == "mean", loss_rows, grad, is_label, err)
    value = finish_rows(call, reduction, loss_rows, (call.nothing(np.float64), float(N)), dtype, loss_shape)
    pos = call.first_error(err)
    if pos >= 0:
        raise_label_out_of_range(HostTarget(t), pos, C)
    return value, ((call.result(grad.reshape(x.shape)),) if return_grad else ())
