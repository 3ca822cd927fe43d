r"""Multi-class losses: ``cross_entropy`` and ``nll_loss`` (CPU kernels and public functions).

Layout: logits of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)`` are viewed
as ``(N, C, S)`` with ``S = d1 * ... * dk``; a *row* is the ``C`` logits of one
sample ``(n, s)``, ``M = N * S`` rows in all.  ``(N, C)`` inputs keep a 2-d view so
that each row is contiguous.

Class-index targets go through one cheap pass (:func:`_targets_kernel`) that
validates every index, maps ignored ones to ``-1`` and sums the weights of the
kept targets (the ``mean`` denominator).  Only then does the row kernel run, so
it can never read out of bounds and can fuse the reduction's scale into the
gradient.
"""

import functools

import numpy as np
from numba import prange
from numba.extending import overload

from . import _math as M
from . import _reduce
from ._dispatch import backend_of, host_array, host_param
from . import _jit
from ._jit import kernel, scalar, serial
from ._validate import (
    check_class_weight,
    check_ignore_index,
    check_label_smoothing,
    class_layout,
    float_dtype,
)


# --------------------------------------------------------------------------- rows
def _row(a, n, s):
    """Row ``(n, s)`` of a 2-d ``(N, C)`` or 3-d ``(N, C, S)`` array as a 1-d view.

    Compiled code uses the overload below; this body serves interpreted callers
    (the CUDA simulator runs kernels as Python).
    """
    return a[n] if a.ndim == 2 else a[n, :, s]


@overload(_row, inline="always")
def _row_overload(a, n, s):
    if a.ndim == 2:
        return lambda a, n, s: a[n]  # contiguous row: lets LLVM vectorize
    return lambda a, n, s: a[n, :, s]


@serial
def _row_max(xr):
    """Max of a row, as a max over order-preserving integer keys (:func:`numbaloss._math.order_key`):
    LLVM vectorizes that reduction, while a float max loop stays scalar.

    The max is exact, so the order of the comparisons cannot matter.  A NaN with a
    clear sign bit comes out as the max (one with the sign bit set never does); the
    caller's ``mk > m`` test then leaves its running max alone, and the NaN still
    makes the row's sum of exponentials NaN, so a NaN row gives NaN as in torch.
    """
    k = M.order_key(M.like(-np.inf, xr))
    for j in range(xr.size):
        key = M.order_key(xr[j])
        k = key if key > k else k
    return M.from_order_key(k)


@serial
def _exp_shifted(xr, m, buf):
    """``buf[j] = exp(x_j - m)``: a pure map, so LLVM vectorizes it with the branch-free exp.

    ``x_j - m <= 0`` (or NaN), so the cheaper :func:`numbaloss._math.exp_neg` applies.
    """
    for j in range(xr.size):
        buf[j] = M.exp_neg(xr[j] - m)


@serial
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


@serial
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


