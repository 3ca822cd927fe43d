"""Streaming row kernels: one sample's ``C`` logits at a time (many classes)."""

import numpy as np
from numba import prange

from ...core import vmath as vm
from ...core import reduce
from ...core.jit import internal, kernel, serial
from .formulas import _row, class_row_loss, class_target_grad


@serial
def _row_max(xr):
    """Max of a row, as a max over order-preserving integer keys (:func:`numbaloss.core.vmath.order_key`):
    LLVM vectorizes that reduction, while a float max loop stays scalar.

    The max is exact, so the order of the comparisons cannot matter.  A NaN with a
    clear sign bit comes out as the max (one with the sign bit set never does); the
    caller's ``mk > m`` test then leaves its running max alone, and the NaN still
    makes the row's sum of exponentials NaN, so a NaN row gives NaN as in torch.
    """
    k = vm.order_key(vm.like(-np.inf, xr))
    for j in range(xr.size):
        key = vm.order_key(xr[j])
        k = key if key > k else k
    return vm.from_order_key(k)


@internal
def _exp_shifted(xr, m, buf):
    """``buf[j] = exp(x_j - m)``: a pure map, so LLVM vectorizes it with the branch-free exp.

    ``x_j - m <= 0`` (or NaN), so the cheaper :func:`numbaloss.core.vmath.exp_neg` applies.
    """
    for j in range(xr.size):
        buf[j] = vm.exp_neg(xr[j] - m)


@internal
def _gap_sum(xr, m, w):
    """``sum_c w_c (m - x_c)``: non-negative terms, so accurate even for logits around 1e6
    (where ``C * lse - sum(x)`` would cancel)."""
    d = 0.0
    if w.size > 0:
        for c in range(xr.size):
            d += w[c] * (m - xr[c])
    else:
        for c in range(xr.size):
            d += m - xr[c]
    return d


@internal
def _prob_sums(xr, tr, m, w, eps, inv_c):
    """``Q = sum q_c`` and ``D = sum q_c (m - x_c)`` with ``q_c = w_c (t_c (1 - eps) + eps / C)``."""
    q_sum = 0.0
    d = 0.0
    has_w = w.size > 0
    for c in range(xr.size):
        q = tr[c] * (1.0 - eps) + eps * inv_c
        if has_w:
            q *= w[c]
        q_sum += q
        d += q * (m - xr[c])
    return q_sum, d



#: between the chunk's max and its exponentials.
ROW_CHUNK = 2048


