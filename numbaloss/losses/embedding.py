r"""Embedding losses over pairs of rows: ``cosine_embedding_loss``, ``triplet_margin_loss``.

A row loss: sums over each row (the embedding dimension) first, then a per-row
finish, then the batch reduction.  The scalar per-row finish below is shared by
the CPU kernel here and the CUDA kernel (:mod:`numbaloss.losses.embedding_cuda`);
the host code around the kernel is :mod:`numbaloss.core.rows`.
"""

import math
import numbers

import numpy as np

from ..core import reduce, rows
from ..core import vmath as vm
from ..core.dispatch import host_array, host_param
from ..core.elementwise import sum_to_shape
from ..core.jit import blocked, blocked_copy, internal, scalar, uncached
from ..core.registry import register, run
from ..core.validate import broadcast_shape, float_dtype

#: torch adds this to each squared norm (``EPSILON`` in ATen's ``cosine_embedding_loss``, a C++
#: ``float``: float64 inputs see float32(1e-12) too).
COSINE_EPS = float(np.float32(1e-12))


# ------------------------------------------------------------------ formulas
@scalar
def cosine_row(s12, s11, s22, y, margin):
    """A row's finish from its sums ``s12 = x1.x2``, ``s11 = |x1|^2``, ``s22 = |x2|^2`` (float64):
    ``(loss, c, cos, den, m1, m2)`` with ``m = s + 1e-12``, ``den = sqrt(m1 m2)``, ``cos = s12 / den``,
    and ``c = d loss / d cos``: ``1 - cos`` (c = -1) for ``y = 1``, ``max(0, cos - margin)`` (c = 1
    where ``cos >= margin``: the tie passes, as torch's clamp) for ``y = -1``, else 0 (c = 0)."""
    m1 = s11 + COSINE_EPS
    m2 = s22 + COSINE_EPS
    den = math.sqrt(m1 * m2)
    cos = s12 / den
    loss = 0.0
    c = 0.0
    if y == 1.0:
        loss = 1.0 - cos
        c = -1.0
    elif y == -1.0:
        v = cos - margin
        loss = 0.0 if v < 0.0 else v  # NaN stays NaN
        c = 1.0 if v >= 0.0 else 0.0
    return loss, c, cos, den, m1, m2


#: How a p-norm is computed, by ``p``: a sum of ``|v|``, of ``v^2``, of ``|v|^p``, or the max ``|v|``.
NORM_L1, NORM_L2, NORM_LP, NORM_INF = 1, 2, 0, 3


def norm_kind(p):
    """The :data:`NORM_L1`... kind of a p-norm (``p > 0``, ``inf`` included)."""
    return {1.0: NORM_L1, 2.0: NORM_L2, float("inf"): NORM_INF}.get(float(p), NORM_LP)


@scalar
def power_term(v, p, kind):
    """``|v|^p`` in float64 (``|v|`` for the max norm, whose terms are compared, not summed)."""
    a = abs(np.float64(v))
    if kind == NORM_L2:
        return a * a
    if kind == NORM_LP:
        return a**p
    return a


@scalar
def norm_of(total, p, kind):
    """The p-norm from its summed terms (the max itself for ``inf``)."""
    if kind == NORM_L2:
        return math.sqrt(total)
    if kind == NORM_LP:
        return total ** (1.0 / p)
    return total


@scalar
def norm_slope(v, d, count, p, kind):
    """``d |v|_p / d v_i`` for an entry ``v`` of a vector of norm ``d`` (float64): ``v / d``, ``sign(v)``,
    ``sign(v) (|v| / d)^(p - 1)``, or for ``inf`` ``sign(v) / count`` at the ``count`` entries equal to the max
    (torch splits it).  0 where ``d = 0`` or ``v = 0``, as torch's norm backward."""
    v = np.float64(v)
    if d == 0.0 or v == 0.0:
        return 0.0 * v  # NaN stays NaN
    sign = 1.0 if v > 0.0 else -1.0
    if kind == NORM_L2:
        return v / d
    if kind == NORM_L1:
        return sign
    if kind == NORM_LP:
        return sign * (abs(v) / d) ** (p - 1.0)
    return sign / count if abs(v) == d else 0.0 * v


