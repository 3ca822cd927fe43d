"""``multi_margin_loss`` on the GPU: one thread block per row, the row's sums in a fixed order.

The formulas are the CPU kernel's (:mod:`numbaloss.losses.multiclass`).  A target outside
``[0, C)`` is recorded in the error buffer (integer ``atomic.min``) before its score is read, and
raised on the host after the kernel.  Imported by name only when a CUDA array arrives.
"""

import numpy as np
from numba import cuda, float64

from ..core import cuda_host
from ..core.cuda_host import HostTarget, device_grad_scale, finish_rows
from ..core.cuda_reduce import TPB, group_sum, row_scale
from ..core.validate import float_dtype
from .multiclass import hinge_slope, hinge_term, multi_margin_layout, raise_out_of_bounds


@cuda.jit
def _multi_margin_rows(x, y, w, squared, margin, gscale, g0, n_rows, is_mean, loss_rows, grad, err):
    """Row ``blockIdx.x``: its loss (threads stride over the classes, then :func:`group_sum`) and its
    gradient; the target's own gradient is minus the others' sum.  A bad target: error buffer, loss 0.
    ``margin`` has the input's dtype (the hinge's argument is computed in it, as on the CPU)."""
    sm = cuda.shared.array(TPB, float64)
    r = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    C = x.shape[1]
    yr = y[r]
    if yr < 0 or yr >= C:  # the same for every thread of the block: all return, none reads x[r, yr]
        if tid == 0:
            cuda.atomic.min(err, 0, r)
            loss_rows[r] = 0.0
        return
    k = np.int64(yr)
    xy = x[r, k]
    wy = w[k] if w.size > 0 else 1.0
    g = row_scale(gscale, g0, r, n_rows, is_mean)
    g = g * wy / C
    acc = 0.0
    sacc = 0.0
    for i in range(tid, C, TPB):
        if i != k:
            z = margin - xy + x[r, i]
            acc += hinge_term(z, squared)
            if grad.size > 0:
                s = hinge_slope(z, squared)
                sacc += s
                grad[r, i] = s * g
    total = group_sum(acc, sm, tid, TPB)
    slopes = group_sum(sacc, sm, tid, TPB)
    if tid == 0:
        loss_rows[r] = total * wy / C
        if grad.size > 0:
            grad[r, k] = 0.0 - slopes * g


def run(spec, input, target, *, reduction, return_grad, grad_output, p=1, margin=1.0, weight=None):
    """The device path of ``multi_margin_loss`` (see :class:`numbaloss.core.registry.Loss`)."""
    call = cuda_host.Call(input)
    x = call.input(input, "input")
    t = call.input(target, "target")
    dtype = float_dtype(x.dtype)
    w_shape = None if weight is None else tuple(np.shape(weight))
    N, C, loss_shape, squared = multi_margin_layout(x.shape, t.shape, t.dtype, w_shape, p)
    if not x.is_c_contiguous():
        raise ValueError("input: non-contiguous Numba device arrays are not supported here; pass a contiguous array")
    xr = x.reshape(N, C)
    y = t.reshape(N) if t.ndim != 1 else t
    w = call.param(weight, "weight", dtype)
    gscale, g0 = device_grad_scale(call, reduction, grad_output, loss_shape, return_grad)
    grad = call.empty((N, C), dtype) if return_grad else call.nothing(dtype, 2)
    loss_rows = call.empty(N, np.float64)
    err = call.error_buffer()
    if N:
        call.launch(_multi_margin_rows, N, xr, y, w, squared, dtype.type(margin), gscale, g0, float(N), reduction == "mean",
                    loss_rows, grad, err)
    value = finish_rows(call, reduction, loss_rows, (call.nothing(np.float64), float(N)), dtype, loss_shape)
    pos = call.first_error(err)
    if pos >= 0:
        raise_out_of_bounds(HostTarget(t), pos, C)
    return value, ((call.result(grad.reshape(x.shape)),) if return_grad else ())