@internal
def n_chunks(n_classes):
    return max(1, -(-n_classes // ROW_CHUNK))


@internal
def _streaming_exp_sum(xr, buf, scratch, ref):
    """One pass over a row: per chunk, its max, then ``buf[j] = exp(x_j - m)`` and their sum.

    ``m`` is the running max; when a chunk raises it, the sum so far is rescaled
    by ``exp(m_old - m_new)``.  ``ref[k]`` records the ``m`` that chunk ``k``'s
    values in ``buf`` are relative to.  Returns ``(m, s)`` with
    ``s = sum_j exp(x_j - m)``.  Reading each chunk once, while it sits in L1,
    overlaps the memory stream with the exponentials.
    """
    n = xr.size
    m = vm.like(-np.inf, xr)
    s = 0.0
    for k in range(n_chunks(n)):
        lo = k * ROW_CHUNK
        hi = min(lo + ROW_CHUNK, n)
        xs = xr[lo:hi]
        bs = buf[lo:hi]
        mk = _row_max(xs)
        if mk > m:  # never true for NaN
            s *= np.exp(np.float64(m) - np.float64(mk))  # 0 while m is still -inf
            m = mk
        ref[k] = m
        if m == -np.inf:
            # nothing finite yet: -inf contributes 0, NaN stays NaN (x - m would be NaN for both)
            for j in range(xs.size):
                bs[j] = 0.0 if xs[j] == -np.inf else xs[j]
        else:
            _exp_shifted(xs, m, bs)
        s += reduce.tree_sum(bs, scratch)
    if m == -np.inf:
        s = np.nan  # an all -inf row: torch's log_softmax is NaN
    return m, s


@internal
def _ce_row(xr, y, tr, w, eps, w_total, g, buf, scratch, ref, want_grad):
    """Loss of one row; with ``want_grad`` also writes ``g * d loss / d x`` into ``buf``.

    ``y >= 0``: class target (``y == -1``: ignored row).  ``y == -2``:
    probability target ``tr``.  With ``q_c = w_c t'_c`` the loss is
    ``Q log s + sum_c q_c (m - x_c)`` and the gradient ``g (Q p_j - q_j)``,
    ``p_j = e_j / s``, ``e_j = exp(x_j - m)``.  ``buf`` (the gradient row, or
    scratch) first receives the exponentials from the streaming pass, and the
    gradient is then finished in place: the logits are read once, with no
    second exp and no softmax array.
    """
    n_classes = xr.size
    inv_c = 1.0 / n_classes
    has_w = w.size > 0
    m, s = _streaming_exp_sum(xr, buf, scratch, ref)
    ls = np.log(s)
    b = eps * inv_c  # weight of the smoothing share q_j = b * w_j (class targets)
    if y == -2:
        q_sum, d = _prob_sums(xr, tr, m, w, eps, inv_c)
        loss = q_sum * ls + d
    elif y < 0:
        loss = 0.0
        q_sum = 0.0
        b = 0.0
        g = 1.0  # torch: 0 * softmax, so a NaN anywhere in the row still gives NaN
    else:
        wy = w[y] if has_w else 1.0
        gap = _gap_sum(xr, m, w) if eps > 0.0 else 0.0
        loss, q_sum = class_row_loss(ls, m - xr[y], gap, wy, eps, b, w_total)
    if not want_grad:
        return loss
    a = q_sum / s
    e_y = buf[y] * np.exp(np.float64(ref[y // ROW_CHUNK]) - np.float64(m)) if y >= 0 else 0.0
    gc = vm.like(g, xr)
    for k in range(n_chunks(n_classes)):
        lo = k * ROW_CHUNK
        hi = min(lo + ROW_CHUNK, n_classes)
        bs = buf[lo:hi]
        f = vm.like(a * np.exp(np.float64(ref[k]) - np.float64(m)), xr)  # rebases chunk k onto the final max
        if y == -2:
            ts = tr[lo:hi]
            for j in range(bs.size):
                q = ts[j] * (1.0 - eps) + b
                if has_w:
                    q *= w[lo + j]
                bs[j] = g * (f * bs[j] - q)
        elif has_w:
            ws = w[lo:hi]
            bc = vm.like(b, xr)
            for j in range(bs.size):
                bs[j] = gc * (f * bs[j] - bc * ws[j])
        else:
            bc = vm.like(b, xr)
            for j in range(bs.size):
                bs[j] = gc * (f * bs[j] - bc)
    if y >= 0:
        buf[y] = g * class_target_grad(a, e_y, wy, eps, b)
    return loss


@kernel
def _ce_kernel(x, cls, tgt, w, eps, gscale, gstride, out, grad, partials, rpb, S):
    """Cross-entropy per row, fused with its gradient and the block partial sums.

    ``cls`` (class targets, -1 = ignored) or ``tgt`` (probabilities, same shape
    as ``x``) is non-empty; ``out``/``grad`` are written when non-empty.
    """
    M = x.shape[0] * S
    probs = cls.size == 0
    want_out = out.size > 0
    want_grad = grad.size > 0
    w_total = np.float64(x.shape[1])
    if w.size > 0:
        w_total = 0.0
        for c in range(w.size):
            w_total += w[c]
    for b in prange(partials.size):
        lo = b * rpb
        hi = min(lo + rpb, M)
        acc = 0.0
        exps = np.empty(0 if want_grad else x.shape[1], x.dtype)
        scratch = np.empty((min(x.shape[1], ROW_CHUNK) + 1) // 2)
        ref = np.empty(n_chunks(x.shape[1]), x.dtype)
        for r in range(lo, hi):
            n = r // S
            s = r - n * S
            y = np.int64(-2) if probs else cls[r]
            tr = _row(tgt, n, s) if probs else tgt.ravel()[:0]
            buf = _row(grad, n, s) if want_grad else exps
            loss = _ce_row(_row(x, n, s), y, tr, w, eps, w_total, gscale[r * gstride], buf, scratch, ref, want_grad)
            acc += loss
            if want_out:
                out[r] = loss
        partials[b] = acc
    return reduce.combine(partials)



@kernel
def _nll_kernel(x, cls, w, gscale, gstride, out, grad, partials, rpb, S):
    """``-w[y] * x[n, y, s]`` per row (0 for ignored rows); the gradient is zero-filled here, in parallel."""
    M = cls.size
    has_w = w.size > 0
    want_out = out.size > 0
    want_grad = grad.size > 0
    if want_grad:
        flat = grad.reshape(-1)
        block = reduce.BLOCK * 16
        for b in prange(max(1, -(-flat.size // block))):
            flat[b * block : (b + 1) * block] = 0.0
    for b in prange(partials.size):
        lo = b * rpb
        hi = min(lo + rpb, M)
        acc = 0.0
        for r in range(lo, hi):
            n = r // S
            s_ = r - n * S
            y = cls[r]
            loss = 0.0
            if y >= 0:
                wy = w[y] if has_w else 1.0
                loss = -(_row(x, n, s_)[y] * wy)
                if want_grad:
                    _row(grad, n, s_)[y] = -(wy * gscale[r * gstride])
            acc += loss
            if want_out:
                out[r] = loss
        partials[b] = acc
    return reduce.combine(partials)