@scalar
def triplet_row(d_ap, d_an, d_pn, swap, margin):
    """``(loss, c, s_an, s_pn)``: ``max(0, d_ap - d_neg + margin)`` with ``d_neg = d_an``, or with ``swap``
    ``min(d_an, d_pn)``; ``c = [u >= 0]`` (the tie passes) and the shares of ``d_neg``'s gradient going to
    ``d_an`` and ``d_pn`` (half each at a tie, as torch's minimum)."""
    s_an = 1.0
    s_pn = 0.0
    d_neg = d_an
    if swap:
        if d_pn < d_an:
            s_an = 0.0
            s_pn = 1.0
            d_neg = d_pn
        elif not d_an < d_pn:  # a tie, or NaN (which the min propagates)
            s_an = 0.5
            s_pn = 0.5
            d_neg = d_an if d_an == d_pn else d_an + d_pn
    u = margin + d_ap - d_neg  # torch's order of the additions
    return (0.0 if u < 0.0 else u), (1.0 if u >= 0.0 else 0.0), s_an, s_pn


# ------------------------------------------------------------------ CPU kernels
@internal
def _row_norm(v, terms, scratch, p, kind):
    """``(|v|_p, how many entries equal the max)`` of one row ``v``: terms summed pairwise in float64
    (``inf``: the max, NaN propagating, and its count)."""
    n = v.size
    if kind == NORM_INF:
        m = 0.0
        for i in range(n):
            a = abs(np.float64(v[i]))
            m = a if (a > m or a != a) else m
        count = 0.0
        for i in range(n):
            count += 1.0 if abs(np.float64(v[i])) == m else 0.0
        return m, count
    for i in range(n):
        terms[i] = power_term(v[i], p, kind)
    return norm_of(reduce.tree_sum(terms, scratch), p, kind), 1.0


@internal
def _row_norm_l2(v, terms, scratch, p, kind):
    """:func:`_row_norm` for ``p = 2`` only (``p`` and ``kind`` unused): torch's default, compiled without
    the other norms' code.  Same operations, so the same bits: ``|v|^2`` is ``v^2``."""
    for i in range(v.size):
        a = np.float64(v[i])
        terms[i] = a * a
    return math.sqrt(reduce.tree_sum(terms, scratch)), 1.0


@internal
def _row_slopes_l2(v, d, count, p, kind, out):
    """:func:`_row_slopes` for ``p = 2`` only: ``v / d``, or ``0 v`` when ``d = 0`` (every entry is then 0)."""
    if d != 0.0:
        inv = vm.like(1.0 / d, out)
        for i in range(v.size):
            out[i] = v[i] * inv
        return
    for i in range(v.size):
        out[i] = 0.0 * np.float64(v[i])


@internal
def _row_slopes(v, d, count, p, kind, out):
    """``out = d |v|_p / d v`` (:func:`norm_slope`) in ``out``'s dtype (``p = 2`` runs
    :func:`_row_slopes_l2`, vectorized in the input's dtype)."""
    for i in range(v.size):
        out[i] = norm_slope(v[i], d, count, p, kind)


