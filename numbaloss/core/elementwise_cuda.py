"""The elementwise template on the GPU: a loss's scalar formulas in, its ``@cuda.jit`` kernel out.

The same formulas as the CPU template (:mod:`numbaloss.core.elementwise`), the
same ``loss_i = w_i * value(x_i, t_i, p_i, k)`` and ``grad * w * g``.  Fixed
chunks of ``CHUNK`` elements per block (threads stride inside the chunk) and a
fixed-order block sum (:func:`~numbaloss.core.cuda_reduce.store_block_sum`),
so results do not depend on the grid.  Broadcast parameters are read through
their broadcast strides (the CPU template's ``pmap``), never expanded to the
input's size.  Inputs failing ``check`` are recorded in the error buffer
(integer ``atomic.min``) and raised on the host after the kernels.

On the GPU there is no on-disk cache, so each loss's kernel is a closure over
its formulas, made on first use.
"""

import numpy as np
from numba import cuda, float64

from . import cuda_host
from .cuda_host import HostTarget, device_grad_scale, zero_kernel
from .cuda_reduce import CHUNK, TPB, chunk_bounds, grid_blocks, store_block_sum, sum_partials
from .dispatch import is_device_array
from .elementwise import broadcast_map, data_param
from .validate import broadcast_shape, float_dtype


@cuda.jit(device=True)
def map_offset(i, m, at):
    """The offset of flat index ``i`` through the map at ``m[at:]``: ``[nd, sizes..., strides...]``
    (a broadcast parameter's ``pmap``; each part of :func:`sum_map`)."""
    nd = m[at]
    off = 0
    r = i
    for d in range(nd - 1, -1, -1):
        n = m[at + 1 + d]
        off += (r % n) * m[at + 1 + nd + d]
        r //= n
    return off


@cuda.jit(device=True)
def param_at(p, pmap, i):
    """The broadcast parameter's value at flat input position ``i`` (``p[i]`` when ``pmap`` is empty)."""
    if pmap.size == 0:
        return p[i]
    return p[map_offset(i, pmap, 0)]


def _make_kernel(value, grad, param_grad, check):
    param_grad = param_grad or grad  # never called without a param gradient buffer

    @cuda.jit(device=True)
    def entry(i, xi, ti, w, wmap, p, pmap, k, gscale, g, out, grad_, pgrad, err):
        """Element ``i``'s weighted loss (returned; stored when ``out`` is wanted) and its gradients."""
        wi = param_at(w, wmap, i) if w.size > 0 else 1.0
        pi = param_at(p, pmap, i) if p.size > 0 else 1.0
        if not check(xi, ti, pi, k):
            cuda.atomic.min(err, 0, i)
        loss = value(xi, ti, pi, k) * wi
        if out.size > 0:
            out[i] = loss
        if grad_.size > 0:
            gi = gscale[i] if gscale.size > 0 else g
            grad_[i] = grad(xi, ti, pi, k) * wi * gi
            if pgrad.size > 0:
                pgrad[i] = param_grad(xi, ti, pi, k) * wi * gi
        return loss

    @cuda.jit
    def kernel(x, t, tmap, w, wmap, p, pmap, k, gscale, g0, n, is_mean, out, grad_, pgrad, part, err):
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
            t0, t1 = param_at(t, tmap, i), param_at(t, tmap, i + TPB)
            t2, t3 = param_at(t, tmap, i + 2 * TPB), param_at(t, tmap, i + 3 * TPB)
            acc += entry(i, x0, t0, w, wmap, p, pmap, k, gscale, g, out, grad_, pgrad, err)
            acc += entry(i + TPB, x1, t1, w, wmap, p, pmap, k, gscale, g, out, grad_, pgrad, err)
            acc += entry(i + 2 * TPB, x2, t2, w, wmap, p, pmap, k, gscale, g, out, grad_, pgrad, err)
            acc += entry(i + 3 * TPB, x3, t3, w, wmap, p, pmap, k, gscale, g, out, grad_, pgrad, err)
            i += 4 * TPB
        while i < hi:
            acc += entry(i, x[i], param_at(t, tmap, i), w, wmap, p, pmap, k, gscale, g, out, grad_, pgrad, err)
            i += TPB
        store_block_sum(acc, sm, tid, part)

    return kernel


