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
tree in shared memory per block, then one block sums the per-block partials in
a fixed order (:func:`sum_partials`).  The only atomic is an integer
``atomic.min`` on the error buffer, whose result does not depend on order.
"""

import math

import numpy as np
from numba import config, cuda, float64

#: Threads per block of every kernel (a power of two: the tree reductions halve it).
#: Numba's simulator runs every thread as a Python thread, so it gets small blocks.
TPB = 32 if config.ENABLE_CUDASIM else 256
#: Elements per block of the elementwise kernels and the target pass.
CHUNK = TPB * 16


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
@cuda.jit(device=True)
def block_sum(sm, tid):
    """Sum ``sm[0:TPB]`` into ``sm[0]`` by halving: a fixed tree, the same every launch."""
    step = TPB // 2
    while step > 0:
        cuda.syncthreads()
        if tid < step:
            sm[tid] += sm[tid + step]
        step //= 2
    cuda.syncthreads()


@cuda.jit
def _sum_partials_kernel(part, denom, is_mean, result):
    """One block: ``result[0] = sum(part)`` (``/ denom[0]`` when ``is_mean``), fixed order."""
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, part.size, TPB):
        acc += part[i]
    sm[tid] = acc
    block_sum(sm, tid)
    if tid == 0:
        total = sm[0]
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