def _triplet_block(b, a, pos, neg, margin, p, kind, eps, swap, rpb, gscale, gstride, loss_rows, ga, gp, gn, partials):
    """Rows ``b * rpb`` on of the triplet ``(a, pos, neg)`` (``(N, D)``): the distances
    ``|a - pos + eps|_p``, ``|a - neg + eps|_p`` (and ``|pos - neg + eps|_p`` with ``swap``), the loss
    (:func:`triplet_row`) and, with ``ga``, the three gradients ``c g`` times the distances' slopes."""
    N, D = a.shape
    r0 = b * rpb
    r1 = min(r0 + rpb, N)
    e = vm.like(eps, a)
    v_ap = np.empty(D, a.dtype)
    v_an = np.empty(D, a.dtype)
    v_pn = np.empty(D, a.dtype)
    q_ap = np.empty(D, a.dtype)
    q_an = np.empty(D, a.dtype)
    q_pn = np.empty(D, a.dtype)
    for i in range(D):
        q_pn[i] = 0.0  # stays 0 without swap (a NaN left in it would reach the gradient)
    terms = np.empty(D)
    scratch = np.empty((D + 1) // 2)
    for r in range(r0, r1):
        ar = a[r]
        pr = pos[r]
        nr = neg[r]
        for i in range(D):
            v_ap[i] = ar[i] - pr[i] + e
            v_an[i] = ar[i] - nr[i] + e
        d_ap, c_ap = ROW_NORM(v_ap, terms, scratch, p, kind)  # noqa: F821 (bound per copy)
        d_an, c_an = ROW_NORM(v_an, terms, scratch, p, kind)  # noqa: F821
        d_pn = 0.0
        c_pn = 1.0
        if swap:
            for i in range(D):
                v_pn[i] = pr[i] - nr[i] + e
            d_pn, c_pn = ROW_NORM(v_pn, terms, scratch, p, kind)  # noqa: F821
        loss, c, s_an, s_pn = triplet_row(d_ap, d_an, d_pn, swap, margin)
        loss_rows[r] = loss
        if ga is not None:
            g = gscale[r * gstride] * c  # c = 0 still carries a NaN row's NaN, as torch's chain
            ROW_SLOPES(v_ap, d_ap, c_ap, p, kind, q_ap)  # noqa: F821
            ROW_SLOPES(v_an, d_an, c_an, p, kind, q_an)  # noqa: F821
            if swap:
                ROW_SLOPES(v_pn, d_pn, c_pn, p, kind, q_pn)  # noqa: F821
            g0 = vm.like(g, a)
            g_an = vm.like(g * s_an, a)
            g_pn = vm.like(g * s_pn, a)
            oa = ga[r]
            op = gp[r]
            on = gn[r]
            for i in range(D):
                oa[i] = g0 * q_ap[i] - g_an * q_an[i]
                op[i] = -(g0 * q_ap[i]) - g_pn * q_pn[i]
                on[i] = g_an * q_an[i] + g_pn * q_pn[i]
    partials[b] = reduce.tree_sum(loss_rows[r0:r1], np.empty((r1 - r0 + 1) // 2))


#: The triplet kernel for every p-norm, and for ``p = 2`` alone: a first call with torch's default
#: compiles only the Euclidean helpers.
_triplet_kernel = blocked_copy(_triplet_block, "_triplet_kernel", dict(ROW_NORM=_row_norm, ROW_SLOPES=_row_slopes), __file__)
_triplet_kernel_l2 = blocked_copy(_triplet_block, "_triplet_kernel_l2", dict(ROW_NORM=_row_norm_l2, ROW_SLOPES=_row_slopes_l2),
                                  __file__)


@blocked
def _cosine_kernel(b, x1, x2, y, margin, rpb, gscale, gstride, loss_rows, g1, g2, partials):
    """Rows ``b * rpb`` on of ``x1``, ``x2`` (``(N, D)``): the three sums in float64 (pairwise), the
    loss (:func:`cosine_row`) and, with ``g1``, the gradients ``c g (x2 / den - cos x1 / m1)`` and
    ``c g (x1 / den - cos x2 / m2)``.  ``partials[b]``: the block's pairwise sum of its rows' losses."""
    N, D = x1.shape
    r0 = b * rpb
    r1 = min(r0 + rpb, N)
    p12 = np.empty(D)
    p11 = np.empty(D)
    p22 = np.empty(D)
    scratch = np.empty((D + 1) // 2)
    for r in range(r0, r1):
        a = x1[r]
        c = x2[r]
        for d in range(D):
            ad = np.float64(a[d])
            cd = np.float64(c[d])
            p12[d] = ad * cd
            p11[d] = ad * ad
            p22[d] = cd * cd
        s12 = reduce.tree_sum(p12, scratch)
        s11 = reduce.tree_sum(p11, scratch)
        s22 = reduce.tree_sum(p22, scratch)
        loss, coef, cos, den, m1, m2 = cosine_row(s12, s11, s22, y[r], margin)
        loss_rows[r] = loss
        if g1 is not None:
            o1 = g1[r]
            o2 = g2[r]
            # c = 0: torch's where passes 0 to cos (even for a NaN grad_output), but the chain
            # through den still turns a NaN or inf row's gradient into NaN, as here
            g = 0.0 if coef == 0.0 else gscale[r * gstride] * coef
            ga = vm.like(g / den, x1)
            b1 = vm.like(g * cos / m1, x1)
            b2 = vm.like(g * cos / m2, x1)
            for d in range(D):
                o1[d] = ga * c[d] - b1 * a[d]
                o2[d] = ga * a[d] - b2 * c[d]
    partials[b] = reduce.tree_sum(loss_rows[r0:r1], np.empty((r1 - r0 + 1) // 2))


# ------------------------------------------------------------------ host
def cosine_layout(shape1, shape2, target_shape, target_dtype):
    """torch's shape rules for ``cosine_embedding_loss``: ``(input shape, loss shape)``, the inputs
    broadcast together (2-d with a 1-d target, 1-d with a 0-d one), the target broadcast to the rows."""
    s1, s2, ts = tuple(shape1), tuple(shape2), tuple(target_shape)
    if len(ts) > 1:
        raise ValueError(f"0D or 1D target tensor expected, multi-target not supported (target of shape {ts})")
    ndim = 2 if len(ts) == 1 else 1
    if len(s1) != ndim or len(s2) != ndim:
        raise ValueError(f"{len(ts)}D target tensor expects {ndim}D input tensors, but found inputs with sizes "
                         f"{list(s1)} and {list(s2)}.")
    if np.dtype(target_dtype).kind not in "biuf":
        raise TypeError(f"target must be a real numeric array of 1 / -1 labels, got {np.dtype(target_dtype)}")
    try:
        shape = np.broadcast_shapes(s1, s2)
    except ValueError:
        raise ValueError(f"input1 of shape {s1} and input2 of shape {s2} do not broadcast together") from None
    loss_shape = shape[:-1]
    broadcast_shape(ts, loss_shape, "target")  # the target does not add rows
    return shape, loss_shape


def _rows(a, shape, dtype):
    """``a`` broadcast to ``shape`` as a contiguous ``(rows, D)`` array (a copy only when broadcast)."""
    full = np.broadcast_to(a, shape) if a.shape != tuple(shape) else a
    return np.ascontiguousarray(full, dtype).reshape(int(np.prod(shape[:-1], dtype=np.int64)), shape[-1])


def _cosine_cpu(spec, input1, input2, target, *, reduction, return_grad, grad_output, margin=0.0):
    x1 = host_array(input1, "input1")
    dtype = float_dtype(x1.dtype, "input1")
    x2 = host_param(host_array(input2, "input2"), "input2", dtype)
    y = host_array(target, "target")
    shape, loss_shape = cosine_layout(x1.shape, x2.shape, y.shape, y.dtype)
    a = _rows(x1, shape, dtype)
    c = _rows(x2, shape, dtype)
    N, D = a.shape
    yr = np.ascontiguousarray(np.broadcast_to(y, loss_shape), np.float64).reshape(N)
    value, (g1, g2), _ = rows.launch(_cosine_kernel, (a, c, yr, float(margin)), N, D, loss_shape, dtype, reduction,
                                     grad_output, return_grad, grads=2)
    if not return_grad:
        return value, ()
    return value, (sum_to_shape(g1.reshape(shape), x1.shape), sum_to_shape(g2.reshape(shape), x2.shape))


@register(module="CosineEmbeddingLoss", cpu=_cosine_cpu, cuda="numbaloss.losses.embedding_cuda",
          arrays=("input1", "input2", "target"), grads=("input1", "input2"), mean="the pairs (rows)",
          family=rows.Rows(per_row=("target",), values=(("target", "signs"),)))
def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean", *, return_grad=False,
                          grad_output=None):
    r"""Cosine embedding loss, as ``torch.nn.functional.cosine_embedding_loss``.

    .. math::
        \cos_n = \frac{x_1 \cdot x_2}{\sqrt{(|x_1|^2 + \epsilon)(|x_2|^2 + \epsilon)}}, \quad
        \ell_n = \begin{cases} 1 - \cos_n & y_n = 1 \\ \max(0, \cos_n - m) & y_n = -1 \\ 0 & \text{else} \end{cases},
        \qquad \frac{\partial \ell_n}{\partial x_1} = c_n \Bigl(\frac{x_2}{\sqrt{(|x_1|^2 + \epsilon)(|x_2|^2 + \epsilon)}}
        - \cos_n \frac{x_1}{|x_1|^2 + \epsilon}\Bigr)

    with :math:`\epsilon` = float32(1e-12) (torch's constant) and :math:`c_n = \partial \ell_n / \partial \cos_n` (-1, 1 where
    :math:`\cos_n \ge m`, or 0); :math:`x_2`'s gradient swaps the two.  ``input1``/``input2`` are
    ``(N, D)`` (broadcast together) with a ``(N,)`` target, or ``(D,)`` with a 0-d one.  The sums
    are float64; gradients come back as ``(g_input1, g_input2)``.

    Example:
        >>> import numpy as np, numbaloss
        >>> a = np.array([[1.0, 0.0], [1.0, 1.0]])
        >>> b = np.array([[1.0, 1.0], [1.0, 1.0]])
        >>> numbaloss.cosine_embedding_loss(a, b, np.array([1, -1]), margin=0.5, reduction="none").round(4)
        array([0.2929, 0.5   ])
    """
    return run(cosine_embedding_loss.spec, (input1, input2, target), {"margin": margin}, reduction, return_grad,
               grad_output)


# ------------------------------------------------------------------ triplet_margin_loss
def triplet_layout(shapes, margin, p):
    """torch's rules for the triplet losses: ``(input shape, loss shape)``: the three arrays have the
    same number of dimensions (1-d: one triplet) and broadcast together; the distance runs over the
    last dimension.  ``margin`` must be positive; ``p`` (None for a distance function) positive."""
    names = ("anchor", "positive", "negative")
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    if p is not None and not (isinstance(p, numbers.Real) and p > 0):
        raise ValueError(f"p must be a positive number (inf included), got {p!r}: numbaloss computes p-norms only")
    nd = [len(s) for s in shapes]
    if len(set(nd)) != 1:
        raise ValueError("The anchor, positive, and negative tensors are expected to have the same number of dimensions, "
                         f"but got: anchor {nd[0]}D, positive {nd[1]}D, and negative {nd[2]}D inputs")
    if nd[0] == 0:
        raise ValueError("the triplet losses need inputs with at least 1 dimension, got 0-d arrays")
    try:
        shape = np.broadcast_shapes(*map(tuple, shapes))
    except ValueError:
        raise ValueError(", ".join(f"{n} of shape {tuple(s)}" for n, s in zip(names, shapes)) + " do not broadcast together") from None
    if p is not None and math.isinf(p) and shape[-1] == 0:
        raise ValueError("the inf norm of an empty row is undefined (torch raises too): the rows have length 0")
    return shape, shape[:-1]


def _triplet_rows(anchor, positive, negative, margin, p):
    """The triplet as host arrays (positive and negative in the anchor's dtype), checked
    (:func:`triplet_layout`), and as contiguous ``(rows, D)`` arrays of the broadcast shape:
    ``(arrays, rows, dtype, shape, loss shape)``."""
    a = host_array(anchor, "anchor")
    dtype = float_dtype(a.dtype, "anchor")
    pos = host_param(host_array(positive, "positive"), "positive", dtype)
    neg = host_param(host_array(negative, "negative"), "negative", dtype)
    shape, loss_shape = triplet_layout((a.shape, pos.shape, neg.shape), margin, p)
    return (a, pos, neg), tuple(_rows(v, shape, dtype) for v in (a, pos, neg)), dtype, shape, loss_shape


def _triplet_cpu(spec, anchor, positive, negative, *, reduction, return_grad, grad_output, margin=1.0, p=2.0, eps=1e-6,
                 swap=False):
    (a, pos, neg), (ar, pr, nr), dtype, shape, loss_shape = _triplet_rows(anchor, positive, negative, margin, p)
    N, D = ar.shape
    kind = norm_kind(p)
    data = (ar, pr, nr, float(margin), float(p), kind, float(eps), bool(swap))
    kernel = _triplet_kernel_l2 if kind == NORM_L2 else _triplet_kernel
    value, grads, _ = rows.launch(kernel, data, N, D, loss_shape, dtype, reduction, grad_output, return_grad,
                                  grads=3, work=N * D * (3 if swap else 2))
    if not return_grad:
        return value, ()
    return value, tuple(sum_to_shape(g.reshape(shape), v.shape) for g, v in zip(grads, (a, pos, neg)))


@register(module="TripletMarginLoss", cpu=_triplet_cpu, cuda="numbaloss.losses.embedding_cuda",
          arrays=("anchor", "positive", "negative"), grads=("anchor", "positive", "negative"), mean="the triplets (rows)",
          family=rows.Rows())
def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean", *,
                        return_grad=False, grad_output=None):
    r"""Triplet margin loss, as ``torch.nn.functional.triplet_margin_loss``.

    .. math::
        \ell_n = \max(0,\ d(a_n, p_n) - d(a_n, n_n) + m), \quad d(x, y) = \lVert x - y + \epsilon 
Vert_p,
        \qquad rac{\partial \ell_n}{\partial a_n} = [\ell_n 	ext{ active}]
        \Bigl(rac{\partial d(a_n, p_n)}{\partial a_n} - rac{\partial d(a_n, n_n)}{\partial a_n}\Bigr)

    with :math:`\partial \lVert v 
Vert_p / \partial v_i = \operatorname{sign}(v_i) (|v_i| / \lVert v 
Vert_p)^{p - 1}`
    (0 where :math:`v_i = 0` or the norm is 0, as torch; for ``p = inf`` split among the entries
    equal to the max).  ``swap`` replaces :math:`d(a, n)` by :math:`\min(d(a, n), d(p, n))` (half the
    gradient each at a tie, as torch).  ``eps`` is added to the difference, as torch's
    ``pairwise_distance``.  Inputs ``(..., D)`` with the same number of dimensions, broadcast
    together; the loss has their shape less the last dimension.  ``margin > 0`` and ``p > 0`` (``inf``
    included); gradients come back as ``(g_anchor, g_positive, g_negative)``.

    Example:
        >>> import numpy as np, numbaloss
        >>> a, p, n = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), np.array([[1.0, 0.0]])
        >>> numbaloss.triplet_margin_loss(a, p, n, eps=0.0, reduction="none")
        array([5.])
    """
    return run(triplet_margin_loss.spec, (anchor, positive, negative), {"margin": margin, "p": p, "eps": eps, "swap": swap},
               reduction, return_grad, grad_output)


# ------------------------------------------------------------------ triplet_margin_with_distance_loss
@uncached
def _row_distances(distance, x, y, out):
    """``out[r] = distance(x[r], y[r])`` for every row (the user's compiled function; float64)."""
    for r in range(x.shape[0]):
        out[r] = distance(x[r], y[r])


@uncached
def _row_distance_grads(gradient, x, y, gx, gy):
    """``gradient(x[r], y[r], gx[r], gy[r])`` for every row: the user's function writes the gradients
    of its distance with respect to both rows."""
    for r in range(x.shape[0]):
        gradient(x[r], y[r], gx[r], gy[r])


def distance_pair(distance_function):
    """``(distance, gradient or None)`` from the ``distance_function`` option: a Numba ``@njit``
    function, or a pair ``(distance, gradient)`` of them.  A plain Python callable is a TypeError."""
    from numba.core.dispatcher import Dispatcher

    fn, grad = distance_function if isinstance(distance_function, tuple) else (distance_function, None)
    for f, what in ((fn, "distance_function"), (grad, "its gradient")):
        if f is not None and not isinstance(f, Dispatcher):
            raise TypeError(f"{what} must be a Numba @njit function of two 1-d rows (decorate it with @numba.njit), "
                            f"got {type(f).__name__}")
    return fn, grad


def _triplet_distance_cpu(spec, anchor, positive, negative, *, reduction, return_grad, grad_output,
                          distance_function=None, margin=1.0, swap=False):
    if distance_function is None:  # torch's pairwise_distance: the triplet kernel, p = 2, eps = 1e-6
        return _triplet_cpu(spec, anchor, positive, negative, reduction=reduction, return_grad=return_grad,
                            grad_output=grad_output, margin=margin, swap=swap)
    distance, gradient = distance_pair(distance_function)
    if return_grad and gradient is None:
        raise NotImplementedError("return_grad=True with a distance_function needs its gradient: pass "
                                  "distance_function=(distance, gradient), gradient(x, y, gx, gy) an @njit function "
                                  "writing d distance / dx into gx and d distance / dy into gy")
    (a, pos, neg), (ar, pr, nr), dtype, shape, loss_shape = _triplet_rows(anchor, positive, negative, margin, None)
    N, D = ar.shape
    d = np.empty((3, N))
    pairs = ((ar, pr), (ar, nr), (pr, nr))[: 3 if swap else 2]
    for k, (x, y) in enumerate(pairs):
        _row_distances(distance, x, y, d[k])
    d_ap, d_an = d[0], d[1]
    with np.errstate(invalid="ignore"):
        if swap:  # torch's minimum: NaN propagates, a tie splits the gradient
            d_pn = d[2]
            s_an = np.where(d_an < d_pn, 1.0, np.where(d_pn < d_an, 0.0, 0.5))
            d_neg = np.where(d_pn < d_an, d_pn, np.where(d_an < d_pn, d_an, d_an + 0.0 * d_pn))
        else:
            s_an, d_neg = np.ones(N), d_an
        u = margin + d_ap - d_neg
        loss_rows = np.where(u < 0.0, 0.0, u)
    value = rows.finish(reduction, loss_rows, loss_rows, dtype, loss_shape)  # pairwise over the rows
    if not return_grad:
        return value, ()
    gscale, gstride = rows.grad_scale(reduction, grad_output, loss_shape, True)
    g = (np.broadcast_to(gscale, (N,)) if gstride == 0 else gscale) * (u >= 0)
    out = []
    for x, y in pairs:
        gx, gy = np.zeros((N, D), dtype), np.zeros((N, D), dtype)
        _row_distance_grads(gradient, x, y, gx, gy)
        out.append((gx, gy))
    (dap_a, dap_p), (dan_a, dan_n) = out[:2]
    dpn_p, dpn_n = out[2] if swap else (0.0, 0.0)
    s_pn = (1.0 - s_an) if swap else np.zeros(N)
    gc = g[:, None]
    ga = gc * (dap_a - s_an[:, None] * dan_a)
    gp = gc * (dap_p - s_pn[:, None] * dpn_p)
    gn = gc * (-s_an[:, None] * dan_n - s_pn[:, None] * dpn_n)
    return value, tuple(sum_to_shape(np.asarray(q, dtype).reshape(shape), v.shape) for q, v in zip((ga, gp, gn), (a, pos, neg)))


@register(module="TripletMarginWithDistanceLoss", cpu=_triplet_distance_cpu, cuda="numbaloss.losses.embedding_cuda",
          arrays=("anchor", "positive", "negative"), grads=("anchor", "positive", "negative"), mean="the triplets (rows)",
          family=rows.Rows())
def triplet_margin_with_distance_loss(anchor, positive, negative, *, distance_function=None, margin=1.0, swap=False,
                                      reduction="mean", return_grad=False, grad_output=None):
    r"""Triplet margin loss with a distance of your own, as ``torch.nn.functional.triplet_margin_with_distance_loss``.

    .. math::
        \ell_n = \max(0,\ m + d(a_n, p_n) - d(a_n, n_n)), \qquad
        \frac{\partial \ell_n}{\partial a_n} = [\ell_n \text{ active}]\,\bigl(\partial_1 d(a_n, p_n) - \partial_1 d(a_n, n_n)\bigr)

    (``swap``: :math:`\min(d(a, n), d(p, n))`, as :func:`triplet_margin_loss`).  ``distance_function``:
    None (torch's ``pairwise_distance``, ``p = 2``, ``eps = 1e-6``: :func:`triplet_margin_loss`'s kernels, CPU
    and CUDA, gradients included); or a Numba ``@njit`` function ``distance(x, y)`` of two 1-d rows
    returning a float (CPU), applied to each row of the inputs' last dimension.  For gradients pass
    the pair ``(distance, gradient)``, ``gradient(x, y, gx, gy)`` an ``@njit`` function writing
    ``d distance / d x`` into ``gx`` and ``d distance / d y`` into ``gy``; with a distance alone
    ``return_grad=True`` raises NotImplementedError.  A plain Python callable raises TypeError.

    Example:
        >>> import numpy as np, numba, numbaloss
        >>> l1 = numba.njit(lambda x, y: np.abs(x - y).sum())
        >>> a, p, n = np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]]), np.array([[0.5, 0.0]])
        >>> numbaloss.triplet_margin_with_distance_loss(a, p, n, distance_function=l1, reduction="none")
        array([2.5])
    """
    return run(triplet_margin_with_distance_loss.spec, (anchor, positive, negative),
               {"distance_function": distance_function, "margin": margin, "swap": swap}, reduction, return_grad, grad_output)
