"""Reductions shared by every loss: ``none`` / ``sum`` / ``mean`` / weighted mean.

Kernels never reduce across threads.  They split their samples into blocks of a
size fixed by the problem shape (never by the thread count), write one float64
partial sum per block, and :func:`combine` adds the partials pairwise in a fixed
order.  The result is therefore bitwise identical for any ``NUMBA_NUM_THREADS``
and from run to run, and float32 losses are accumulated in float64.

The same module decides the gradient scale a kernel multiplies into its
gradient (the reduction is fused into the gradient, so there is no second pass):
``grad_output`` for ``sum``, ``grad_output / denominator`` for ``mean`` and the
per-sample ``grad_output`` for ``none``.
"""

import math

import numpy as np

from .jit import inlined, scalar, serial

REDUCTIONS = ("none", "mean", "sum")

#: Samples per block for elementwise losses.  Small enough for load balance,
#: large enough that the per-block float64 sum costs nothing.
BLOCK = 4096

#: Target amount of work (logits) per block for row-wise losses.
ROW_WORK = 1 << 16


def n_blocks(n_samples, block=BLOCK):
    """Number of blocks covering ``n_samples`` (at least one, so an empty input has one zero partial)."""
    return max(1, -(-n_samples // block))


def rows_per_block(n_classes):
    """Rows per block for a row-wise loss with ``n_classes`` columns (shape-dependent, thread-independent)."""
    return max(1, min(BLOCK, ROW_WORK // max(n_classes, 1)))


@serial
def tree_sum(values, scratch):
    """Pairwise sum of ``values`` in float64, in a fixed order, using ``scratch``
    (float64, at least ``(values.size + 1) // 2`` long).

    Each level adds the second half onto the first: a pure map loop, so LLVM
    vectorizes it without being allowed to reorder anything (no ``reassoc``),
    and the rounding error grows with ``log2(n)`` rather than ``n``.
    """
    n = values.size
    if n < 2:
        return np.float64(values[0]) if n else 0.0
    h = n // 2
    a = values[:h]
    b = values[h : 2 * h]
    for j in range(h):
        scratch[j] = np.float64(a[j]) + np.float64(b[j])
    k = h
    if n % 2:
        scratch[h] = values[n - 1]
        k = h + 1
    while k > 1:
        h = k // 2
        a = scratch[:h]
        b = scratch[h : 2 * h]
        for j in range(h):
            a[j] = a[j] + b[j]
        if k % 2:
            scratch[h] = scratch[k - 1]
            k = h + 1
        else:
            k = h
    return scratch[0]


#: :func:`tree_sum` inlined into its caller at Numba's IR level, for a kernel that calls it once (the
#: elementwise template's block): a first call then compiles it as part of the kernel, not on its own
#: and again as linked code.  A kernel that sums several times (a row's norms) calls :func:`tree_sum`,
#: compiled once: inlining each call measured slower to compile there (cosine_embedding_loss +0.4 s).
tree_sum_inlined = inlined(tree_sum.py_func)


def tree_sum_host(values):
    """:func:`tree_sum` of a few float64 values in Python, in exactly its order (the same
    additions, so bitwise the same result): finishes a small call without compiling anything."""
    if values.size == 1:  # the common small call: nothing to add
        return float(values[0])
    v = values.tolist()
    while len(v) > 1:
        h = len(v) // 2
        v = [v[j] + v[h + j] for j in range(h)] + v[2 * h :]
    return v[0] if v else 0.0


def first_flag(flags):
    """The first non-negative entry of a kernel's per-block flags (a position), or -1."""
    if flags.size == 1:
        return int(flags[0])
    for f in flags.tolist():
        if f >= 0:
            return f
    return -1


#: Up to this many partials are added in Python (:func:`tree_sum_host`): no compiled call.
HOST_SUM_MAX = 64


def total(partials):
    """The sum of a kernel's float64 partials, pairwise in the fixed order of :func:`tree_sum`,
    whichever way it runs (bitwise the same)."""
    return tree_sum_host(partials) if partials.size <= HOST_SUM_MAX else combine(partials)


@scalar
def combine(partials):
    """Pairwise sum of float64 partials in a fixed order (error O(log n) ulp, deterministic).

    Inlined into the kernels: a separately compiled wrapper would cost a cold first call
    another LLVM optimization of :func:`tree_sum`."""
    return tree_sum(partials, np.empty((partials.size + 1) // 2))


def check_reduction(reduction, allowed=REDUCTIONS):
    if reduction not in allowed:
        raise ValueError(
            f"{reduction!r} is not a valid value for reduction; choose one of "
            + ", ".join(repr(r) for r in allowed)
        )


def divide(a, b):
    """``a / b`` with IEEE semantics (``x / 0`` is ``±inf``, ``0 / 0`` is NaN), without numpy's
    warnings machinery: this sits on the per-call path of every loss."""
    a = float(a)
    b = float(b)
    if b != 0.0 or math.isnan(a):
        return a / b if b != 0.0 else a
    return math.nan if a == 0.0 else math.copysign(math.inf, a) * math.copysign(1.0, b)


#: The gradient scale 1 (kernels read it, never write it).
ONE = np.ones(1)


def grad_scale(reduction, grad_output, denominator, loss_shape, wanted=True, keep=None):
    """Per-sample gradient scale as ``(scale, stride)``: sample ``i`` uses ``scale[i * stride]``.

    ``grad_output`` defaults to 1 (ones for ``none``).  For ``sum``/``mean`` it
    must be a scalar; for ``none`` it may also be an array broadcastable to the
    loss's shape.  ``wanted=False`` (no gradient requested) skips the work.

    The scale is float64, except that a ``grad_output`` array of dtype ``keep`` stays in it (a
    kernel that converts the scale to ``keep`` itself then sees the same values): converting a
    float32 ``grad_output`` of 2**24 elements to float64 took 22 ms, longer than the gradient.
    """
    if not wanted:  # no gradient asked: the kernels never read the scale
        if grad_output is not None:
            raise ValueError("grad_output is only used with return_grad=True")
        return ONE, 0
    if grad_output is None:
        g = 1.0
    elif isinstance(grad_output, (int, float)):
        g = float(grad_output)
    else:
        same = keep is not None and isinstance(grad_output, np.ndarray) and grad_output.dtype == keep
        ga = grad_output if same else np.asarray(grad_output, dtype=np.float64)
        if reduction == "none" and not (ga.size == 1 and ga.ndim <= len(loss_shape)):
            try:
                ga = np.broadcast_to(ga, loss_shape)
            except ValueError:
                raise ValueError(
                    f"grad_output of shape {ga.shape} does not broadcast to the loss's shape {tuple(loss_shape)}"
                ) from None
            return np.ascontiguousarray(ga).reshape(-1), 1
        if ga.size != 1:
            raise ValueError(f"grad_output must be a scalar for reduction={reduction!r}, got shape {ga.shape}")
        g = float(ga.reshape(()))
    if reduction == "mean":
        g = divide(g, denominator)
    return np.full(1, g), 0


def finish(reduction, out, total, denominator, dtype, loss_shape):
    """The loss: ``out`` reshaped for ``none``, else the kernel's combined total (divided for ``mean``)."""
    if reduction == "none":
        return out.reshape(loss_shape)
    if reduction == "mean":
        total = divide(total, denominator)
    return dtype.type(total)
