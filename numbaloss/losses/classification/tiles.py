"""Class-major tiles: few classes or K-dim inputs, the inner loop running along samples."""

import numpy as np
from numba.core import types

from ...core import vmath as vm
from ...core import reduce, simd
from ...core.jit import blocked, inlined, internal, overload, serial
from .formulas import class_row_loss, class_target_grad
from .targets import _targets


# ------------------------------------------------------ class-major tiles
#: 2-d inputs with at most this many classes take the column path: per-row
#: overheads would dominate rows this short.
SMALL_C = 64


@inlined  # a few integer operations: compiled on its own it cost a first call 0.1 s
def _tile_size(n_classes):
    """Samples per class-major tile: a function of the shape only, shared by the general and the
    small-input path so both cut the same tiles (and so sum in the same order)."""
    return max(8, min(1024, reduce.ROW_WORK // max(n_classes, 1)))


def _tile(a, n, s0, s1, t):
    """Samples ``s0:s1`` of slab ``n`` copied into ``t[:, :s1 - s0]``, class-major: ``t[c, i]`` is
    class ``c`` of sample ``s0 + i``.

    ``(N, C, S)`` arrays are class-major already: a row-by-row copy.  ``(N, C)``
    arrays are transposed (a 2-d input is one slab whose samples are its rows).
    Contiguous rows let every loop over the samples vectorize.
    """


@overload(_tile)
def _tile_overload(a, n, s0, s1, t):
    if a.ndim == 3:

        def copy(a, n, s0, s1, t):
            T = s1 - s0
            for c in range(a.shape[1]):
                t[c, :T] = a[n, c, s0:s1]

        return copy

    if a.dtype == types.float32:

        def transpose_float32(a, n, s0, s1, t):
            C = a.shape[1]
            T = s1 - s0
            T8 = T - T % 8
            if C >= 8:
                # 8x8 blocks of (samples, classes) through the vector shuffles of simd.transpose8 (both
                # arrays indexed flat), 0.4 cycles per value against the pairs' 0.8 below (10 classes, the
                # tile in cache, AMD Zen 3).  The last C % 8 classes: the block of the last 8 classes, its
                # first rows (written already) skipped (a switch over the eight networks, each without
                # the shuffles of its skipped rows).
                P = t.shape[1]
                c8 = C - 8
                for i0 in range(0, T8, 8):
                    s = (s0 + i0) * C
                    for c0 in range(0, c8 + 1, 8):
                        simd.transpose8(a, s + c0, C, t, c0 * P + i0, P, 0)
                    if C % 8:
                        simd.transpose8(a, s + c8, C, t, c8 * P + i0, P, 8 - C % 8)
            else:
                # Fewer classes: the values travel as bits, a class's values of two samples per 8-byte
                # store (little-endian: the first sample's in the low half): LLVM gives each gathered float
                # a store of its own, and the stores bound the loop (0.8 against 1.0 cycles per value on
                # AMD Zen 3, 10 classes, the tile in cache).  ``t``'s rows have an even length.
                bits = a[s0:s1].ravel().view(np.uint32)
                pairs = t.view(np.uint64)
                for i0 in range(0, T8, 8):
                    block = bits[i0 * C : (i0 + 8) * C]
                    for c in range(C):
                        col = pairs[c, i0 // 2 : i0 // 2 + 4]
                        for j in range(4):
                            col[j] = np.uint64(block[2 * j * C + c]) | (np.uint64(block[(2 * j + 1) * C + c]) << np.uint64(32))
            for i in range(T8, T):  # the last T % 8 samples
                for c in range(C):
                    t[c, i] = a[s0 + i, c]

        return transpose_float32

    def transpose(a, n, s0, s1, t):
        # Eight samples at a time: each class's eight values are gathered with stride C into
        # one vector store.  Measured ~15% faster for the whole pass than one long strided
        # gather per class, and 5x faster than scattering row by row.
        C = a.shape[1]
        T = s1 - s0
        flat = a[s0:s1].ravel()
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

    return transpose


def _untile(gt, T, grad, n, s0):
    """Write the class-major gradient ``gt[:, :T]`` back into samples ``s0:s0 + T`` of slab ``n``."""


@overload(_untile)
def _untile_overload(gt, T, grad, n, s0):
    if grad.ndim == 3:

        def copy(gt, T, grad, n, s0):
            for c in range(gt.shape[0]):
                grad[n, c, s0 : s0 + T] = gt[c, :T]

        return copy

    if grad.dtype == types.float32:

        def transpose_float32(gt, T, grad, n, s0):
            # At least 8 classes: 8x8 blocks through simd.transpose8 (as _tile); the last C % 8 classes
            # come from the block of the last 8, which writes some values a second time (the same ones)
            C = gt.shape[0]
            P = gt.shape[1]
            T8 = T - T % 8 if C >= 8 else 0
            for i0 in range(0, T8, 8):
                d = (s0 + i0) * C
                for c0 in range(0, C - 7, 8):
                    simd.transpose8(gt, c0 * P + i0, P, grad, d + c0, C, 0)
                if C % 8:
                    simd.transpose8(gt, (C - 8) * P + i0, P, grad, d + C - 8, C, 0)
            for c in range(C):
                for i in range(T8, T):
                    grad[s0 + i, c] = gt[c, i]

        return transpose_float32

    def transpose(gt, T, grad, n, s0):
        C = gt.shape[0]
        flat = grad[s0 : s0 + T].reshape(-1)
        for c in range(C):
            col = gt[c]
            dst = flat[c:]
            for i in range(T):
                dst[i * C] = col[i]

    return transpose


@internal
def _tile_max(xt, T, m):
    """``m[t]``: the max logit of each sample ``t < T`` of a class-major tile.

    ``np.maximum`` propagates NaN into ``m``; the sample's sum is NaN then either
    way, as in torch.
    """
    x0 = xt[0]
    for t in range(T):
        m[t] = x0[t]
    for c in range(1, xt.shape[0]):
        xc = xt[c]
        for t in range(T):
            m[t] = np.maximum(m[t], xc[t])


@internal
def _tile_exp_sum(xt, T, m, s):
    """In place, per sample ``t < T`` of a class-major tile: ``xt[c, t] = exp(x_c - m)`` and
    ``s[t] = sum_c xt[c, t]`` (float64, in class order)."""
    C = xt.shape[0]
    for c in range(C):
        xc = xt[c]
        for t in range(T):
            xc[t] = vm.exp_neg(xc[t] - m[t])
    # summed in class order, four classes per pass over s (the same additions, a quarter of s's loads and stores)
    for t in range(T):
        s[t] = 0.0
    C4 = C - C % 4
    for c in range(0, C4, 4):
        x0, x1, x2, x3 = xt[c], xt[c + 1], xt[c + 2], xt[c + 3]
        for t in range(T):
            s[t] = (((s[t] + x0[t]) + x1[t]) + x2[t]) + x3[t]
    for c in range(C4, C):
        xc = xt[c]
        for t in range(T):
            s[t] += xc[t]


@internal
def _ce_tile(xt, T, y, w, eps, w_total, g, want_grad, fs, vs, acc):
    """Cross-entropy of the ``T`` samples of a class-major tile ``xt[c, t]`` (class targets ``y``,
    -1 where ignored).

    Every loop runs along the samples, so it vectorizes however few the classes
    are, and each sum runs over the classes in order: deterministic.  ``xt``
    receives ``exp(x - m)`` and, with ``want_grad``, the gradient (in place).
    ``g`` holds one gradient scale or one per sample.  The losses go to ``fs[1]``;
    ``fs`` (float64) and ``vs`` (the input's dtype) are scratch rows.
    """
    C = xt.shape[0]
    has_w = w.size > 0
    b = eps * (1.0 / C)
    s, loss, d, wy, q_sum = fs[0], fs[1], fs[2], fs[3], fs[4]
    m, xy, ga, gb, ey = vs[0], vs[1], vs[2], vs[3], vs[4]
    _tile_max(xt, T, m)
    if eps > 0.0:  # the smoothing sum, with non-negative terms (see _gap_sum)
        for t in range(T):
            d[t] = 0.0
        for c in range(C):
            xc = xt[c]
            wc = w[c] if has_w else 1.0
            for t in range(T):
                d[t] += wc * (m[t] - xc[t])
    # The target's logit and weight per sample (gathers), then branch-free maps that vectorize.
    # The kept targets' weights are added to ``acc`` here, in target order (the target pass's sum):
    # the chain of dependent additions runs in the shadow of the gathers.
    for t in range(T):
        k = max(y[t], 0)
        xy[t] = xt[k, t]
        wy[t] = w[k] if has_w else 1.0
        if y[t] >= 0:
            acc += wy[t]
    _tile_exp_sum(xt, T, m, s)
    if not want_grad and eps == 0.0:  # the forward without smoothing: a shorter loop, the same values
        for t in range(T):
            lt, _ = class_row_loss(vm.log_ge1(s[t], xt), m[t] - xy[t], 0.0, wy[t], 0.0, 0.0, w_total)
            loss[t] = lt if y[t] >= 0 else 0.0
        return acc
    for t in range(T):
        lt, q_sum[t] = class_row_loss(vm.log_ge1(s[t], xt), m[t] - xy[t], d[t], wy[t], eps, b, w_total)
        loss[t] = lt if y[t] >= 0 else 0.0
    if not want_grad:
        return acc
    for t in range(T):
        gt_ = g[t] if g.size > 1 else g[0]
        kept = y[t] >= 0
        ga[t] = gt_ * (q_sum[t] / s[t]) if kept else 0.0 / s[t]  # ignored: torch's 0 * softmax, NaN rows stay NaN
        gb[t] = gt_ * b if kept else 0.0
    for t in range(T):
        ey[t] = xt[y[t], t] if y[t] >= 0 else 0.0
    for c in range(C):
        ec = xt[c]
        wc = vm.like(w[c] if has_w else 1.0, xt)
        for t in range(T):
            ec[t] = ga[t] * ec[t] - gb[t] * wc
    for t in range(T):
        yt = y[t]
        if yt >= 0:
            gt_ = g[t] if g.size > 1 else g[0]
            xt[yt, t] = gt_ * class_target_grad(q_sum[t] / s[t], ey[t], wy[t], eps, b)
    return acc


@internal
def _ce_prob_tile(xt, tt, T, w, eps, g, want_grad, fs, vs):
    """:func:`_ce_tile` for probability targets ``tt[c, t]`` (same layout as ``xt``).

    With ``q_c = w_c (t_c (1 - eps) + eps / C)``: loss ``Q log s + sum_c q_c (m - x_c)``,
    gradient ``g (Q e_c / s - q_c)``, the formulas of the row path (:func:`_ce_row`).
    """
    C = xt.shape[0]
    has_w = w.size > 0
    b = eps / C
    s, loss, d, q_sum = fs[0], fs[1], fs[2], fs[4]
    m = vs[0]
    _tile_max(xt, T, m)
    for t in range(T):
        q_sum[t] = 0.0
        d[t] = 0.0
    for c in range(C):
        xc = xt[c]
        tc = tt[c]
        wc = w[c] if has_w else 1.0
        for t in range(T):
            q = (tc[t] * (1.0 - eps) + b) * wc
            q_sum[t] += q
            d[t] += q * (m[t] - xc[t])
    _tile_exp_sum(xt, T, m, s)
    for t in range(T):
        loss[t] = q_sum[t] * vm.log_ge1(s[t], xt) + d[t]
    if not want_grad:
        return
    for c in range(C):
        ec = xt[c]
        tc = tt[c]
        wc = w[c] if has_w else 1.0
        for t in range(T):
            gt_ = g[t] if g.size > 1 else g[0]
            q = (tc[t] * (1.0 - eps) + b) * wc
            ec[t] = gt_ * (q_sum[t] / s[t] * ec[t] - q)


@blocked
def _ce_columns(b, x, target, ignore, has_ignore, tgt, w, eps, gscale, gstride, out, grad, partials, wsum, bad, tile, span, S):
    """Block ``b`` of cross-entropy on class-major tiles (K-dim inputs, or few classes): tiles
    ``b * span`` to ``(b + 1) * span``, each ``tile`` samples of one slab (for a 2-d input,
    ``tile`` rows), so the tiles, and with them the partial sums ``partials[tile]``, depend
    only on the shape.  Writes the losses (to ``out`` for ``none``) and the gradient.

    Class targets ``target`` (flat) are validated tile by tile before anything is read through
    them, as the target pass does (:func:`.targets._targets`): ``wsum[b]`` receives the sum of
    the kept targets' weights in target order, ``bad[b]`` the first out-of-range position or -1
    (the block stops there).  A 2-d input's block of ``BLOCK // tile`` tiles is one of the
    target pass's blocks, so the sums are the pass's, bit for bit, and one call can validate,
    count and compute: the targets are read once.  Already validated targets (ignored ones -1)
    pass through unchanged.  Probability targets come as ``tgt`` (same shape as ``x``; ``target``
    is then not read), class targets with ``tgt`` None: decided when Numba compiles, so a
    class-target call never compiles the probability tile.

    Each block allocates its scratch once for all its tiles (rows padded: a stride of a
    multiple of 4 KB makes the transpose's stores collide in the cache).
    """
    C = x.shape[1]
    per = S if x.ndim == 3 else x.shape[0]  # samples per slab
    per_slab = max(1, -(-per // tile))
    want_out = out.size > 0
    want_grad = grad.size > 0
    has_w = w.size > 0
    w_total = np.float64(C)
    if has_w:
        w_total = 0.0
        for c in range(C):
            w_total += w[c]
    P = (min(tile, per) + 23) // 8 * 8  # padded, and a multiple of 8 (see _tile)
    xt = np.empty((C, P), x.dtype)  # the tile: logits, then exp(x - m), then the gradient
    fs = np.empty((5, P))
    vs = np.empty((5, P), x.dtype)
    cls = np.empty(P, np.int64)
    half = np.empty(P // 2 + 1)
    tt = np.empty((1, 1) if tgt is None else (C, P), x.dtype)  # the probabilities' tile
    acc = 0.0
    first_bad = -1
    for p in range(b * span, min(b * span + span, partials.size)):
        n = p // per_slab
        s0 = (p - n * per_slab) * tile
        s1 = min(s0 + tile, per)
        r0 = n * per + s0
        T = s1 - s0
        if tgt is None:
            n_bad = 0
            for i in range(T):  # branch-free: it vectorizes
                v = target[r0 + i]
                ignored = has_ignore and v == ignore
                out_of_range = v < 0 or v >= C
                cls[i] = -1 if ignored or out_of_range else np.int64(v)
                n_bad += 1 if out_of_range and not ignored else 0
            if n_bad > 0:
                for i in range(T):
                    v = target[r0 + i]
                    if (v < 0 or v >= C) and not (has_ignore and v == ignore):
                        first_bad = r0 + i
                        break
                break
        _tile(x, n, s0, s1, xt)
        g = gscale[r0 : r0 + T] if gstride else gscale[:1]
        if tgt is None:
            acc = _ce_tile(xt, T, cls, w, eps, w_total, g, want_grad, fs, vs, acc)
        else:
            _tile(tgt, n, s0, s1, tt)
            _ce_prob_tile(xt, tt, T, w, eps, g, want_grad, fs, vs)
        if want_grad:
            _untile(xt, T, grad, n, s0)
        loss = fs[1, :T]
        if want_out:
            o = out[r0:r0 + T]
            for t in range(T):
                o[t] = loss[t]
        partials[p] = reduce.tree_sum(loss, half)
    wsum[b] = acc
    bad[b] = first_bad


# the block functions' bodies, inlined at Numba's IR level into _ce_small (globals compiled code can
# call): the wrapper then compiles them once, instead of compiling each block function on its own
# and then again as code linked into it
_targets_block = inlined(_targets.block.py_func)
_ce_columns_block = inlined(_ce_columns.block.py_func)


@serial
def _ce_small(x, target, ignore, has_ignore, w, eps, gs, gstride, is_mean, out, grad):
    """A small 2-d, few-class cross-entropy in one compiled call: the target pass's and the tile
    kernel's block functions over their blocks, and the total.  Returns
    ``(total, denominator, first_bad)``.

    The same block functions as the general path, so the same results.  One compiled call
    instead of several from Python: on a 64x10 input the dispatches and allocations are the
    cost (8 us here against 14 us as separate calls), paid for with about 2 s more of a cold
    first call (this wrapper's LLVM pass over the code it links).
    """
    m = target.size
    C = x.shape[1]
    nb = max(1, -(-m // reduce.BLOCK))
    cls = np.empty(m, np.int64)
    wsum = np.empty(nb)
    bad = np.empty(nb, np.int64)
    for b in range(nb):
        _targets_block(b, target, ignore, has_ignore, C, w, cls, wsum, bad)
    denominator = reduce.combine(wsum)
    for b in range(nb):
        if bad[b] >= 0:
            return 0.0, denominator, bad[b]
    if is_mean:
        gs = gs / denominator
    tile = _tile_size(C)
    span = max(1, reduce.BLOCK // tile)
    partials = np.empty(max(1, -(-x.shape[0] // tile)))
    for b in range(-(-partials.size // span)):  # the validated targets again: checked, not counted
        _ce_columns_block(b, x, cls, np.int64(-1), True, None, w, eps, gs, gstride, out, grad, partials, wsum, bad, tile, span, 1)
    return reduce.combine(partials), denominator, -1


#: ``_ce_plain``'s modes: validate and count the targets only; the loss only (``gs`` already
#: scaled); both in one call, ``gs`` as given (``sum``/``none``) or divided by the count (``mean``).
PLAIN_COUNT, PLAIN_LOSS, PLAIN_SUM, PLAIN_MEAN = 0, 1, 2, 3


@blocked
def _ce_plain(b, span, mode, x, target, ignore, has_ignore, gs, gstride, out, grad, scratch):
    """Cross-entropy with the default options (no class weights, no label smoothing) of a 2-d
    few-class input: tiles ``b * span`` to ``(b + 1) * span`` (of :func:`_tile_size` rows) in
    ``mode`` (``PLAIN_*``), with none of the options' code and simpler loops than
    :func:`_ce_columns` (a plain transpose, the gradient written row by row): about a third of its
    compile time, within 1.4x of its speed at 10 classes and as fast at 32 and 64.  Returns ``(the
    kept targets, the first out-of-range position or -1, n)`` with ``n`` the tiles in all.
    ``scratch`` (at least ``3 n``; tiles have at least 8 rows) receives the tiles' loss sums, then
    per block the kept targets and the first out-of-range position (both exact in float64).  The
    caller adds the sums (:func:`numbaloss.core.reduce.total`): the kernel then needs no compiled
    :func:`~numbaloss.core.reduce.tree_sum` of its own, and its one per-tile sum is inlined (0.1-0.2 s
    less for a cold first call).

    One call (``b = 0``, every tile, ``PLAIN_SUM``/``PLAIN_MEAN``) serves a small input whole; a
    large one runs it as a parallel kernel, once per tile to count (``PLAIN_COUNT``) and once to
    compute (``PLAIN_LOSS``, with the mean's scale): the same compiled block either way, so a
    first large call after a small one compiles only the parallel loop around it.

    The operations of the target pass and of :func:`_ce_tile` with ``w`` empty and ``eps = 0``, in
    the same order and precisions (the max as ``np.maximum`` takes it, ``exp(x - m)`` in the input's
    dtype summed in float64 in class order, the same formulas and roundings), and the loss summed
    over the same tiles: the same bits as the tile path with unit class weights, which the
    determinism tests check.
    """
    N, C = x.shape
    tile = _tile_size(C)
    n_tiles = max(1, -(-N // tile))
    b0 = min(b * span, n_tiles)
    b1 = min(b0 + span, n_tiles)
    partials = scratch[:n_tiles]
    count = 0  # kept targets
    if mode != PLAIN_LOSS:
        first_bad = -1
        for i in range(b0 * tile, min(b1 * tile, N)):  # nothing is read through a target before all are checked
            t = target[i]
            if not (has_ignore and t == ignore):
                if t < 0 or t >= C:
                    first_bad = i
                    break
                count += 1
        scratch[n_tiles + b] = count  # a sum of ones: exact in any order
        scratch[2 * n_tiles + b] = first_bad
        if mode == PLAIN_COUNT or first_bad >= 0:
            return np.float64(count), first_bad, n_tiles
        if mode == PLAIN_MEAN:
            gs = gs / np.float64(count)
    want_out = out.size > 0
    want_grad = grad.size > 0
    w_total = np.float64(C)
    one = vm.like(1.0, x)
    n = min(tile, N)
    # the tile, class-major: x, then exp(x - m); its rows padded (a stride of a multiple of 4 KB
    # makes the transpose's stores collide in the cache: 2x slower)
    et = np.empty((C, n + 16), x.dtype)
    m = np.empty(n, x.dtype)  # the rows' max logits
    cls = np.empty(n, np.int64)  # the tile's classes, -1 where ignored
    gap = np.empty(n, x.dtype)  # m - x_y
    s = np.empty(n)
    q = np.empty(n)
    loss = np.empty(n)
    for p in range(b0, b1):
        r0 = p * tile
        T = min(r0 + tile, N) - r0
        xs = x[r0 : r0 + T]
        # Class-major, as the tile path: every loop below then runs along the rows (vectorized,
        # however few the classes), and each row's max and sum still run over its classes in order.
        for t in range(T):  # transposed
            xr = xs[t]
            for c in range(C):
                et[c, t] = xr[c]
        for t in range(T):
            m[t] = et[0, t]
        for c in range(1, C):  # as the tile path: the first NaN wins, else the larger (branch-free)
            ec = et[c]
            for t in range(T):
                m[t] = np.maximum(m[t], ec[t])
        for t in range(T):
            y = target[r0 + t]
            k = np.int64(y) if not (has_ignore and y == ignore) else -1
            cls[t] = k
            gap[t] = m[t] - et[max(k, 0), t]
        for t in range(T):
            s[t] = 0.0
        for c in range(C):  # exp(x - m) in the input's dtype, summed in float64 in class order
            ec = et[c]
            for t in range(T):
                ec[t] = vm.exp_neg(ec[t] - m[t])
            for t in range(T):
                s[t] += ec[t]
        for t in range(T):
            lt, q[t] = class_row_loss(vm.log_ge1(s[t], x), gap[t], 0.0, 1.0, 0.0, 0.0, w_total)
            loss[t] = lt if cls[t] >= 0 else 0.0
        if want_out:
            o = out[r0:r0 + T]
            for t in range(T):
                o[t] = loss[t]
        if want_grad:  # row by row, reading the tile's exponentials across it
            for t in range(T):
                k = cls[t]
                g = gs[(r0 + t) * gstride]
                ga = vm.like(g * (q[t] / s[t]) if k >= 0 else 0.0 / s[t], x)  # ignored: 0 * softmax, NaN rows stay NaN
                gb = vm.like(g * 0.0 if k >= 0 else 0.0, x)
                gr = grad[r0 + t]
                for c in range(C):
                    gr[c] = ga * et[c, t] - gb * one
                if k >= 0:
                    gr[k] = g * class_target_grad(q[t] / s[t], et[k, t], 1.0, 0.0, 0.0)
        partials[p] = reduce.tree_sum_inlined(loss[:T], np.empty((T + 1) // 2))
    return np.float64(count), -1, n_tiles
