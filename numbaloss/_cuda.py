"""CUDA plumbing shared by every loss: array families, device views, block reductions.

Imported only when a CUDA array arrives, so CPU users never import numba.cuda.

Array families: CuPy arrays, PyTorch CUDA tensors and Numba device arrays all
expose ``__cuda_array_interface__`` (Numba's simulator arrays expose
``__cuda_ndarray__``).  Inputs are viewed as Numba device arrays without a copy
(``numba.cuda.as_cuda_array``, which honours the interface's ``strides``);
results and scratch are allocated by the caller's own library and handed back
as its arrays.  Streams and devices: see :class:`Call`.

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
from ._dispatch import is_device_array


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


def declared_stream(a):
    """The stream ``a`` is ordered on, as a raw handle (0: CUDA's legacy default stream).

    torch tensors: torch's current stream on their device (torch's
    ``__cuda_array_interface__`` declares none).  Others: the stream their
    interface declares (CuPy's current stream at export; a Numba array's bound
    stream); its ``1`` and an absent field both mean the legacy default stream.
    """
    if family(a) == "torch":
        import torch

        return torch.cuda.current_stream(a.device).cuda_stream
    cai = getattr(a, "__cuda_array_interface__", None)
    handle = None if cai is None else cai.get("stream")
    return 0 if handle in (None, 1) else int(handle)


def _stream(handle):
    """A Numba stream object for a raw handle."""
    return cuda.legacy_default_stream() if handle == 0 else cuda.external_stream(handle)


#: The error buffer's "no error" value: eight 0x7F bytes (a byte memset), above any index.
NO_ERROR = 0x7F7F7F7F7F7F7F7F

#: Zero-size device arrays (absent weight, target or gradient), made once per dtype and rank.
_NOTHING = {}


class Call:
    """Where one loss call runs on the GPU: its stream, and the array family its results belong to.

    Stream: the one the input's own library is using, so the call is ordered
    after the work that produced its inputs without the host waiting for it.
    For a torch tensor that is torch's current stream on the tensor's device
    (torch's ``__cuda_array_interface__`` declares no stream); for CuPy and other
    producers, the stream their interface declares (CuPy's current stream at
    export); for a Numba device array, the stream it is bound to.  Without any,
    CUDA's legacy default stream.  Every kernel, copy and allocation of the call
    goes to that stream.  A target, weight or grad_output whose interface
    declares another stream is waited for (host synchronization on that stream).

    Device: Numba's current device (Numba keeps one CUDA context per host
    thread).  A torch or CuPy input on another GPU is a clear ValueError rather
    than a cross-device access.

    Memory: results and scratch come from the family's own allocator (torch's
    caching allocator, CuPy's memory pool, or Numba's memory manager for Numba
    arrays), so results are the family's own arrays and nothing is converted on
    the way out.
    """

    def __init__(self, input):
        self.family = family(input)
        self.device = None
        if self.family in ("torch", "cupy"):
            self._lib = __import__(self.family)
            self.device = input.device
            self._check_device(input.device.index if self.family == "torch" else input.device.id)
        self.handle = declared_stream(input)
        self.stream = _stream(self.handle)

    @staticmethod
    def _check_device(index):
        current = cuda.get_current_device().id
        if index is not None and index != current:
            raise ValueError(
                f"input is on CUDA device {index} but Numba's current device in this thread is {current}; "
                f"select it first (numba.cuda.select_device({index}), or torch.cuda.set_device({index}) "
                "before the first GPU call)"
            )

    def view(self, a, name):
        """A Numba device array viewing ``a``, no copy (strides honoured)."""
        if family(a) == "torch":
            a = a.detach()
        if not is_device_array(a):
            raise TypeError(f"{name} must be a CUDA array, got {type(a).__name__}")
        other = declared_stream(a)
        if other != self.handle:  # produced on another stream: wait for it
            _stream(other).synchronize()
        if getattr(a, "__cuda_ndarray__", False):  # already a Numba device array (or the simulator's)
            return a
        return cuda.as_cuda_array(a, sync=False)

    def input(self, a, name):
        """:meth:`view`; CuPy/torch arrays of 3+ dims are made contiguous by their own library first."""
        if getattr(a, "ndim", 0) > 2 and self.family in ("cupy", "torch") and family(a) == self.family:
            a = a.detach().contiguous() if self.family == "torch" else self._lib.ascontiguousarray(a)
        return self.view(a, name)

    def empty(self, shape, dtype):
        """An uninitialized device array from the family's allocator, as a Numba view."""
        dtype = np.dtype(dtype)
        if self.family == "torch":
            t = self._lib.empty(shape, dtype=getattr(self._lib, dtype.name), device=self.device)
            return cuda.as_cuda_array(t, sync=False)
        if self.family == "cupy":
            with self.device:
                return cuda.as_cuda_array(self._lib.empty(shape, dtype), sync=False)
        return cuda.device_array(shape, dtype, stream=self.stream)

    @staticmethod
    def nothing(dtype, ndim=1):
        """A zero-size device array (never read or written): an absent optional argument."""
        key = (np.dtype(dtype), ndim)
        if key not in _NOTHING:
            _NOTHING[key] = cuda.device_array((0,) * ndim, key[0])
        return _NOTHING[key]

    def to_device(self, host):
        """A host array copied to the device, on the call's stream."""
        d = self.empty(host.shape, host.dtype)
        d.copy_to_device(np.ascontiguousarray(host), stream=self.stream)
        return d

    def param(self, p, name, dtype):
        """weight / pos_weight on the device in ``dtype``: NumPy is copied once, device arrays are used in place."""
        if p is None:
            return self.nothing(dtype)
        if is_device_array(p):
            d = self.view(p, name)
            if np.dtype(d.dtype) != dtype:
                raise TypeError(f"{name} on the device must have the input's dtype {dtype}, got {np.dtype(d.dtype)}")
            return d
        return self.to_device(np.ascontiguousarray(np.asarray(p), dtype=dtype))

    def launch(self, kernel, blocks, *args):
        kernel[blocks, TPB, self.stream](*args)

    def error_buffer(self):
        """A one-element int64 buffer holding ``NO_ERROR``; kernels ``atomic.min`` an index into it.

        Set by a device memset on the call's stream: no host-to-device copy, which
        from pageable memory may wait for the stream.
        """
        err = self.empty(1, np.int64)
        if config.ENABLE_CUDASIM:
            err.copy_to_device(np.array([NO_ERROR], np.int64))
        else:
            from numba.cuda.cudadrv.driver import device_memset

            device_memset(err, NO_ERROR & 0xFF, 8, stream=self.stream)
        return err

    def first_error(self, err):
        """Index recorded in the error buffer, or -1: the one device-to-host copy (it waits for the call's kernels)."""
        host = err.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        pos = int(host[0])
        return -1 if pos == NO_ERROR else pos

    def result(self, d):
        """``d`` (from :meth:`empty`, maybe reshaped) as the family's own array, without a copy."""
        if self.family == "numba":
            return d
        owner = d.gpu_data.owner  # the tensor / CuPy array that :meth:`empty` allocated
        return owner.view(tuple(d.shape)) if self.family == "torch" else owner.reshape(d.shape)


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


