"""CUDA kernels for ``cross_entropy`` and ``nll_loss`` (beside the CPU kernels in ``_classification``).

Same validation, same per-row formulas (``class_row_loss``, ``class_target_grad``,
``_row``), same results; see ``_cuda`` for families, streams and determinism.

- Target pass: fixed chunks of targets per block; out-of-range indices are
  recorded with an integer ``atomic.min`` in a one-element error buffer (never
  a device-side assert, which would poison the context), then copied to the host
  once and raised as the same IndexError as the CPU path.
- Rows: one block of ``TPB`` threads per row.  Each thread keeps an online
  ``(max, sum of exp)`` over its strided share of the row, so the logits are read
  once for the loss; the pairs are merged by a fixed shared-memory tree.  The
  gradient pass re-reads the row (from L2 for rows up to a few MB).
"""

import math

import numpy as np
from numba import cuda, float64

from . import _cuda
from ._classification import _ignore_value, _raise_out_of_bounds, _row, class_row_loss, class_target_grad
from ._cuda import TPB, block_sum
from ._validate import check_class_weight, check_ignore_index, check_label_smoothing, class_layout, float_dtype


@cuda.jit
def _targets_cuda(target, ignore, has_ignore, n_classes, w, cls, part, err):
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lo = cuda.blockIdx.x * _cuda.CHUNK
    hi = min(lo + _cuda.CHUNK, target.size)
    acc = 0.0
    for i in range(lo + tid, hi, TPB):
        t = target[i]
        if has_ignore and t == ignore:
            cls[i] = -1
        elif t < 0 or t >= n_classes:
            cls[i] = -1
            cuda.atomic.min(err, 0, i)
        else:
            cls[i] = t
            acc += w[t] if w.size > 0 else 1.0
    sm[tid] = acc
    block_sum(sm, tid)
    if tid == 0:
        part[cuda.blockIdx.x] = sm[0]


@cuda.jit(device=True)
def _merge(m1, s1, m2, s2):
    """Merge two online (max, sum exp(x - max)) pairs; a -inf max contributes nothing, NaN sums stay NaN."""
    m = m1 if m1 > m2 else m2
    if m == -math.inf:
        return m, s1 + s2
    a = s1 * math.exp(m1 - m) if m1 != -math.inf else s1 * 0.0
    b = s2 * math.exp(m2 - m) if m2 != -math.inf else s2 * 0.0
    return m, a + b


@cuda.jit
def _ce_rows_cuda(x, cls, tgt, w, eps, w_total, gscale, gstride, denom, is_mean, loss_rows, grad, S):
    """One block per row ``r = (n, s)``; class targets (``cls``) or probabilities (``tgt``)."""
    sm_m = cuda.shared.array(TPB, float64)
    sm_s = cuda.shared.array(TPB, float64)
    sm_q = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    r = cuda.blockIdx.x
    n = r // S
    s_ = r - n * S
    xr = _row(x, n, s_)
    C = xr.size
    probs = cls.size == 0
    has_w = w.size > 0
    b = eps / C
    # online max / sum of exponentials over this thread's share of the row
    m = -math.inf
    acc = 0.0
    for c in range(tid, C, TPB):
        v = float64(xr[c])
        if v > m:
            acc = acc * math.exp(m - v) if m != -math.inf else acc * 0.0
            m = v
        if not (v == -math.inf and m == -math.inf):
            acc += math.exp(v - m)
    sm_m[tid] = m
    sm_s[tid] = acc
    step = TPB // 2
    while step > 0:
        cuda.syncthreads()
        if tid < step:
            mm, ss = _merge(sm_m[tid], sm_s[tid], sm_m[tid + step], sm_s[tid + step])
            sm_m[tid] = mm
            sm_s[tid] = ss
        step //= 2
    cuda.syncthreads()
    m = sm_m[0]
    ssum = sm_s[0] if m != -math.inf else math.nan  # an all -inf row is NaN, as in torch
    # Q = sum q_c and D = sum q_c (m - x_c) for probabilities; sum w_c (m - x_c) for smoothing
    y = -2 if probs else cls[r]
    q_acc = 0.0
    d_acc = 0.0
    tr = _row(tgt, n, s_) if probs else xr  # xr: a same-typed stand-in, never read
    if probs:
        for c in range(tid, C, TPB):
            q = tr[c] * (1.0 - eps) + b
            if has_w:
                q *= w[c]
            q_acc += q
            d_acc += q * (m - xr[c])
    elif y >= 0 and eps > 0.0:
        for c in range(tid, C, TPB):
            d_acc += (w[c] if has_w else 1.0) * (m - xr[c])
    cuda.syncthreads()
    sm_q[tid] = q_acc
    sm_s[tid] = d_acc
    block_sum(sm_q, tid)
    block_sum(sm_s, tid)
    ls = math.log(ssum)
    wy = 0.0
    if probs:
        q_sum = sm_q[0]
        loss = q_sum * ls + sm_s[0]
    elif y < 0:
        loss = 0.0
        q_sum = 0.0
    else:
        wy = w[y] if has_w else 1.0
        loss, q_sum = class_row_loss(ls, m - xr[y], sm_s[0], wy, eps, b, w_total)
    if tid == 0:
        loss_rows[r] = loss
    if grad.size == 0:
        return
    gr = _row(grad, n, s_)
    g = gscale[r * gstride]
    if is_mean:
        g = g / denom[0]
    a = q_sum / ssum
    if y == -1:
        g = 1.0  # ignored row: torch's 0 * softmax, NaN rows stay NaN
    for c in range(tid, C, TPB):
        p = math.exp(xr[c] - m)
        if probs:
            q = tr[c] * (1.0 - eps) + b
            if has_w:
                q *= w[c]
        elif y >= 0:
            q = b * (w[c] if has_w else 1.0)
        else:
            q = 0.0
        gr[c] = g * (a * p - q)
    cuda.syncthreads()
    if tid == 0 and y >= 0:
        gr[y] = g * class_target_grad(a, math.exp(xr[y] - m), wy, eps, b)


