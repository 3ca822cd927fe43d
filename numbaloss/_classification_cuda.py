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
from ._classification import _ignore_value, _raise_out_of_bounds, _row, _row_overload, class_row_loss, class_target_grad
from ._cuda import TPB, chunk_bounds, group_max_exp, group_sum, store_block_sum
from ._math import like
from ._validate import check_class_weight, check_ignore_index, check_label_smoothing, class_layout, float_dtype

_cuda.cuda_overload(_row, _row_overload, inline="always")  # a returned view must be inlined on CUDA


@cuda.jit
def _targets_cuda(target, ignore, has_ignore, n_classes, w, cls, part, err):
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lo, hi = chunk_bounds(target.size)
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
    store_block_sum(acc, sm, tid, part)


#: Rows of at most this many classes get one warp each (``TPB // 32`` rows per
#: block, no block barriers); longer rows get a whole block.
WARP_ROW_MAX_C = 1024


def _make_ce_rows(G):
    """The cross-entropy row kernel for groups of ``G`` threads per row (``G`` = 32 or ``TPB``)."""
    ROWS = TPB // G

    @cuda.jit
    def ce_rows(x, cls, tgt, w, eps, w_total, gscale, gstride, denom, is_mean, loss_rows, grad, S):
        sm_m = cuda.shared.array(TPB, float64)
        sm_s = cuda.shared.array(TPB, float64)
        tid = cuda.threadIdx.x
        lane = tid % G
        r = cuda.blockIdx.x * ROWS + tid // G
        live = r < loss_rows.size
        if not live:
            r = loss_rows.size - 1  # spare lanes join the collective reductions, then write nothing
        n = r // S
        s_ = r - n * S
        xr = _row(x, n, s_)
        C = xr.size
        probs = cls.size == 0
        has_w = w.size > 0
        b = eps / C
        # Single pass over the logits: each lane keeps an online (max, sum exp(x - max))
        # in the input's dtype (float32 exps for float32 logits), merged in float64.
        m = like(-math.inf, xr)
        acc = like(0.0, xr)
        for c in range(lane, C, G):
            v = xr[c]
            if v > m:
                acc = acc * math.exp(m - v)
                m = v
            if v != -math.inf:  # a -inf logit adds nothing (and -inf - -inf would be NaN)
                acc += math.exp(v - m)
        m64, ssum = group_max_exp(m, acc, sm_m, sm_s, tid, G)
        if m64 == -math.inf:
            ssum = math.nan  # an all -inf row is NaN, as in torch
        # Q = sum q_c and D = sum q_c (m - x_c) for probabilities; sum w_c (m - x_c) for smoothing
        y = -2 if probs else cls[r]
        tr = _row(tgt, n, s_) if probs else xr  # xr: a same-typed stand-in, never read
        q_sum = 0.0
        d_sum = 0.0
        if probs or eps > 0.0:  # the same for every row: the reductions stay collective
            q_acc = 0.0
            d_acc = 0.0
            for c in range(lane, C, G):
                if probs:
                    q = tr[c] * (1.0 - eps) + b
                    if has_w:
                        q *= w[c]
                    q_acc += q
                    d_acc += q * (m64 - xr[c])
                elif y >= 0:
                    d_acc += (w[c] if has_w else 1.0) * (m64 - xr[c])
            q_sum = group_sum(q_acc, sm_m, tid, G)
            d_sum = group_sum(d_acc, sm_s, tid, G)
        ls = math.log(ssum)
        wy = 0.0
        if probs:
            loss = q_sum * ls + d_sum
        elif y < 0:
            loss = 0.0
            q_sum = 0.0
        else:
            wy = w[y] if has_w else 1.0
            loss, q_sum = class_row_loss(ls, m64 - xr[y], d_sum, wy, eps, b, w_total)
        if live and lane == 0:
            loss_rows[r] = loss
        if grad.size == 0 or not live:
            return
        # The gradient re-reads the row (from L2 for rows up to a few MB): softmax * Q - q.
        gr = _row(grad, n, s_)
        g = gscale[r * gstride]
        if is_mean:
            g = g / denom[0]
        a = q_sum / ssum
        if y == -1:
            g = 1.0  # ignored row: torch's 0 * softmax, NaN rows stay NaN
        mx = like(m64, xr)
        for c in range(lane, C, G):
            p = float64(math.exp(xr[c] - mx))
            if probs:
                q = tr[c] * (1.0 - eps) + b
                if has_w:
                    q *= w[c]
            elif y >= 0:
                q = b * (w[c] if has_w else 1.0)
            else:
                q = 0.0
            if c == y:  # the target's own entry, written by the lane that owns it (no barrier needed)
                gr[c] = g * class_target_grad(a, p, wy, eps, b)
            else:
                gr[c] = g * (a * p - q)

    return ce_rows


_ce_rows_warp = _make_ce_rows(_cuda.WARP)
_ce_rows_block = _make_ce_rows(TPB)


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
            if C <= WARP_ROW_MAX_C:
                kern, grid = _ce_rows_warp, _cuda.grid_blocks(M, TPB // _cuda.WARP)
            else:
                kern, grid = _ce_rows_block, M
            kern[grid, TPB](x, cls, tgt, w, eps, w_total, gscale, gstride, denom, is_mean, loss_rows, grad, S)
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
        _cuda.block_partials[nb, TPB](loss_rows, part)
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