@cuda.jit(device=True)
def denominator(denom, denom0):
    """The mean's denominator: computed on the device (``denom[0]``), or known on the host
    (``denom0``, with ``denom`` empty), which then costs no copy."""
    return denom[0] if denom.size > 0 else denom0


@cuda.jit
def _sum_partials_kernel(part, dpart, denom0, is_mean, result):
    """One block: ``result[0] = sum(part)``, divided for ``is_mean`` by ``sum(dpart)`` (``denom0`` when
    ``dpart`` is empty).  Fixed order: a one-element ``dpart`` is its own sum, and per-block weight
    partials sum exactly as a separate pass over them would."""
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, part.size, TPB):
        acc += part[i]
    dacc = 0.0
    for i in range(tid, dpart.size, TPB):
        dacc += dpart[i]
    total = group_sum(acc, sm, tid, TPB)
    dsum = group_sum(dacc, sm, tid, TPB)
    if tid == 0:
        if is_mean:
            d = dsum if dpart.size > 0 else denom0
            total = total / d if d != 0.0 else (math.nan if total == 0.0 else total / d)
        result[0] = total


def sum_partials(call, part, denom, is_mean, dtype):
    """The loss as a 0-d device array of ``dtype`` (the call's family): partials combined on the device.

    ``denom``: ``(device partials, host float)``: the mean divides by the partials' sum (the host
    float when there are none).
    """
    result = call.empty(1, dtype)
    call.launch(_sum_partials_kernel, 1, part, denom[0], denom[1], is_mean, result)
    return call.result(result.reshape(()))