# ------------------------------------------------------------------ target pass
@kernel
def _targets_kernel(target, ignore, has_ignore, n_classes, w):
    """Validate class indices in fixed blocks.

    Returns ``(cls, denominator, first_bad)``: ``cls[i]`` is the class or -1
    (ignored), ``denominator`` the sum of the kept targets' weights (pairwise
    over blocks), ``first_bad`` the first out-of-range position or -1.
    """
    m = target.size
    block = _reduce.BLOCK
    nb = max(1, -(-m // block))
    has_w = w.size > 0
    cls = np.empty(m, np.int64)
    wsum = np.empty(nb)
    bad = np.empty(nb, np.int64)
    for b in prange(nb):
        lo = b * block
        hi = min(lo + block, m)
        acc = 0.0
        first_bad = -1
        for i in range(lo, hi):
            t = target[i]
            if has_ignore and t == ignore:
                cls[i] = -1
            elif t < 0 or t >= n_classes:
                cls[i] = -1
                if first_bad < 0:
                    first_bad = i
            else:
                k = np.int64(t)
                cls[i] = k
                acc += w[k] if has_w else 1.0
        wsum[b] = acc
        bad[b] = first_bad
    first = -1
    for b in range(nb):
        if bad[b] >= 0:
            first = bad[b]
            break
    return cls, _reduce.combine(wsum), first


def _class_targets(target, ignore_index, n_classes, w):
    """Run the target pass; returns ``(cls, denominator)`` or raises IndexError naming the bad target."""
    flat, ignore, has_ignore = _flat_targets(target, ignore_index)
    cls, denominator, pos = _targets_kernel(flat, ignore, has_ignore, n_classes, _or_empty(w, np.float64), work=flat.size)
    if pos >= 0:
        _raise_out_of_bounds(target, pos, n_classes, ignore_index)
    return cls, denominator


def _ignore_value(dtype, ignore_index):
    """``ignore_index`` in the targets' dtype, and whether any target of that dtype can equal it."""
    lo, hi = _int_range(np.dtype(dtype))
    has_ignore = lo <= ignore_index <= hi
    return np.dtype(dtype).type(ignore_index if has_ignore else 0), has_ignore


def _flat_targets(target, ignore_index):
    """Targets as a flat contiguous array, with :func:`_ignore_value`."""
    flat = target.reshape(-1) if target.flags.c_contiguous else np.ascontiguousarray(target).reshape(-1)
    return (flat,) + _ignore_value(flat.dtype, ignore_index)


def _raise_out_of_bounds(target, pos, n_classes, ignore_index):
    value = target.reshape(-1)[pos]
    where = np.unravel_index(pos, target.shape) if target.ndim else ()
    raise IndexError(
        f"Target {value} is out of bounds. (at target index {tuple(int(i) for i in where)}; "
        f"valid classes are 0..{n_classes - 1}, ignore_index={ignore_index})"
    )


@functools.lru_cache(maxsize=None)
def _int_range(dtype):
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


@functools.lru_cache(maxsize=None)
def _empty(dtype, ndim):
    """A shared size-0 array standing for "absent" (kernels test ``.size``); never written."""
    return np.empty((0,) * ndim, dtype)


def _plain_small(x, t, weight, grad_output):
    """True for a small C-contiguous ``(N, C)`` float NumPy input with few classes, int64 ``(N,)``
    NumPy targets, no weight and no ``grad_output``: the case :func:`_ce_small` serves directly."""
    return (
        type(x) is np.ndarray
        and type(t) is np.ndarray
        and weight is None
        and grad_output is None
        and x.ndim == 2
        and t.ndim == 1
        and x.dtype.char in "fd"
        and t.dtype.char in "lq"
        and t.itemsize == 8
        and 0 < x.shape[1] <= SMALL_C
        and 0 < x.size < _jit.PARALLEL_MIN_WORK
        and t.shape[0] == x.shape[0]
        and x.flags.c_contiguous
        and t.flags.c_contiguous
    )


def _or_empty(a, dtype):
    return _empty(np.dtype(dtype), 1) if a is None else a


# ------------------------------------------------------------------ row kernels
# ------------------------------------------------- per-row scalar formulas
# Written once, used by the row kernel, the tile kernel and the CUDA kernels.
@scalar
def class_row_loss(ls, target_gap, gap_sum, wy, eps, b, w_total):
    """Loss of a class-target row and its ``Q = sum_c q_c``.

    ``ls = log sum_c exp(x_c - m)``, ``target_gap = m - x_y``, ``gap_sum =
    sum_c w_c (m - x_c)`` (read only when ``eps > 0``: at 0 it would turn masked
    logits' ``0 * inf`` into NaN), ``b = eps / C``.  Torch's
    ``(1 - eps) nll + eps / C * smooth`` is ``(1 - eps) w_y (ls + m - x_y) +
    b (W ls + sum_c w_c (m - x_c))``.
    """
    loss = (1.0 - eps) * wy * (ls + target_gap)
    if eps > 0.0:
        loss += b * (w_total * ls + gap_sum)
    return loss, (1.0 - eps) * wy + b * w_total


@scalar
def class_target_grad(a, e_y, wy, eps, b):
    """``Q p_y - q_y`` at the target class with ``a = Q / s``, ``e_y = exp(x_y - m)``:
    the target's share ``q_y = (b + 1 - eps) w_y`` in one rounding (exact 0 when C == 1)."""
    return a * e_y - (b * wy + (1.0 - eps) * wy)


#: Logits per chunk of the streaming softmax pass: 8 KiB of float32 stay in L1
#: between the chunk's max and its exponentials.
CHUNK = 2048


@serial
def n_chunks(n_classes):
    return max(1, -(-n_classes // CHUNK))


@serial
def _streaming_exp_sum(xr, buf, scratch, ref):
    """One pass over a row: per chunk, its max, then ``buf[j] = exp(x_j - m)`` and their sum.

    ``m`` is the running max; when a chunk raises it, the sum so far is rescaled
    by ``exp(m_old - m_new)``.  ``ref[k]`` records the ``m`` that chunk ``k``'s
    values in ``buf`` are relative to.  Returns ``(m, s)`` with
    ``s = sum_j exp(x_j - m)``.  Reading each chunk once, while it sits in L1,
    overlaps the memory stream with the exponentials.
    """
    n = xr.size
    m = M.like(-np.inf, xr)
    s = 0.0
    for k in range(n_chunks(n)):
        lo = k * CHUNK
        hi = min(lo + CHUNK, n)
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
        s += _reduce.tree_sum(bs, scratch)
    if m == -np.inf:
        s = np.nan  # an all -inf row: torch's log_softmax is NaN
    return m, s


@serial
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
    e_y = buf[y] * np.exp(np.float64(ref[y // CHUNK]) - np.float64(m)) if y >= 0 else 0.0
    gc = M.like(g, xr)
    for k in range(n_chunks(n_classes)):
        lo = k * CHUNK
        hi = min(lo + CHUNK, n_classes)
        bs = buf[lo:hi]
        f = M.like(a * np.exp(np.float64(ref[k]) - np.float64(m)), xr)  # rebases chunk k onto the final max
        if y == -2:
            ts = tr[lo:hi]
            for j in range(bs.size):
                q = ts[j] * (1.0 - eps) + b
                if has_w:
                    q *= w[lo + j]
                bs[j] = g * (f * bs[j] - q)
        elif has_w:
            ws = w[lo:hi]
            bc = M.like(b, xr)
            for j in range(bs.size):
                bs[j] = gc * (f * bs[j] - bc * ws[j])
        else:
            bc = M.like(b, xr)
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
        scratch = np.empty((min(x.shape[1], CHUNK) + 1) // 2)
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
    return _reduce.combine(partials)


# ------------------------------------------------------ class-major tiles
#: 2-d inputs with at most this many classes take the column path: per-row
#: overheads would dominate rows this short.
SMALL_C = 64


@serial
def _tile_size(n_classes):
    """Samples per class-major tile: a function of the shape only, shared by the general and the
    small-input path so both cut the same tiles (and so sum in the same order)."""
    return max(8, min(1024, _reduce.ROW_WORK // max(n_classes, 1)))


def _tile(a, n, s0, s1):
    """Samples ``s0:s1`` of slab ``n`` copied into a contiguous class-major ``(C, T)`` array.

    ``(N, C, S)`` arrays are class-major already: a row-by-row copy.  ``(N, C)``
    arrays are transposed (a 2-d input is one slab whose samples are its rows).
    Contiguous tiles let every loop over the samples vectorize.
    """


@overload(_tile, inline="always")
def _tile_overload(a, n, s0, s1):
    if a.ndim == 3:

        def copy(a, n, s0, s1):
            t = np.empty((a.shape[1], s1 - s0), a.dtype)
            for c in range(a.shape[1]):
                t[c] = a[n, c, s0:s1]
            return t

        return copy

    def transpose(a, n, s0, s1):
        # Eight samples at a time: each class's eight values are gathered with stride C into
        # one vector store.  Measured ~15% faster for the whole pass than one long strided
        # gather per class, and 5x faster than scattering row by row.
        C = a.shape[1]
        T = s1 - s0
        flat = a[s0:s1].ravel()
        t = np.empty((C, T), a.dtype)
        T8 = T - T % 8
        for i0 in range(0, T8, 8):
            block = flat[i0 * C : (i0 + 8) * C]
            for c in range(C):
                col = t[c, i0 : i0 + 8]
                for j in range(8):
                    col[j] = block[j * C + c]
        for i in range(T8, T):
            for c in range(C):
                t[c, i] = flat[i * C + c]
        return t

    return transpose


def _untile(gt, grad, n, s0):
    """Write a class-major gradient tile back into samples ``s0:`` of slab ``n``."""


@overload(_untile, inline="always")
def _untile_overload(gt, grad, n, s0):
    if grad.ndim == 3:

        def copy(gt, grad, n, s0):
            for c in range(gt.shape[0]):
                grad[n, c, s0 : s0 + gt.shape[1]] = gt[c]

        return copy

    def transpose(gt, grad, n, s0):
        C, T = gt.shape
        flat = grad[s0 : s0 + T].reshape(-1)
        for c in range(C):
            col = gt[c]
            dst = flat[c:]
            for i in range(T):
                dst[i * C] = col[i]

    return transpose


@serial
def _tile_exp_sum(xt, et):
    """Per sample of a class-major tile: the max logit ``m``, ``et[c] = exp(x_c - m)`` and
    ``s = sum_c et[c]`` (float64, in class order).  Returns ``(m, s)``.

    ``np.maximum`` propagates NaN into ``m``; the sample's sum is NaN then either
    way, as in torch.
    """
    C, T = xt.shape
    m = xt[0].copy()
    for c in range(1, C):
        np.maximum(m, xt[c], m)
    s = np.zeros(T)
    for c in range(C):
        xc = xt[c]
        ec = et[c]
        for t in range(T):
            ec[t] = M.exp_neg(xc[t] - m[t])
        for t in range(T):
            s[t] += ec[t]
    return m, s


@serial
def _ce_tile(xt, y, w, eps, w_total, g, et, want_grad, loss):
    """Cross-entropy of the ``T`` samples of a class-major tile ``xt[c, t]`` (class targets).

    Every loop runs along the samples, so it vectorizes however few the classes
    are, and each sum runs over the classes in order: deterministic.  ``et``
    receives ``exp(x - m)`` and, with ``want_grad``, the gradient (in place).
    ``g`` holds one gradient scale or one per sample.  ``loss[t]`` is written.
    """
    C, T = xt.shape
    has_w = w.size > 0
    b = eps * (1.0 / C)
    m, s = _tile_exp_sum(xt, et)
    d = np.zeros(T)
    if eps > 0.0:  # the smoothing sum, with non-negative terms (see _gap_sum)
        for c in range(C):
            xc = xt[c]
            wc = w[c] if has_w else 1.0
            for t in range(T):
                d[t] += wc * (m[t] - xc[t])
    # The target's logit and weight per sample (gathers), then branch-free maps that vectorize.
    xy = np.empty(T, xt.dtype)
    wy = np.empty(T)
    for t in range(T):
        k = max(y[t], 0)
        xy[t] = xt[k, t]
        wy[t] = w[k] if has_w else 1.0
    q_sum = np.empty(T)
    for t in range(T):
        lt, q_sum[t] = class_row_loss(M.log(s[t]), m[t] - xy[t], d[t], wy[t], eps, b, w_total)
        loss[t] = lt if y[t] >= 0 else 0.0
    if not want_grad:
        return
    ga = np.empty(T, xt.dtype)
    gb = np.empty(T, xt.dtype)
    for t in range(T):
        gt_ = g[t] if g.size > 1 else g[0]
        kept = y[t] >= 0
        ga[t] = gt_ * (q_sum[t] / s[t]) if kept else 0.0 / s[t]  # ignored: torch's 0 * softmax, NaN rows stay NaN
        gb[t] = gt_ * b if kept else 0.0
    ey = np.empty(T, xt.dtype)
    for t in range(T):
        ey[t] = et[y[t], t] if y[t] >= 0 else 0.0
    for c in range(C):
        ec = et[c]
        wc = M.like(w[c] if has_w else 1.0, xt)
        for t in range(T):
            ec[t] = ga[t] * ec[t] - gb[t] * wc
    for t in range(T):
        yt = y[t]
        if yt >= 0:
            gt_ = g[t] if g.size > 1 else g[0]
            et[yt, t] = gt_ * class_target_grad(q_sum[t] / s[t], ey[t], wy[t], eps, b)


@serial
def _ce_prob_tile(xt, tt, w, eps, g, et, want_grad, loss):
    """:func:`_ce_tile` for probability targets ``tt[c, t]`` (same layout as ``xt``).

    With ``q_c = w_c (t_c (1 - eps) + eps / C)``: loss ``Q log s + sum_c q_c (m - x_c)``,
    gradient ``g (Q e_c / s - q_c)``, the formulas of the row path (:func:`_ce_row`).
    """
    C, T = xt.shape
    has_w = w.size > 0
    b = eps / C
    m, s = _tile_exp_sum(xt, et)
    q_sum = np.zeros(T)
    d = np.zeros(T)
    for c in range(C):
        xc = xt[c]
        tc = tt[c]
        wc = w[c] if has_w else 1.0
        for t in range(T):
            q = (tc[t] * (1.0 - eps) + b) * wc
            q_sum[t] += q
            d[t] += q * (m[t] - xc[t])
    for t in range(T):
        loss[t] = q_sum[t] * M.log(s[t]) + d[t]
    if not want_grad:
        return
    for c in range(C):
        ec = et[c]
        tc = tt[c]
        wc = w[c] if has_w else 1.0
        for t in range(T):
            gt_ = g[t] if g.size > 1 else g[0]
            q = (tc[t] * (1.0 - eps) + b) * wc
            ec[t] = gt_ * (q_sum[t] / s[t] * ec[t] - q)


@kernel
def _ce_columns_kernel(x, cls, tgt, w, eps, gscale, gstride, out, grad, partials, tile, S):
    """Cross-entropy on class-major tiles (K-dim inputs, or few classes): class targets
    ``cls``, or probabilities ``tgt`` (same shape as ``x``; empty for class targets).

    Tiles are ``tile`` samples of one slab ``n`` (for a 2-d input, ``tile`` rows),
    so the blocks, and with them the partial sums, depend only on the shape.
    """
    C = x.shape[1]
    span = S if x.ndim == 3 else x.shape[0]  # samples per slab
    per_slab = max(1, -(-span // tile))
    want_out = out.size > 0
    want_grad = grad.size > 0
    w_total = np.float64(C)
    if w.size > 0:
        w_total = 0.0
        for c in range(C):
            w_total += w[c]
    for b in prange(partials.size):
        n = b // per_slab
        s0 = (b - n * per_slab) * tile
        s1 = min(s0 + tile, span)
        r0 = n * span + s0
        T = s1 - s0
        xt = _tile(x, n, s0, s1)
        et = np.empty((C, T), x.dtype)
        loss = np.empty(T)
        g = gscale[r0 : r0 + T] if gstride else gscale[:1]
        if tgt.size > 0:
            _ce_prob_tile(xt, _tile(tgt, n, s0, s1), w, eps, g, et, want_grad, loss)
        else:
            _ce_tile(xt, cls[r0 : r0 + T], w, eps, w_total, g, et, want_grad, loss)
        if want_grad:
            _untile(et, grad, n, s0)
        if want_out:
            o = out[r0:r0 + T]
            for t in range(T):
                o[t] = loss[t]
        partials[b] = _reduce.tree_sum(loss, np.empty((T + 1) // 2))
    return _reduce.combine(partials)


_targets_serial = _targets_kernel.serial
_ce_columns_serial = _ce_columns_kernel.serial


@serial
def _ce_small(x, target, ignore, has_ignore, w, eps, gs, gstride, is_mean, out, grad):
    """A small 2-d, few-class cross-entropy in one compiled call (target pass, tile, total).

    Same kernels as the general path, minus two Python round trips: on inputs
    this size the per-call overhead is the cost.  Returns
    ``(total, denominator, first_bad)``.
    """
    cls, denominator, first = _targets_serial(target, ignore, has_ignore, x.shape[1], w)
    if first >= 0:
        return 0.0, denominator, first
    if is_mean:
        gs = gs / denominator
    tile = _tile_size(x.shape[1])
    partials = np.empty(max(1, -(-x.shape[0] // tile)))
    total = _ce_columns_serial(x, cls, np.empty((0, 0), x.dtype), w, eps, gs, gstride, out, grad, partials, tile, 1)
    return total, denominator, -1


@kernel
def _nll_kernel(x, cls, w, gscale, gstride, out, grad, partials, rpb, S):
    """``-w[y] * x[n, y, s]`` per row (0 for ignored rows); the gradient is zero-filled here, in parallel."""
    M = cls.size
    has_w = w.size > 0
    want_out = out.size > 0
    want_grad = grad.size > 0
    if want_grad:
        flat = grad.reshape(-1)
        block = _reduce.BLOCK * 16
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
    return _reduce.combine(partials)


# ------------------------------------------------------------------ public API
def _prepare(input, target, weight, reduction, loss):
    """Shared front half of cross_entropy / nll_loss on the CPU: checks, layout, host arrays."""
    x = host_array(input, "input")
    t = host_array(target, "target")
    dtype = float_dtype(x.dtype)
    N, C, S, loss_shape, probs = class_layout(x.shape, t.shape, t.dtype, loss)
    w = host_param(weight, "weight", dtype)
    if w is not None:
        check_class_weight(w.shape, C)
    shape = (N, C) if S == 1 else (N, C, S)
    x = np.ascontiguousarray(x).reshape(shape)
    return x, t, w, N, C, S, loss_shape, probs, dtype


def _outputs(x, M, reduction, return_grad, n_parts):
    out = np.empty(M, x.dtype) if reduction == "none" else _empty(x.dtype, 1)
    if return_grad:
        grad = np.empty_like(x)
    else:
        grad = _empty(x.dtype, x.ndim)
    return out, grad, np.empty(n_parts)


def _small_cross_entropy(x, t, flat, ignore, has_ignore, w, eps, gscale, gstride, ignore_index, reduction, return_grad, loss_shape, input_shape):
    """Run :func:`_ce_small` on a small 2-d few-class input (``flat``: its targets, flat) and
    finish the loss; ``t`` is the caller's target array, for the out-of-bounds message."""
    out, grad, _ = _outputs(x, flat.size, reduction, return_grad, 0)
    total, denominator, pos = _ce_small(x, flat, ignore, has_ignore, w, eps, gscale, gstride, reduction == "mean", out, grad)
    if pos >= 0:
        _raise_out_of_bounds(t, pos, x.shape[1], ignore_index)
    loss = _reduce.finish(reduction, out, total, denominator, x.dtype, loss_shape)
    return (loss, grad.reshape(input_shape)) if return_grad else loss


def cross_entropy(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    *,
    return_grad=False,
    grad_output=None,
):
    r"""Cross-entropy between logits and class indices or class probabilities.

    Same semantics as ``torch.nn.functional.cross_entropy`` (torch 2.13).  With
    :math:`\log p_c = x_c - \log\sum_k e^{x_k}`, smoothing :math:`\varepsilon` and the
    smoothed target :math:`t'_c = (1-\varepsilon) t_c + \varepsilon / C` (``t`` one-hot
    for class indices), the per-sample loss is

    .. math::
        \ell = -\sum_c w_c\, t'_c \log p_c

    (for class indices torch weights the one-hot part by :math:`w_y` and the
    smoothing part by :math:`w_c`, which is the same formula).  ``mean`` divides by
    :math:`\sum w_{y_i}` over non-ignored samples for class indices and by the
    number of samples for probabilities.  Gradient:

    .. math::
        \frac{\partial \ell}{\partial x_j} = p_j \sum_c w_c t'_c - w_j t'_j

    computed in the same pass over the logits as the loss (fused, no softmax array).

    Args:
        input: logits, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``; float32/float64.
        target: class indices of any integer dtype with shape ``()``, ``(N,)`` or
            ``(N, d1, ..., dk)``, or probabilities with the input's shape.
        weight: optional per-class weights ``(C,)``.
        ignore_index: class index whose samples are skipped (class targets only;
            must be negative with probability targets, as in torch).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``.
        return_grad: also return ``d sum(grad_output * loss) / d input``.
        grad_output: upstream gradient; scalar, or loss-shaped for ``"none"``.

    Returns:
        ``loss``, or ``(loss, grad_input)`` with ``return_grad=True``.  ``loss`` is a
        NumPy scalar of the input's dtype for ``mean``/``sum`` and an array of shape
        ``(N, d1, ..., dk)`` for ``none``.

    Example:
        >>> import numpy as np, numbaloss
        >>> logits = np.array([[2.0, 0.5, -1.0]], dtype=np.float32)
        >>> loss, grad = numbaloss.cross_entropy(logits, np.array([0]), return_grad=True)
        >>> round(float(loss), 4)
        0.2413
        >>> grad.round(4)
        array([[-0.2144,  0.1753,  0.0391]], dtype=float32)
    """
    _reduce.check_reduction(reduction)
    if _plain_small(input, target, weight, grad_output):
        # The most common small call, recognised in a few attribute reads: every check of the
        # general path below holds for it, so it goes straight to the one compiled call.
        eps = check_label_smoothing(label_smoothing)
        ignore_index = check_ignore_index(ignore_index)
        if -(2**63) <= ignore_index < 2**63:  # int64 targets can equal it: _ignore_value's answer
            no_weight = _empty(input.dtype, 1)
            return _small_cross_entropy(
                input, target, target, np.int64(ignore_index), True, no_weight, eps, _reduce.ONE, 0,
                ignore_index, reduction, return_grad, input.shape[:1], input.shape,
            )
    if backend_of(input, ("target", target), ("weight", weight)) == "cuda":
        from . import _classification_cuda

        return _classification_cuda.cross_entropy(
            input, target, weight, ignore_index, reduction, label_smoothing, return_grad, grad_output
        )
    x, t, w, N, C, S, loss_shape, probs, dtype = _prepare(input, target, weight, reduction, "cross_entropy")
    eps = check_label_smoothing(label_smoothing)
    ignore_index = check_ignore_index(ignore_index)
    M = N * S
    if not probs and S == 1 and C <= SMALL_C and x.size < _jit.PARALLEL_MIN_WORK:
        flat, ignore, has_ignore = _flat_targets(t, ignore_index)
        gscale, gstride = _reduce.grad_scale(reduction, grad_output, 1.0, loss_shape, return_grad)
        return _small_cross_entropy(
            x, t, flat, ignore, has_ignore, _or_empty(w, dtype), eps, gscale, gstride,
            ignore_index, reduction, return_grad, loss_shape, np.shape(input),
        )
    if probs:
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target")
        tgt = np.ascontiguousarray(t, dtype=dtype).reshape(x.shape)
        cls = _empty(np.dtype(np.int64), 1)
        denominator = M
    else:
        cls, denominator = _class_targets(t, ignore_index, C, w)
        tgt = _empty(dtype, x.ndim)
    gscale, gstride = _reduce.grad_scale(reduction, grad_output, denominator, loss_shape, return_grad)
    if S > 1 or C <= SMALL_C:
        tile = _tile_size(C)
        span = S if S > 1 else N
        n_tiles = (N if S > 1 else 1) * max(1, -(-span // tile))
        out, grad, partials = _outputs(x, M, reduction, return_grad, n_tiles)
        total = _ce_columns_kernel(x, cls, tgt, _or_empty(w, dtype), eps, gscale, gstride, out, grad, partials, tile, S, work=x.size)
    else:
        rows = _reduce.rows_per_block(C)
        out, grad, partials = _outputs(x, M, reduction, return_grad, _reduce.n_blocks(M, rows))
        total = _ce_kernel(x, cls, tgt, _or_empty(w, dtype), eps, gscale, gstride, out, grad, partials, rows, S, work=x.size)
    loss = _reduce.finish(reduction, out, total, denominator, dtype, loss_shape)
    if return_grad:
        return loss, grad.reshape(np.shape(input))
    return loss


def nll_loss(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    *,
    return_grad=False,
    grad_output=None,
):
    r"""Negative log-likelihood of class indices given log-probabilities.

    Same semantics as ``torch.nn.functional.nll_loss``: per sample
    :math:`\ell = -w_y\, x_y` (0 where ``y == ignore_index``); ``mean`` divides by
    :math:`\sum w_{y_i}` over non-ignored samples.  Gradient: :math:`-w_y` at the
    target class, 0 elsewhere.

    Args:
        input: log-probabilities ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``.
        target: class indices of any integer dtype, ``()``, ``(N,)`` or ``(N, d1, ..., dk)``.
        weight, ignore_index, reduction, return_grad, grad_output: as in :func:`cross_entropy`.

    Example:
        >>> import numpy as np, numbaloss
        >>> logp = np.log(np.array([[0.7, 0.2, 0.1]]))
        >>> round(float(numbaloss.nll_loss(logp, np.array([1]))), 4)
        1.6094
    """
    _reduce.check_reduction(reduction)
    if backend_of(input, ("target", target), ("weight", weight)) == "cuda":
        from . import _classification_cuda

        return _classification_cuda.nll_loss(input, target, weight, ignore_index, reduction, return_grad, grad_output)
    x, t, w, N, C, S, loss_shape, _, dtype = _prepare(input, target, weight, reduction, "nll_loss")
    ignore_index = check_ignore_index(ignore_index)
    M = N * S
    cls, denominator = _class_targets(t, ignore_index, C, w)
    rows = _reduce.BLOCK
    out, grad, partials = _outputs(x, M, reduction, return_grad, _reduce.n_blocks(M, rows))
    gscale, gstride = _reduce.grad_scale(reduction, grad_output, denominator, loss_shape, return_grad)
    total = _nll_kernel(x, cls, _or_empty(w, dtype), gscale, gstride, out, grad, partials, rows, S, work=x.size if return_grad else M)
    loss = _reduce.finish(reduction, out, total, denominator, dtype, loss_shape)
    if return_grad:
        return loss, grad.reshape(np.shape(input))
    return loss