@cuda.jit
def _nll_rows_cuda(x, cls, w, gscale, gstride, denom, is_mean, loss_rows, grad, S):
    """One thread per row: ``-w[y] x[n, y, s]``; the gradient row (zeroed on the host side) gets ``-w[y] g``."""
    r = cuda.grid(1)
    if r >= cls.size:
        return
    n = r // S
    s_ = r - n * S
    y = cls[r]
    if y < 0:
        loss_rows[r] = 0.0
        return
    wy = w[y] if w.size > 0 else 1.0
    loss_rows[r] = -(_row(x, n, s_)[y] * wy)
    if grad.size > 0:
        g = gscale[r * gstride]
        if is_mean:
            g = g / denom[0]
        _row(grad, n, s_)[y] = -(wy * g)


@cuda.jit
def _block_partials(values, part):
    """Per-block sums of ``values`` over fixed chunks (the first pass of a deterministic sum)."""
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lo = cuda.blockIdx.x * _cuda.CHUNK
    hi = min(lo + _cuda.CHUNK, values.size)
    acc = 0.0
    for i in range(lo + tid, hi, TPB):
        acc += values[i]
    sm[tid] = acc
    block_sum(sm, tid)
    if tid == 0:
        part[cuda.blockIdx.x] = sm[0]


@cuda.jit
def _cast(src, dst):
    i = cuda.grid(1)
    if i < src.size:
        dst[i] = src[i]


