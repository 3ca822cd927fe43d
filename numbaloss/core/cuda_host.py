"""CUDA host plumbing shared by every loss: array families, streams, device views, the error buffer.

Imported only when a CUDA array arrives, so CPU users never import numba.cuda.

Array families: CuPy arrays, PyTorch CUDA tensors and Numba device arrays all
expose ``__cuda_array_interface__`` (Numba's simulator arrays expose
``__cuda_ndarray__``).  Inputs are viewed as Numba device arrays without a copy
(``numba.cuda.as_cuda_array``, which honours the interface's ``strides``);
results and scratch are allocated by the caller's own library and handed back
as its arrays.  Streams and devices: see :class:`Call`.

Determinism: the reductions live in :mod:`numbaloss.core.cuda_reduce` (fixed
order, no floating-point atomics).  The only atomic is an integer ``atomic.min``
on the error buffer, whose result does not depend on order.
"""

import math

import numpy as np
from numba import config, cuda

from . import vmath
from .cuda_reduce import CHUNK, TPB, block_partials, grid_blocks, sum_partials
from .dispatch import is_device_array
from .reduce import grad_scale




def cuda_overload(func, typer, **options):
    """Register ``typer`` (an ``@overload``-style function) for ``func`` on the CUDA target too.

    Overloads registered with ``numba.extending.overload`` serve the CPU only;
    kernels here share helpers such as ``classification.formulas._row`` with the CPU
    kernels, so their typers are registered once more for CUDA.  A no-op on the
    simulator, which runs the helpers' plain Python bodies.
    """
    if not config.ENABLE_CUDASIM:
        from numba.cuda.extending import overload

        overload(func, target="cuda", **options)(typer)


def shared(fn):
    """A CPU formula that takes arrays, for use in a CUDA kernel: the compiled function (numba-cuda
    compiles its Python body for the device), or on the simulator its plain Python body (a compiled
    CPU function cannot take the simulator's arrays)."""
    return fn.py_func if config.ENABLE_CUDASIM else fn


# The shared scalar formulas (``losses.binary.bce_*``, ``classification.formulas.class_row_loss``)
# call ``vmath.exp``/``log``/``log1p``/``exp_neg``.  On the CPU those are the
# branch-free polynomials (no SVML there); on the GPU libdevice's own functions
# are fast and accurate, and the polynomials' ``np.floor`` has no CUDA lowering.
for _f, _fn in ((vmath.exp, math.exp), (vmath.exp_neg, math.exp), (vmath.log, math.log), (vmath.log1p, math.log1p),
                 (vmath.log1p_unit, math.log1p)):
    cuda_overload(_f, vmath.by_type({"float32": _fn, "float64": _fn}))
cuda_overload(vmath.like, vmath._like_overload)


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

    def host(self, a, name):
        """``a``'s contents on the host when it is a device array (copied on the call's stream, which
        waits for its producer); anything else unchanged.  For the small inputs the host reads:
        ``grad_output``, ``ctc_loss``'s lengths."""
        return self.view(a, name).copy_to_host(stream=self.stream) if is_device_array(a) else a

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



@cuda.jit
def cast_kernel(src, dst):
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = src[i]


@cuda.jit
def zero_kernel(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 0.0



def device_grad_scale(call, reduction, grad_output, loss_shape, wanted):
    """``(per-sample scales on the device or an empty array, uniform scale)``; ``mean`` divides in the kernel.

    A uniform scale travels as a kernel argument (no copy); a per-sample one
    (``none`` with an array ``grad_output``) is copied to the device.
    """
    grad_output = call.host(grad_output, "grad_output")
    g, stride = grad_scale(reduction if reduction != "mean" else "sum", grad_output, 1.0, loss_shape, wanted)
    if stride:
        return call.to_device(np.ascontiguousarray(g, np.float64)), 0.0
    return call.nothing(np.float64), float(g[0])


def finish_rows(call, reduction, loss_rows, denominator, dtype, loss_shape):
    """``none``: the per-sample losses in ``dtype``; else a 0-d device array, summed in a fixed order."""
    M = loss_rows.size
    if reduction == "none":
        out = call.empty(M, dtype)
        if M:
            call.launch(cast_kernel, grid_blocks(M, TPB), loss_rows, out)
        return call.result(out.reshape(loss_shape) if loss_shape else out.reshape(()))
    nb = grid_blocks(M, CHUNK)
    part = call.empty(nb, np.float64)
    if M:
        call.launch(block_partials, nb, loss_rows, part)
    else:
        call.launch(zero_kernel, 1, part)
    return sum_partials(call, part, denominator, reduction == "mean", dtype)


class HostTarget:
    """The target's value at one position, fetched from the device only to word an error."""

    def __init__(self, t):
        self._t = t
        self.shape = t.shape
        self.ndim = len(t.shape)

    def reshape(self, *_):
        return self

    def __getitem__(self, pos):
        flat = self._t.reshape(self._t.size) if self.ndim != 1 else self._t
        return flat[pos : pos + 1].copy_to_host()[0]
