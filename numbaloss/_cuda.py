"""CUDA plumbing shared by every loss: array families, device views, block reductions.

Imported only when a CUDA array arrives, so CPU users never import numba.cuda.

Array families: CuPy arrays, PyTorch CUDA tensors and Numba device arrays all
expose ``__cuda_array_interface__`` (Numba's simulator arrays expose
``__cuda_ndarray__``).  Inputs are viewed as Numba device arrays without a copy
(``numba.cuda.as_cuda_array``, which honours the interface's ``strides`` and
synchronizes on its ``stream`` field); results are created as Numba device
arrays and handed back in the caller's family, again without a copy.

Streams: kernels are launched on Numba's default stream.  Importing an input
through the array interface first waits on the stream the producer declared, so
work queued by CuPy or torch on their current stream is ordered before ours.

Determinism: no floating-point atomics anywhere.  Every reduction is a fixed
order per block (warp shuffle butterflies, then the warps' sums through shared
memory, :func:`group_sum`), then one block sums the per-block partials in a
fixed order (:func:`sum_partials`).  The only atomic is an integer
``atomic.min`` on the error buffer, whose result does not depend on order.
"""

import math

import numpy as np
from numba import config, cuda, float64

from . import _math


#: Threads per block of every kernel (a power of two: the tree reductions halve it).
#: Numba's simulator runs every thread as a Python thread, so it gets small blocks
#: (two warps: enough to exercise the cross-warp step of the reductions).
TPB = 64 if config.ENABLE_CUDASIM else 256
#: Elements per block of the elementwise kernels and the target pass.
CHUNK = TPB * 16


def cuda_overload(func, typer, **options):
    """Register ``typer`` (an ``@overload``-style function) for ``func`` on the CUDA target too.

    Overloads registered with ``numba.extending.overload`` serve the CPU only;
    kernels here share helpers such as ``_classification._row`` with the CPU
    kernels, so their typers are registered once more for CUDA.  A no-op on the
    simulator, which runs the helpers' plain Python bodies.
    """
    if not config.ENABLE_CUDASIM:
        from numba.cuda.extending import overload

        overload(func, target="cuda", **options)(typer)


# The shared scalar formulas (``_binary.bce_*``, ``_classification.class_row_loss``)
# call ``_math.exp``/``log``/``log1p``/``exp_neg``.  On the CPU those are the
# branch-free polynomials (no SVML there); on the GPU libdevice's own functions
# are fast and accurate, and the polynomials' ``np.floor`` has no CUDA lowering.
for _f, _fn in ((_math.exp, math.exp), (_math.exp_neg, math.exp), (_math.log, math.log), (_math.log1p, math.log1p)):
    cuda_overload(_f, _math.by_type({"float32": _fn, "float64": _fn}))
cuda_overload(_math.like, _math._like_overload)


def family(a):
    """``"cupy"``, ``"torch"`` or ``"numba"``: where results must go back to."""
    mod = type(a).__module__.split(".")[0]
    if mod in ("cupy", "torch"):
        return mod
    return "numba"


def device_view(a, name):
    """A Numba device array viewing ``a`` (no copy where the layout allows one)."""
    if hasattr(a, "__cuda_ndarray__") or isinstance(a, cuda.devicearray.DeviceNDArray):
        return a
    fam = family(a)
    if fam == "torch":
        a = a.detach()
    if not hasattr(a, "__cuda_array_interface__"):
        raise TypeError(f"{name} must be a CUDA array, got {type(a).__name__}")
    return cuda.as_cuda_array(a)


def prepare_input(a, name):
    """Device view of ``a``; CuPy/torch inputs of 3+ dims are made contiguous by their library."""
    fam = family(a)
    if getattr(a, "ndim", 0) > 2 and fam in ("cupy", "torch"):
        if fam == "torch":
            a = a.detach().contiguous()
        else:
            import cupy

            a = cupy.ascontiguousarray(a)
    return device_view(a, name)


def device_param(p, name, dtype):
    """weight / pos_weight on the device in ``dtype``: NumPy is copied once, device arrays are used in place."""
    if p is None:
        return cuda.device_array(0, dtype)
    if hasattr(p, "__cuda_array_interface__") or hasattr(p, "__cuda_ndarray__"):
        d = device_view(p, name)
        if np.dtype(d.dtype) != dtype:
            raise TypeError(f"{name} on the device must have the input's dtype {dtype}, got {np.dtype(d.dtype)}")
        return d
    host = np.ascontiguousarray(np.asarray(p), dtype=dtype)
    return cuda.to_device(host)


def wrap(d, fam):
    """Hand a Numba device array back in the caller's array family, without a copy."""
    if fam == "cupy":
        import cupy

        return cupy.asarray(d)
    if fam == "torch":
        import torch

        return torch.as_tensor(d, device="cuda")
    return d


def empty(shape, dtype):
    return cuda.device_array(shape, dtype)