@cuda.jit
def _zero(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 0.0


def _run(loss, input, target, weight, ignore_index, reduction, label_smoothing, return_grad, grad_output):
    fam = _cuda.family(input)
    x = _cuda.prepare_input(input, "input")
    t = _cuda.prepare_input(target, "target")
    dtype = float_dtype(x.dtype)
    N, C, S, loss_shape, probs = class_layout(x.shape, t.shape, t.dtype, loss)
    eps = check_label_smoothing(label_smoothing) if loss == "cross_entropy" else 0.0
    ignore_index = check_ignore_index(ignore_index)
    w = _cuda.device_param(weight, "weight", dtype)
    if w.size:
        check_class_weight(w.shape, C)
    M = N * S
    if x.ndim == 1:
        x = x.reshape(1, C)
    elif x.ndim > 2:
        if not x.is_c_contiguous():
            raise ValueError("input: non-contiguous Numba device arrays with more than 2 dimensions are not supported")
        x = x.reshape(N, C, S)
    if probs:
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target")
        tgt = t.reshape(x.shape) if t.ndim != x.ndim else t
        if np.dtype(tgt.dtype) != dtype:
            raise TypeError(f"probability target on the device must have the input's dtype {dtype}, got {np.dtype(tgt.dtype)}")
        cls = _cuda.empty(0, np.int64)
        denom = _cuda.host_scalar_on_device(M)
    else:
        flat = t.reshape(M) if t.ndim != 1 else t
        ignore, has_ignore = _ignore_value(t.dtype, ignore_index)
        cls = _cuda.empty(M, np.int64)
        nb = _cuda.grid_blocks(M, _cuda.CHUNK)
        part = _cuda.empty(nb, np.float64)
        err = _cuda.error_buffer(M)
        _targets_cuda[nb, TPB](flat, ignore, has_ignore, C, w, cls, part, err)
        pos = _cuda.first_error(err, M)
        if pos >= 0:
            _raise_out_of_bounds(_HostTarget(t), pos, C, ignore_index)
        denom = _cuda.empty(1, np.float64)
        _cuda._sum_partials_kernel[1, TPB](part, denom, False, denom)
        tgt = _cuda.empty((0,) * x.ndim, dtype)
    gscale, gstride = _grad_scale(reduction, grad_output, loss_shape, return_grad)
    grad = _cuda.empty(x.shape, dtype) if return_grad else _cuda.empty((0,) * x.ndim, dtype)
    loss_rows = _cuda.empty(M, np.float64)
    is_mean = reduction == "mean"
    w_total = float(np.asarray(w.copy_to_host(), np.float64).sum()) if w.size else float(C)
    if M:
        if loss == "cross_entropy":
            _ce_rows_cuda[M, TPB](x, cls, tgt, w, eps, w_total, gscale, gstride, denom, is_mean, loss_rows, grad, S)
        else:
            if return_grad:
                flatg = grad.reshape(grad.size)
                _zero[_cuda.grid_blocks(grad.size, TPB), TPB](flatg)
            _nll_rows_cuda[_cuda.grid_blocks(M, TPB), TPB](x, cls, w, gscale, gstride, denom, is_mean, loss_rows, grad, S)
    result = _finish(reduction, loss_rows, denom, dtype, loss_shape, fam)
    if return_grad:
        return result, _cuda.wrap(grad.reshape(input.shape), fam)
    return result


def _grad_scale(reduction, grad_output, loss_shape, wanted):
    """Per-sample scale on the device; ``mean``'s division happens in the kernel (its denominator is on the device)."""
    from ._reduce import grad_scale

    if grad_output is not None and (hasattr(grad_output, "__cuda_array_interface__") or hasattr(grad_output, "__cuda_ndarray__")):
        grad_output = _cuda.device_view(grad_output, "grad_output").copy_to_host()
    g, stride = grad_scale(reduction if reduction != "mean" else "sum", grad_output, 1.0, loss_shape, wanted)
    return cuda.to_device(np.ascontiguousarray(g, np.float64)), stride


def _finish(reduction, loss_rows, denom, dtype, loss_shape, fam):
    """``none``: the per-sample losses in ``dtype``; else a 0-d device array, summed in a fixed order."""
    M = loss_rows.size
    if reduction == "none":
        out = _cuda.empty(M, dtype)
        if M:
            _cast[_cuda.grid_blocks(M, TPB), TPB](loss_rows, out)
        return _cuda.wrap(out.reshape(loss_shape) if loss_shape else out.reshape(()), fam)
    nb = _cuda.grid_blocks(M, _cuda.CHUNK)
    part = _cuda.empty(nb, np.float64)
    if M:
        _block_partials[nb, TPB](loss_rows, part)
    else:
        _zero[1, TPB](part)
    return _cuda.wrap(_cuda.sum_partials(part, denom, reduction == "mean", dtype), fam)


class _HostTarget:
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


def cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, return_grad, grad_output):
    return _run("cross_entropy", input, target, weight, ignore_index, reduction, label_smoothing, return_grad, grad_output)


def nll_loss(input, target, weight, ignore_index, reduction, return_grad, grad_output):
    return _run("nll_loss", input, target, weight, ignore_index, reduction, 0.0, return_grad, grad_output)
