"""CUDA kernels for ``cross_entropy`` and ``nll_loss`` (beside the CPU kernels of this family).

Same validation, same per-row formulas (``class_row_loss``, ``class_target_grad``,
``_row``), same results; see :mod:`numbaloss.core.cuda_host` for families and streams.

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

from ...core import cuda_host, cuda_reduce
from ...core.cuda_host import HostTarget, device_grad_scale, finish_rows, zero_kernel
from ...core.cuda_reduce import TPB, chunk_bounds, denominator, group_max_exp, group_sum, store_block_sum
from ...core.dispatch import is_device_array
from ...core.validate import check_class_weight, check_ignore_index, check_label_smoothing, class_layout, float_dtype
from ...core.vmath import like
from .formulas import _row, _row_overload, class_row_loss, class_target_grad
from .targets import _ignore_value, _raise_out_of_bounds

cuda_host.cuda_overload(_row, _row_overload, inline="always")  # a returned view must be inlined on CUDA


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


@cuda.jit(device=True)
def _fold1(m, acc, v):
    """Fold one logit into a lane's online ``(max, sum exp(x - max))``, in the logits' dtype.

    A NaN never becomes the max (comparisons are false) but its exponential
    makes the sum NaN; a -inf logit adds nothing (-inf - -inf would be NaN).
    """
    if v > m:
        acc = acc * math.exp(m - v)
        m = v
    e = math.exp(v - m)
    return m, acc + (e if v != -math.inf else like(0.0, e))


@cuda.jit(device=True)
def _fold4(m, acc, v0, v1, v2, v3):
    """:func:`_fold1` of four logits with one rescale: their max first, then four exponentials."""
    mn = v0 if v0 > m else m
    mn = v1 if v1 > mn else mn
    mn = v2 if v2 > mn else mn
    mn = v3 if v3 > mn else mn
    if mn > m:
        acc = acc * math.exp(m - mn)
        m = mn
    zero = like(0.0, acc)
    e0, e1, e2, e3 = math.exp(v0 - m), math.exp(v1 - m), math.exp(v2 - m), math.exp(v3 - m)
    acc += e0 if v0 != -math.inf else zero
    acc += e1 if v1 != -math.inf else zero
    acc += e2 if v2 != -math.inf else zero
    return m, acc + (e3 if v3 != -math.inf else zero)


@cuda.jit(device=True)
def _prob_share(c, t, w, eps, b):
    """A probability target's ``q_c = w_c (t_c (1 - eps) + eps / C)`` (``b = eps / C``)."""
    q = t * (1.0 - eps) + b
    if w.size > 0:
        q *= w[c]
    return q


@cuda.jit(device=True)
def _smooth_terms(q_acc, d_acc, c, v, t, m, probs, y, w, eps, b):
    """Add class ``c``'s ``q_c`` to ``Q`` and ``q_c (m - x_c)`` to ``D`` (probabilities), or ``w_c (m - x_c)`` (smoothing)."""
    if probs:
        q = _prob_share(c, t, w, eps, b)
        return q_acc + q, d_acc + q * (m - v)
    if y >= 0:
        d_acc += (w[c] if w.size > 0 else 1.0) * (m - v)
    return q_acc, d_acc


@cuda.jit(device=True)
def _grad_entry(gr, c, v, t, mx, a, g, probs, y, wy, w, eps, b):
    """``gr[c] = g (softmax_c Q - q_c)`` with ``a = Q / s``; the target's own entry in one rounding."""
    p = float64(math.exp(v - mx))
    if probs:
        q = _prob_share(c, t, w, eps, b)
    elif y >= 0:
        q = b * (w[c] if w.size > 0 else 1.0)
    else:
        q = 0.0
    if c == y:  # written by the lane that owns it (no barrier needed)
        gr[c] = g * class_target_grad(a, p, wy, eps, b)
    else:
        gr[c] = g * (a * p - q)


#: Rows of at most this many classes get one warp each (``TPB // 32`` rows per
#: block, no block barriers); longer rows get a whole block.
WARP_ROW_MAX_C = 1024