def grid_blocks(n, per_block):
    return max(1, -(-n // per_block))


# ------------------------------------------------------------------ reductions
WARP = 32

if config.ENABLE_CUDASIM:
    # The simulator has no warp shuffles: exchange through shared memory instead,
    # so the reduction code around the shuffle (lanes, order, broadcast) is what runs.
    @cuda.jit(device=True)
    def _shfl_xor(v, d, scratch, tid):
        cuda.syncthreads()
        scratch[tid] = v
        cuda.syncthreads()
        return scratch[tid ^ d]

else:

    @cuda.jit(device=True)
    def _shfl_xor(v, d, scratch, tid):
        return cuda.shfl_xor_sync(0xFFFFFFFF, v, d)


@cuda.jit(device=True)
def group_sum(v, sm, tid, G):
    """Sum of ``v`` over the ``G`` threads of a group (``G`` = 32 or ``TPB``), returned to every thread.

    A warp butterfly (``shfl_xor``) first: both partners add the same two
    numbers, and float addition commutes, so every lane holds bitwise the same
    sum.  For a whole block, each warp's sum then goes through shared memory and
    every thread adds them in warp order.  Fixed order, no atomics: deterministic.
    ``sm`` is a ``float64`` shared array of ``TPB``; every thread of the block
    must call this (the shuffles and barriers are collective).
    """
    v = float64(v)
    d = WARP // 2
    while d > 0:
        v += _shfl_xor(v, d, sm, tid)
        d //= 2
    if G > WARP:
        cuda.syncthreads()
        if tid % WARP == 0:
            sm[tid // WARP] = v
        cuda.syncthreads()
        v = 0.0
        for k in range(G // WARP):
            v += sm[k]
        cuda.syncthreads()
    return v


@cuda.jit(device=True)
def merge_max_exp(m1, s1, m2, s2):
    """Merge two online ``(max, sum exp(x - max))`` pairs; a -inf max adds nothing, NaN sums stay NaN.

    Symmetric in its two pairs, so butterfly partners get the same bits.
    """
    m = m1 if m1 > m2 else m2
    if m == -math.inf:
        return m, s1 + s2
    a = s1 * math.exp(m1 - m) if m1 != -math.inf else s1 * 0.0
    b = s2 * math.exp(m2 - m) if m2 != -math.inf else s2 * 0.0
    return m, a + b


@cuda.jit(device=True)
def group_max_exp(m, s, sm_m, sm_s, tid, G):
    """:func:`group_sum` for online ``(max, sum of exp)`` pairs, merged with :func:`merge_max_exp`."""
    m = float64(m)
    s = float64(s)
    d = WARP // 2
    while d > 0:
        m2 = _shfl_xor(m, d, sm_m, tid)
        s2 = _shfl_xor(s, d, sm_s, tid)
        m, s = merge_max_exp(m, s, m2, s2)
        d //= 2
    if G > WARP:
        cuda.syncthreads()
        if tid % WARP == 0:
            sm_m[tid // WARP] = m
            sm_s[tid // WARP] = s
        cuda.syncthreads()
        m = sm_m[0]
        s = sm_s[0]
        for k in range(1, G // WARP):
            m, s = merge_max_exp(m, s, sm_m[k], sm_s[k])
        cuda.syncthreads()
    return m, s


@cuda.jit(device=True)
def chunk_bounds(n):
    """``(lo, hi)``: the ``CHUNK`` elements of ``n`` that this block owns (threads stride inside)."""
    lo = cuda.blockIdx.x * CHUNK
    return lo, min(lo + CHUNK, n)


@cuda.jit(device=True)
def store_block_sum(acc, sm, tid, part):
    """``part[block] = `` the block's sum of ``acc`` (:func:`group_sum`); every thread must call it."""
    total = group_sum(acc, sm, tid, TPB)
    if tid == 0:
        part[cuda.blockIdx.x] = total


@cuda.jit
def block_partials(values, part):
    """Per-block sums of ``values`` over fixed chunks (the first pass of a deterministic sum)."""
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lo, hi = chunk_bounds(values.size)
    acc = 0.0
    for i in range(lo + tid, hi, TPB):
        acc += values[i]
    store_block_sum(acc, sm, tid, part)


@cuda.jit
def _sum_partials_kernel(part, denom, is_mean, result):
    """One block: ``result[0] = sum(part)`` (``/ denom[0]`` when ``is_mean``), fixed order."""
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, part.size, TPB):
        acc += part[i]
    total = group_sum(acc, sm, tid, TPB)
    if tid == 0:
        if is_mean:
            d = denom[0]
            total = total / d if d != 0.0 else (math.nan if total == 0.0 else total / d)
        result[0] = total


def sum_partials(part, denom, is_mean, dtype):
    """The loss as a 0-d device array of ``dtype``: partials combined on the device."""
    result = cuda.device_array(1, dtype)
    _sum_partials_kernel[1, TPB](part, denom, is_mean, result)
    return result.reshape(())


def host_scalar_on_device(value):
    return cuda.to_device(np.array([float(value)]))


def first_error(err, n):
    """Index recorded in the 1-element error buffer, or -1: the one device-to-host copy a check costs."""
    pos = int(err.copy_to_host()[0])
    return -1 if pos >= n else pos


def error_buffer(n):
    return cuda.to_device(np.array([n], np.int64))
