"""``cosine_embedding_loss`` on the GPU: one thread block per row, its three sums in a fixed order.

The per-row finish is the CPU kernel's (:func:`numbaloss.losses.embedding.cosine_row`).
Imported by name only when a CUDA array arrives.
"""

import numpy as np
from numba import cuda, float64

from ..core import cuda_host
from ..core.cuda_host import device_grad_scale, finish_rows
from ..core.cuda_reduce import TPB, group_sum
from ..core.validate import float_dtype
from .embedding import cosine_layout, cosine_row


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
        g = gscale[r] if gscale.size > 0 else g0
        if is_mean:
            g = g / n_rows
        g = 0.0 if coef == 0.0 else g * coef  # as the CPU kernel
        ga = g / den
        b1 = g * cos / m1
        b2 = g * cos / m2
        for d in range(tid, D, TPB):
            a = float64(x1[r, d])
            c = float64(x2[r, d])
            g1[r, d] = ga * c - b1 * a
            g2[r, d] = ga * a - b2 * c


def _rows(call, a, name, shape, dtype):
    """``a`` as a contiguous device ``(rows, D)`` array of the loss's input shape."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} of shape {tuple(a.shape)}: on the device input1 and input2 must have the same shape "
                         f"{tuple(shape)}; broadcast them first")
    if np.dtype(a.dtype) != dtype:
        raise TypeError(f"{name} on the device must have input1's dtype {dtype}, got {np.dtype(a.dtype)}")
    if not a.is_c_contiguous():
        raise ValueError(f"{name}: non-contiguous Numba device arrays are not supported here; pass a contiguous array")
    return a.reshape(int(np.prod(shape[:-1], dtype=np.int64)), shape[-1])


def run(spec, input1, input2, target, *, reduction, return_grad, grad_output, margin=0.0):
    """The device path of ``cosine_embedding_loss`` (see :class:`numbaloss.core.registry.Loss`)."""
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