def _make_ce_rows(G):
    """The cross-entropy row kernel for groups of ``G`` threads per row (``G`` = 32 or ``TPB``)."""
    ROWS = TPB // G

    @cuda.jit
    def ce_rows(x, cls, tgt, w, eps, w_total, gscale, g0, denom, denom0, is_mean, loss_rows, grad, S):
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
        # Eight loads are issued before any of them is used: a bandwidth-bound
        # loop needs several reads in flight per thread to cover memory latency.
        m = like(-math.inf, xr)
        acc = like(0.0, xr)
        c = lane
        while c + 7 * G < C:
            v0, v1, v2, v3 = xr[c], xr[c + G], xr[c + 2 * G], xr[c + 3 * G]
            v4, v5, v6, v7 = xr[c + 4 * G], xr[c + 5 * G], xr[c + 6 * G], xr[c + 7 * G]
            m, acc = _fold4(m, acc, v0, v1, v2, v3)
            m, acc = _fold4(m, acc, v4, v5, v6, v7)
            c += 8 * G
        while c < C:
            m, acc = _fold1(m, acc, xr[c])
            c += G
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
            c = lane
            while c + 3 * G < C:
                v0, v1, v2, v3 = xr[c], xr[c + G], xr[c + 2 * G], xr[c + 3 * G]
                t0, t1, t2, t3 = (tr[c], tr[c + G], tr[c + 2 * G], tr[c + 3 * G]) if probs else (v0, v1, v2, v3)
                q_acc, d_acc = _smooth_terms(q_acc, d_acc, c, v0, t0, m64, probs, y, w, eps, b)
                q_acc, d_acc = _smooth_terms(q_acc, d_acc, c + G, v1, t1, m64, probs, y, w, eps, b)
                q_acc, d_acc = _smooth_terms(q_acc, d_acc, c + 2 * G, v2, t2, m64, probs, y, w, eps, b)
                q_acc, d_acc = _smooth_terms(q_acc, d_acc, c + 3 * G, v3, t3, m64, probs, y, w, eps, b)
                c += 4 * G
            while c < C:
                v = xr[c]
                q_acc, d_acc = _smooth_terms(q_acc, d_acc, c, v, tr[c] if probs else v, m64, probs, y, w, eps, b)
                c += G
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
        g = gscale[r] if gscale.size > 0 else g0
        if is_mean:
            g = g / denominator(denom, denom0)
        a = q_sum / ssum
        if y == -1:
            g = 1.0  # ignored row: torch's 0 * softmax, NaN rows stay NaN
        mx = like(m64, xr)
        c = lane
        while c + 3 * G < C:
            v0, v1, v2, v3 = xr[c], xr[c + G], xr[c + 2 * G], xr[c + 3 * G]
            t0, t1, t2, t3 = (tr[c], tr[c + G], tr[c + 2 * G], tr[c + 3 * G]) if probs else (v0, v1, v2, v3)
            _grad_entry(gr, c, v0, t0, mx, a, g, probs, y, wy, w, eps, b)
            _grad_entry(gr, c + G, v1, t1, mx, a, g, probs, y, wy, w, eps, b)
            _grad_entry(gr, c + 2 * G, v2, t2, mx, a, g, probs, y, wy, w, eps, b)
            _grad_entry(gr, c + 3 * G, v3, t3, mx, a, g, probs, y, wy, w, eps, b)
            c += 4 * G
        while c < C:
            v = xr[c]
            _grad_entry(gr, c, v, tr[c] if probs else v, mx, a, g, probs, y, wy, w, eps, b)
            c += G

    return ce_rows


_ce_rows_warp = _make_ce_rows(cuda_reduce.WARP)
_ce_rows_block = _make_ce_rows(TPB)


@cuda.jit
def _nll_rows_cuda(x, cls, w, gscale, g0, denom, denom0, is_mean, loss_rows, grad, S):
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
        g = gscale[r] if gscale.size > 0 else g0
        if is_mean:
            g = g / denominator(denom, denom0)
        _row(grad, n, s_)[y] = -(wy * g)