_KERNELS = {}


def kernel_of(spec, options=None):
    """The loss's CUDA kernel for the formulas ``options`` select, made on first use."""
    key, value, grad, param_grad = spec.family.formulas(options or {})
    if (spec.name, key) not in _KERNELS:
        _KERNELS[spec.name, key] = _make_kernel(value, grad, param_grad, spec.family.check)
    return _KERNELS[spec.name, key]


def _param(call, p, name, dtype, shape, f=None, as_shape=None):
    """An optional broadcast parameter on the device, compact, with its ``pmap`` (see ``broadcast_map``)
    and its sum when ``f`` divides ``"mean"`` by it (``weighted_mean``; a device weight is copied back
    once for that).  ``as_shape``: the shape it broadcasts as, when not its own (a ``(N,)`` var on
    an ``(N, D)`` input broadcasts as ``(N, 1)``)."""
    if p is None:
        return call.nothing(dtype), call.nothing(np.int64), None
    if is_device_array(p):
        d = call.param(p, name, dtype)
        if not d.is_c_contiguous():
            raise ValueError(f"{name}: non-contiguous device arrays are not supported here; pass a contiguous array")
        pshape = tuple(d.shape)
        flat = d.reshape(d.size) if d.ndim != 1 else d
    else:
        host = np.asarray(p)
        pshape = host.shape
        flat = call.param(host.reshape(-1), name, dtype)
    if as_shape is not None:
        pshape = tuple(as_shape)
    if f is not None:  # the scale: on the device the input always has the loss's shape
        f.check_scale(pshape, shape)
    broadcast_shape(pshape, shape, name)
    pmap = broadcast_map(shape, pshape)
    total = None
    if f is not None and f.weighted_mean:
        total = host if not is_device_array(p) else flat.copy_to_host()
    return flat, (call.to_device(pmap) if pmap.size else call.nothing(np.int64)), total


@cuda.jit
def sum_to_param_kernel(g, out, rmap):
    """``out[o]`` = the sum, in a fixed order (float64), of the loss-shaped ``g`` over the positions
    that read param element ``o``: a broadcast param's gradient summed back to its shape.

    ``rmap = [nk, kept sizes..., kept strides..., nr, reduced sizes..., reduced strides...]``
    (strides into ``g``): the param's own dimensions, in its order, then the broadcast ones.
    """
    o = cuda.grid(1)
    if o >= out.size:
        return
    base = map_offset(o, rmap, 0)
    q = 1 + 2 * rmap[0]  # where the broadcast dimensions' part starts
    count = 1
    for d in range(rmap[q]):
        count *= rmap[q + 1 + d]
    acc = 0.0
    for j in range(count):
        acc += g[base + map_offset(j, rmap, q)]
    out[o] = acc


def sum_map(shape, p_shape):
    """``rmap`` of :func:`sum_to_param_kernel` for a param of ``p_shape`` broadcast to ``shape``."""
    strides = [int(np.prod(shape[i + 1 :], dtype=np.int64)) for i in range(len(shape))]
    p_full = (1,) * (len(shape) - len(p_shape)) + tuple(p_shape)
    kept = [(n, s) for n, q, s in zip(shape, p_full, strides) if q == n and n != 1]
    red = [(n, s) for n, q, s in zip(shape, p_full, strides) if q != n]
    return np.array([len(kept)] + [n for n, _ in kept] + [s for _, s in kept]
                    + [len(red)] + [n for n, _ in red] + [s for _, s in red], np.int64)


