"""CUDA kernel for ``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``.

Fixed chunks of ``CHUNK`` elements per block (threads stride inside the chunk),
the scalar formulas of ``_binary`` per element, and a fixed shared-memory tree
per block for the partial sums; ``_cuda.sum_partials`` finishes on the device.
BCE inputs outside [0, 1] are recorded in the error buffer (integer
``atomic.min``) and raised on the host after the kernel, as on the CPU.
"""

import numpy as np
from numba import cuda, float64

from . import _cuda
from ._binary import bce_grad, bce_logits_grad, bce_logits_value, bce_value
from ._classification_cuda import _grad_scale, _zero
from ._dispatch import is_device_array
from ._cuda import TPB, chunk_bounds, store_block_sum
from ._validate import broadcast_shape, check_same_shape, float_dtype


@cuda.jit(device=True)
def _entry(i, xi, ti, w, pw, logits, gscale, g, out, grad, err):
    """Element ``i``'s weighted loss (returned; stored when ``out`` is wanted) and its gradient."""
    wi = w[i] if w.size > 0 else 1.0
    pwi = pw[i] if pw.size > 0 else 1.0
    if logits:
        loss = bce_logits_value(xi, ti, pwi) * wi
    else:
        if not (xi >= 0.0 and xi <= 1.0):
            cuda.atomic.min(err, 0, i)
        loss = bce_value(xi, ti) * wi
    if out.size > 0:
        out[i] = loss
    if grad.size > 0:
        gi = gscale[i] if gscale.size > 0 else g
        if logits:
            grad[i] = bce_logits_grad(xi, ti, pwi) * wi * gi
        else:
            grad[i] = bce_grad(xi, ti) * wi * gi
    return loss


@cuda.jit
def _binary_cuda(x, t, w, pw, logits, gscale, g0, n, is_mean, out, grad, part, err):
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lo, hi = chunk_bounds(x.size)
    acc = 0.0
    g = g0
    if is_mean:
        g = g / n
    # Four elements' loads (eight with the targets) are issued before any is used:
    # several reads in flight per thread cover memory latency.
    i = lo + tid
    while i + 3 * TPB < hi:
        x0, x1, x2, x3 = x[i], x[i + TPB], x[i + 2 * TPB], x[i + 3 * TPB]
        t0, t1, t2, t3 = t[i], t[i + TPB], t[i + 2 * TPB], t[i + 3 * TPB]
        acc += _entry(i, x0, t0, w, pw, logits, gscale, g, out, grad, err)
        acc += _entry(i + TPB, x1, t1, w, pw, logits, gscale, g, out, grad, err)
        acc += _entry(i + 2 * TPB, x2, t2, w, pw, logits, gscale, g, out, grad, err)
        acc += _entry(i + 3 * TPB, x3, t3, w, pw, logits, gscale, g, out, grad, err)
        i += 4 * TPB
    while i < hi:
        acc += _entry(i, x[i], t[i], w, pw, logits, gscale, g, out, grad, err)
        i += TPB
    store_block_sum(acc, sm, tid, part)


def _flat_param(call, p, name, dtype, shape):
    """weight / pos_weight broadcast to the input's shape, flat, on the device."""
    if p is None:
        return call.nothing(dtype)
    if is_device_array(p):
        d = call.view(p, name)
        broadcast_shape(d.shape, shape, name)
        if tuple(d.shape) != tuple(shape):
            # broadcasting on the device is not implemented: one small host round trip for the parameter
            p = d.copy_to_host(stream=call.stream)
        else:
            return call.param(d, name, dtype).reshape(int(np.prod(shape)))
    host = np.asarray(p)
    broadcast_shape(host.shape, shape, name)
    return call.param(np.broadcast_to(host, shape).reshape(-1), name, dtype)


def run(input, target, weight, pos_weight, reduction, return_grad, grad_output, logits):
    call = _cuda.Call(input)
    x = call.input(input, "input")
    t = call.input(target, "target")
    dtype = float_dtype(x.dtype)
    check_same_shape(x.shape, t.shape)
    if np.dtype(t.dtype) != dtype:
        raise TypeError(f"target on the device must have the input's dtype {dtype}, got {np.dtype(t.dtype)}")
    shape = tuple(x.shape)
    M = int(np.prod(shape))
    for a, name in ((x, "input"), (t, "target")):
        if len(shape) > 1 and not a.is_c_contiguous():
            raise ValueError(f"{name}: non-contiguous Numba device arrays are not supported here; pass a contiguous array")
    xf = x.reshape(M) if x.ndim != 1 else x
    tf = t.reshape(M) if t.ndim != 1 else t
    w = _flat_param(call, weight, "weight", dtype, shape)
    pw = _flat_param(call, pos_weight, "pos_weight", dtype, shape)
    gscale, g0 = _grad_scale(call, reduction, grad_output, shape, return_grad)
    out = call.empty(M, dtype) if reduction == "none" else call.nothing(dtype)
    grad = call.empty(M, dtype) if return_grad else call.nothing(dtype)
    nb = _cuda.grid_blocks(M, _cuda.CHUNK)
    part = call.empty(nb, np.float64)
    err = call.error_buffer() if not logits else call.nothing(np.int64)
    if M:
        call.launch(_binary_cuda, nb, xf, tf, w, pw, logits, gscale, g0, float(M), reduction == "mean", out, grad, part, err)
    else:
        call.launch(_zero, 1, part)
    if reduction == "none":
        result = call.result(out.reshape(shape))
    else:
        result = _cuda.sum_partials(call, part, (call.nothing(np.float64), float(M)), reduction == "mean", dtype)
    if not logits:
        pos = call.first_error(err)
        if pos >= 0:
            value = xf[pos : pos + 1].copy_to_host()[0]
            raise ValueError(
                f"all elements of input should be between 0 and 1; input{[int(i) for i in np.unravel_index(pos, shape)]} "
                f"= {value}"
            )
    if return_grad:
        return result, call.result(grad.reshape(shape))
    return result