def _run(loss, input, target, weight, ignore_index, reduction, label_smoothing, return_grad, grad_output):
    call = cuda_host.Call(input)
    x = call.input(input, "input")
    t = call.input(target, "target")
    in_shape = x.shape
    dtype = float_dtype(x.dtype)
    N, C, S, loss_shape, probs = class_layout(x.shape, t.shape, t.dtype, loss)
    eps = check_label_smoothing(label_smoothing) if loss == "cross_entropy" else 0.0
    ignore_index = check_ignore_index(ignore_index)
    w = call.param(weight, "weight", dtype)
    if w.size:
        check_class_weight(w.shape, C)
    M = N * S
    is_mean = reduction == "mean"
    if x.ndim == 1:
        x = x.reshape(1, C)
    elif x.ndim > 2:
        if not x.is_c_contiguous():
            raise ValueError("input: non-contiguous Numba device arrays with more than 2 dimensions are not supported")
        x = x.reshape(N, C, S)
    err = None
    if probs:
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target")
        tgt = t.reshape(x.shape) if t.ndim != x.ndim else t
        if np.dtype(tgt.dtype) != dtype:
            raise TypeError(f"probability target on the device must have the input's dtype {dtype}, got {np.dtype(tgt.dtype)}")
        cls = call.nothing(np.int64)
        denom, denom0 = call.nothing(np.float64), float(M)
    else:
        # Validated class indices (-1: ignored or out of range, so no kernel reads out of bounds)
        # and the mean's denominator, on the device; the error buffer is read once, at the end.
        flat = t.reshape(M) if t.ndim != 1 else t
        ignore, has_ignore = _ignore_value(t.dtype, ignore_index)
        cls = call.empty(M, np.int64)
        nb = cuda_reduce.grid_blocks(M, cuda_reduce.CHUNK)
        part = call.empty(nb, np.float64)
        err = call.error_buffer()
        call.launch(_targets_cuda, nb, flat, ignore, has_ignore, C, w, cls, part, err)
        denom, denom0 = part, 0.0  # the weights' partials: the final sum divides by their sum
        if is_mean and return_grad:  # the row kernel scales the gradient: sum them first
            denom = call.empty(1, np.float64)
            call.launch(cuda_reduce.sum_partials_kernel, 1, part, call.nothing(np.float64), 0.0, False, denom)
        tgt = call.nothing(dtype, x.ndim)
    gscale, g0 = device_grad_scale(call, reduction, grad_output, loss_shape, return_grad)
    grad = call.empty(x.shape, dtype) if return_grad else call.nothing(dtype, x.ndim)
    loss_rows = call.empty(M, np.float64)
    w_total = _weight_total(call, weight, w, dtype) if eps > 0.0 and weight is not None else float(C)
    if M:
        if loss == "cross_entropy":
            if C <= WARP_ROW_MAX_C:
                kern, grid = _ce_rows_warp, cuda_reduce.grid_blocks(M, TPB // cuda_reduce.WARP)
            else:
                kern, grid = _ce_rows_block, M
            call.launch(kern, grid, x, cls, tgt, w, eps, w_total, gscale, g0, denom, denom0, is_mean, loss_rows, grad, S)
        else:
            if return_grad:
                call.launch(zero_kernel, cuda_reduce.grid_blocks(grad.size, TPB), grad.reshape(grad.size))
            call.launch(_nll_rows_cuda, cuda_reduce.grid_blocks(M, TPB), x, cls, w, gscale, g0, denom, denom0, is_mean, loss_rows, grad, S)
    result = finish_rows(call, reduction, loss_rows, (denom, denom0), dtype, loss_shape)
    if err is not None:
        pos = call.first_error(err)
        if pos >= 0:
            _raise_out_of_bounds(HostTarget(t), pos, C, ignore_index)
    return result, ((call.result(grad.reshape(in_shape)),) if return_grad else ())


def _weight_total(call, weight, w, dtype):
    """``sum_c w_c`` for label smoothing, in float64 from the weights in ``dtype`` (host weights need no copy back)."""
    host = w.copy_to_host(stream=call.stream) if is_device_array(weight) else np.asarray(weight).astype(dtype)
    return float(np.asarray(host, np.float64).sum())


def run(spec, input, target, *, weight, ignore_index, reduction, return_grad, grad_output, label_smoothing=0.0):
    """The device path of ``cross_entropy`` and ``nll_loss`` (see :class:`numbaloss.core.registry.Loss`)."""
    return _run(spec.name, input, target, weight, ignore_index, reduction, label_smoothing, return_grad, grad_output)