def run(spec, *arrays, reduction, return_grad, grad_output, **options):
    """The device path of every elementwise loss (see :class:`numbaloss.core.registry.Loss`)."""
    f = spec.family
    if f.precheck is not None:
        f.precheck(options, reduction)
    data = dict(zip(f.roles, arrays))
    input, target = data["input"], data["target"]
    call = cuda_host.Call(input)
    names = dict(zip(f.roles, spec.arrays))  # errors name the caller's argument (margin_ranking's input1)
    x = call.input(input, names["input"])
    t = call.input(target, names["target"])
    dtype = float_dtype(x.dtype, names["input"])
    w, p, k = f.options_of(options)
    p_shape = p_own_shape = None
    want_pgrad = False
    if f.data_param:  # a host data param (a float var) is copied once by _param
        p, p_shape, p_own_shape, want_pgrad = data_param(f, data["param"], x.shape, t.shape)
        want_pgrad = want_pgrad and return_grad
    shape = f.shapes(x.shape, t.shape, p_shape)
    if shape != tuple(x.shape):
        raise ValueError(f"input of shape {tuple(x.shape)} broadcast to {shape} by the other arrays: on the device, "
                         "broadcast the input to the loss's shape first")
    if np.dtype(t.dtype) != dtype:
        raise TypeError(f"target on the device must have the input's dtype {dtype}, got {np.dtype(t.dtype)}")
    m = int(np.prod(shape))
    if len(shape) > 1 and not x.is_c_contiguous():
        raise ValueError("input: non-contiguous Numba device arrays are not supported here; pass a contiguous array")
    xf = x.reshape(m) if x.ndim != 1 else x
    w, wmap, w_host = _param(call, w, f.scale, dtype, shape, f)
    p, pmap, _ = _param(call, p, f.param, dtype, shape, as_shape=p_shape)
    if tuple(t.shape) == shape:  # read in place, like the input
        if len(shape) > 1 and not t.is_c_contiguous():
            raise ValueError("target: non-contiguous Numba device arrays are not supported here; pass a contiguous array")
        t, tmap = (t.reshape(m) if t.ndim != 1 else t), call.nothing(np.int64)
    else:
        t, tmap, _ = _param(call, t, "target", dtype, shape)
    red = "mean" if reduction == "batchmean" else reduction
    denominator = float(f.denominator(reduction, w_host, shape))
    gscale, g0 = device_grad_scale(call, red, grad_output, shape, return_grad)
    out = call.empty(m, dtype) if red == "none" else call.nothing(dtype)
    grad = call.empty(m, dtype) if return_grad else call.nothing(dtype)
    pgrad = call.empty(m, dtype) if want_pgrad else call.nothing(dtype)
    nb = grid_blocks(m, CHUNK)
    part = call.empty(nb, np.float64)
    err = call.error_buffer() if f.check_error else call.nothing(np.int64)
    if m:
        args = (xf, t, tmap, w, wmap, p, pmap, k, gscale, g0, denominator, red == "mean", out, grad, pgrad, part, err)
        call.launch(kernel_of(spec, options), nb, *args)
    else:
        call.launch(zero_kernel, 1, part)
    if red == "none":
        value = call.result(out.reshape(shape))
    else:
        value = sum_partials(call, part, (call.nothing(np.float64), denominator), red == "mean", dtype)
    if f.check_error:
        pos = call.first_error(err)
        if pos >= 0:
            raise f.check_error_at(pos, shape, HostTarget(xf), HostTarget(p), p_shape, p_own_shape)
    if not return_grad:
        return value, ()
    grads = (call.result(grad.reshape(shape)),)
    if f.param_grad is not None:
        grads += (_sum_to_param(call, pgrad, shape, p_shape, p_own_shape) if want_pgrad else None,)
    return value, grads


def _sum_to_param(call, g, shape, p_shape, own_shape):
    """The param's gradient: ``g`` (loss-shaped, flat) summed over the param's broadcast dimensions."""
    if int(np.prod(p_shape, dtype=np.int64)) == g.size:
        return call.result(g.reshape(own_shape) if own_shape else g.reshape(()))
    size = int(np.prod(p_shape, dtype=np.int64))
    out = call.empty(size, g.dtype)
    if size:
        call.launch(sum_to_param_kernel, grid_blocks(size, TPB), g, out, call.to_device(sum_map(shape, p_shape)))
    return call.result(out.reshape(own_shape))
