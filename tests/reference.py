"""Independent float64 NumPy references, written from the formulas (torch 2.13 semantics).

Each function returns ``(loss, grad_input)`` where ``grad_input`` is the gradient
of ``sum(grad_output * loss)`` with respect to ``input``.  They share no code with
numbaloss and are imported by the tests and the benchmarks alike.
"""

import numpy as np


def _reduce(per_sample, reduction, denominator):
    if reduction == "none":
        return per_sample
    total = per_sample.sum()
    if reduction == "sum":
        return total
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / denominator


def _scale(reduction, grad_output, denominator, shape):
    g = np.float64(1.0) if grad_output is None else np.asarray(grad_output, np.float64)
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            g = g / denominator
    return np.broadcast_to(g, shape)


def _classes_last(x):
    """(C,) -> (1, C); (N, C, d...) -> (N*prod(d), C) with rows in (n, d...) order."""
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        return x[None, :]
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _classes_back(rows, shape):
    if len(shape) == 1:
        return rows[0]
    moved = (shape[0],) + tuple(shape[2:]) + (shape[1],)
    return np.moveaxis(rows.reshape(moved), -1, 1)


def _log_softmax(rows):
    m = rows.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        z = rows - m
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def cross_entropy(x, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, grad_output=None):
    """Cross-entropy for class-index or probability targets, with weight, ignore_index and smoothing."""
    x = np.asarray(x, np.float64)
    shape = x.shape
    C = shape[0] if x.ndim == 1 else shape[1]
    rows = _classes_last(x)
    logp = _log_softmax(rows)
    p = np.exp(logp)
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    eps = float(label_smoothing)
    loss_shape = () if x.ndim == 1 else (shape[0],) + tuple(shape[2:])
    target = np.asarray(target)
    if target.shape == shape:  # probabilities
        t = _classes_last(target)
        if eps > 0:
            t = t * (1 - eps) + eps / C
        with np.errstate(invalid="ignore"):
            per = -(logp * t * w).sum(axis=1)
        denominator = rows.shape[0]
        g = _scale(reduction, grad_output, denominator, loss_shape).reshape(-1)
        q = w * t
        grad = g[:, None] * (p * q.sum(axis=1, keepdims=True) - q)
    else:
        y = target.reshape(-1).astype(np.int64)
        keep = y != ignore_index
        yk = np.where(keep, y, 0)
        wy = np.where(keep, w[yk], 0.0)
        with np.errstate(invalid="ignore"):
            nll = -wy * logp[np.arange(len(y)), yk]
            per = np.where(keep, (1 - eps) * nll, 0.0)
            if eps > 0:
                smooth = -(logp * w).sum(axis=1)
                per = per + np.where(keep, eps / C * smooth, 0.0)
        denominator = wy.sum()
        g = _scale(reduction, grad_output, denominator, loss_shape).reshape(-1)
        onehot = np.zeros_like(rows)
        onehot[np.arange(len(y)), yk] = 1.0
        d = (1 - eps) * wy[:, None] * (p - onehot) + (eps / C) * (w.sum() * p - w)
        with np.errstate(invalid="ignore"):
            grad = np.where(keep[:, None], g[:, None] * d, 0.0)
    return _reduce(per.reshape(loss_shape), reduction, denominator), _classes_back(grad, shape)


def nll_loss(x, target, weight=None, ignore_index=-100, reduction="mean", grad_output=None):
    """``-w[y] * x[y]`` per sample; 0 for ignored samples."""
    x = np.asarray(x, np.float64)
    shape = x.shape
    C = shape[0] if x.ndim == 1 else shape[1]
    rows = _classes_last(x)
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    loss_shape = () if x.ndim == 1 else (shape[0],) + tuple(shape[2:])
    y = np.asarray(target).reshape(-1).astype(np.int64)
    keep = y != ignore_index
    yk = np.where(keep, y, 0)
    wy = np.where(keep, w[yk], 0.0)
    per = np.where(keep, -wy * rows[np.arange(len(y)), yk], 0.0)
    denominator = wy.sum()
    g = _scale(reduction, grad_output, denominator, loss_shape).reshape(-1)
    grad = np.zeros_like(rows)
    with np.errstate(invalid="ignore"):
        grad[np.arange(len(y)), yk] = np.where(keep, -wy * g, 0.0)
    return _reduce(per.reshape(loss_shape), reduction, denominator), _classes_back(grad, shape)


def binary_cross_entropy(x, target, weight=None, reduction="mean", grad_output=None):
    """``-w (t max(log x, -100) + (1 - t) max(log(1 - x), -100))``; gradient with torch's 1e-12 floor."""
    x = np.asarray(x, np.float64)
    t = np.asarray(target, np.float64)
    w = 1.0 if weight is None else np.asarray(weight, np.float64)
    with np.errstate(divide="ignore"):
        per = -w * (t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log(1 - x), -100))
    per = np.broadcast_to(per, x.shape)
    g = _scale(reduction, grad_output, x.size, x.shape)
    grad = g * w * (x - t) / np.maximum(x * (1 - x), float(np.float32(1e-12)))  # torch's epsilon is a C++ float
    return _reduce(per, reduction, x.size), grad


def binary_cross_entropy_with_logits(x, target, weight=None, reduction="mean", pos_weight=None, grad_output=None):
    """``w ((1 - t) x - (1 + (p - 1) t) log sigmoid(x))``; gradient ``w ((p t + 1 - t) sigmoid(x) - p t)``."""
    x = np.asarray(x, np.float64)
    t = np.asarray(target, np.float64)
    w = 1.0 if weight is None else np.asarray(weight, np.float64)
    p = 1.0 if pos_weight is None else np.asarray(pos_weight, np.float64)
    # (1 - t) x - l_p log_sigmoid(x) with log_sigmoid(x) = min(x, 0) - log1p(e^-|x|), expanded so that
    # no two terms of size |x| cancel: (1 - t) max(x, 0) - p t min(x, 0) + l_p log1p(e^-|x|)
    lp = 1 + (p - 1) * t
    per = (1 - t) * np.maximum(x, 0) - p * t * np.minimum(x, 0) + lp * np.log1p(np.exp(-np.abs(x)))
    per = np.broadcast_to(w * per, x.shape)
    sig = np.exp(-np.logaddexp(0.0, -x))
    sig_neg = np.exp(-np.logaddexp(0.0, x))  # sigmoid(-x), not 1 - sigmoid(x)
    g = _scale(reduction, grad_output, x.size, x.shape)
    grad = g * w * ((1 - t) * sig - p * t * sig_neg)  # = (p t + 1 - t) sigmoid(x) - p t
    return _reduce(per, reduction, x.size), grad


# --------------------------------------------------------------- elementwise losses
def _sum_to(g, shape):
    """``g`` summed over the dimensions it was broadcast along, back to ``shape``."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    return (g.sum(axis=axes, keepdims=True) if axes else g).reshape(shape)


def _pairwise(x, target, grad_output, reduction, per, dper, denominator=None, weight=None):
    """Reduce ``per`` (the loss at the broadcast shape) and sum ``g * dper`` back to the input's shape
    (torch's ``broadcast_tensors`` semantics).  ``denominator``: what ``mean`` divides by."""
    shape = per.shape
    n = per.size if denominator is None else denominator
    if weight is not None:
        w = np.asarray(weight, np.float64)
        per, dper = per * w, dper * w
    g = _scale(reduction, grad_output, n, shape)
    with np.errstate(invalid="ignore"):
        grad = g * dper
    return _reduce(per, reduction, n), _sum_to(grad, x.shape)


def _xt(x, target):
    x = np.asarray(x, np.float64)
    t = np.asarray(target, np.float64)
    xb, tb = np.broadcast_arrays(x, t)
    return x, xb, tb


def l1_loss(x, target, reduction="mean", weight=None, grad_output=None):
    """``w |x - t|``; gradient ``w sign(x - t)`` (0 at NaN); weighted mean ``sum(w l) / sum(w)``."""
    x, xb, tb = _xt(x, target)
    d = xb - tb
    den = None if weight is None else np.sum(np.asarray(weight, np.float64))
    return _pairwise(x, target, grad_output, reduction, np.abs(d), np.nan_to_num(np.sign(d), nan=0.0), den, weight)


def mse_loss(x, target, reduction="mean", weight=None, grad_output=None):
    """``w (x - t)^2``; gradient ``2 w (x - t)``; weighted mean ``sum(w l) / sum(w)``."""
    x, xb, tb = _xt(x, target)
    d = xb - tb
    den = None if weight is None else np.sum(np.asarray(weight, np.float64))
    return _pairwise(x, target, grad_output, reduction, d * d, 2 * d, den, weight)


def smooth_l1_loss(x, target, reduction="mean", beta=1.0, grad_output=None):
    """``0.5 d^2 / beta`` for ``|d| < beta``, else ``|d| - 0.5 beta``."""
    x, xb, tb = _xt(x, target)
    d = xb - tb
    a = np.abs(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        small = a < beta
        per = np.where(small, 0.5 * d * d / (beta if beta else 1.0), a - 0.5 * beta)
        if beta:  # NaN falls through to d / beta, as in torch
            dper = np.where(d < -beta, -1.0, np.where(d > beta, 1.0, d / beta))
        else:  # l1: sign, 0 at NaN
            dper = np.nan_to_num(np.sign(d), nan=0.0)
    return _pairwise(x, target, grad_output, reduction, per, dper)


def huber_loss(x, target, reduction="mean", delta=1.0, weight=None, grad_output=None):
    """``0.5 d^2`` for ``|d| < delta``, else ``delta (|d| - 0.5 delta)``; weighted: ``mean(w l)``."""
    x, xb, tb = _xt(x, target)
    d = xb - tb
    a = np.abs(d)
    with np.errstate(invalid="ignore"):
        small = a < delta
        per = np.where(small, 0.5 * d * d, delta * (a - 0.5 * delta))
        dper = np.where(d < -delta, -delta, np.where(d > delta, delta, d))
    return _pairwise(x, target, grad_output, reduction, per, dper, None, weight)


def soft_margin_loss(x, target, reduction="mean", grad_output=None):
    """``log(1 + exp(-t x))``; gradient ``-t / (1 + exp(t x))``."""
    x, xb, tb = _xt(x, target)
    z = -tb * xb
    per = np.logaddexp(0.0, z)
    dper = -tb * np.exp(-np.logaddexp(0.0, -z))
    return _pairwise(x, target, grad_output, reduction, per, dper)


def kl_div(x, target, reduction="mean", log_target=False, grad_output=None):
    """``t (log t - x)`` (0 log 0 = 0), or ``exp(t) (t - x)`` with ``log_target``; gradient ``-t`` / ``-exp(t)``."""
    x, xb, tb = _xt(x, target)
    with np.errstate(invalid="ignore", divide="ignore"):
        if log_target:
            per, dper = np.exp(tb) * (tb - xb), -np.exp(tb)
        else:
            per, dper = np.where(tb == 0, 0.0, tb * np.log(tb)) - tb * xb, -tb
    den = (xb.shape[0] if xb.ndim else 1) if reduction == "batchmean" else None
    return _pairwise(x, target, grad_output, "mean" if reduction == "batchmean" else reduction, per, dper, den)


def poisson_nll_loss(x, target, log_input=True, full=False, eps=1e-8, reduction="mean", grad_output=None):
    """``exp(x) - t x`` or ``x - t log(x + eps)``, plus Stirling's ``t log t - t + log(2 pi t) / 2`` where ``t > 1``."""
    x, xb, tb = _xt(x, target)
    with np.errstate(invalid="ignore", divide="ignore"):
        if log_input:
            per, dper = np.exp(xb) - tb * xb, np.exp(xb) - tb
        else:
            per, dper = xb - tb * np.log(xb + eps), 1 - tb / (xb + eps)
        if full:
            per = per + np.where(tb > 1, tb * np.log(tb) - tb + 0.5 * np.log(2 * np.pi * tb), 0.0)
    return _pairwise(x, target, grad_output, reduction, per, dper)


def hinge_embedding_loss(x, target, margin=1.0, reduction="mean", grad_output=None):
    """``x [t != -1] + max(0, margin - x) [t != 1]``; the clamp passes its gradient at the tie."""
    x, xb, tb = _xt(x, target)
    v = margin - xb
    with np.errstate(invalid="ignore"):
        per = np.where(tb != -1, xb, 0.0) + np.where(tb != 1, np.where(v < 0, 0.0, v), 0.0)
        dper = (tb != -1).astype(float) - ((tb != 1) & (v >= 0)).astype(float)
    return _pairwise(x, target, grad_output, reduction, per, dper)


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction="mean", grad_output=None):
    """``max(0, -t (x1 - x2) + margin)``; gradients ``-t [u >= 0]`` and ``t [u >= 0]`` (the tie passes)."""
    x1, x2, t = (np.asarray(a, np.float64) for a in (input1, input2, target))
    a, b, tb = np.broadcast_arrays(x1, x2, t)
    u = -tb * (a - b) + margin
    with np.errstate(invalid="ignore"):
        per = np.where(u < 0, 0.0, u)
        active = (u >= 0).astype(float)
    g = _scale(reduction, grad_output, per.size, per.shape)
    return _reduce(per, reduction, per.size), (_sum_to(-g * tb * active, x1.shape), _sum_to(g * tb * active, x2.shape))


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean", grad_output=None):
    """``0.5 (log v + (x - t)^2 / v)`` with ``v = max(var, eps)`` (+ ``0.5 log 2 pi``); gradients
    ``(x - t) / v`` and ``0.5 (1 / v - (x - t)^2 / v^2)`` (the clamp untracked, as torch)."""
    x, t = np.asarray(input, np.float64), np.asarray(target, np.float64)
    is_float = isinstance(var, float)
    v0 = np.full(x.shape, var) if is_float else np.asarray(var, np.float64)
    v = v0 if v0.shape == x.shape or x.shape[:-1] != v0.shape else v0[..., None]  # one variance per row
    v = np.where(v < eps, eps, v)
    xb, tb, vb = np.broadcast_arrays(x, t, v)
    d = xb - tb
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        per = 0.5 * (np.log(vb) + d * d / vb) + (0.5 * np.log(2 * np.pi) if full else 0.0)
        g = _scale(reduction, grad_output, per.size, per.shape)
        gx = _sum_to(g * d / vb, x.shape)
        gv = None if is_float else _sum_to(g * 0.5 * (1 / vb - d * d / (vb * vb)), v.shape).reshape(v0.shape)
    return _reduce(per, reduction, per.size), (gx, gv)


# --------------------------------------------------------------- row losses
def _log_sigmoid(z):
    return np.minimum(z, 0) - np.log1p(np.exp(-np.abs(z)))


def multilabel_soft_margin_loss(x, target, weight=None, reduction="mean", grad_output=None):
    """``-mean_c w (t log sigmoid(x) + (1 - t) log sigmoid(-x))`` per row; gradient ``w (sigmoid(x) - t) / C``."""
    x, xb, tb = _xt(x, target)
    w = 1.0 if weight is None else np.asarray(weight, np.float64)
    C = xb.shape[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        per = (-w * (tb * _log_sigmoid(xb) + (1 - tb) * _log_sigmoid(-xb))).sum(axis=-1) / C
        per = np.broadcast_to(per, xb.shape[:-1])
        g = _scale(reduction, grad_output, per.size, per.shape)
        sig, sig_neg = np.exp(_log_sigmoid(xb)), np.exp(_log_sigmoid(-xb))
        grad = g[..., None] * w * ((1 - tb) * sig - tb * sig_neg) / C
    return _reduce(per, reduction, per.size), _sum_to(grad, x.shape)


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction="mean", grad_output=None):
    """``1 - cos`` (y = 1), ``max(0, cos - margin)`` (y = -1), else 0, with ``cos = x1.x2 / sqrt(m1 m2)``,
    ``m = |x|^2 + eps`` (eps: torch's C++ float 1e-12); gradient ``c (x2 / sqrt(m1 m2) - cos x1 / m1)``."""
    x1, x2 = np.asarray(input1, np.float64), np.asarray(input2, np.float64)
    a, b = np.broadcast_arrays(x1, x2)
    y = np.broadcast_to(np.asarray(target, np.float64), a.shape[:-1])
    eps = float(np.float32(1e-12))
    m1 = (a * a).sum(axis=-1) + eps
    m2 = (b * b).sum(axis=-1) + eps
    den = np.sqrt(m1 * m2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (a * b).sum(axis=-1) / den
        v = cos - margin
        per = np.where(y == 1, 1 - cos, np.where(y == -1, np.where(v < 0, 0.0, v), 0.0))
        c = np.where(y == 1, -1.0, np.where((y == -1) & (v >= 0), 1.0, 0.0))
        g = (_scale(reduction, grad_output, per.size, per.shape) * c)[..., None]
        g1 = g * (b / den[..., None] - (cos / m1)[..., None] * a)
        g2 = g * (a / den[..., None] - (cos / m2)[..., None] * b)
    return _reduce(per, reduction, per.size), (_sum_to(g1, x1.shape), _sum_to(g2, x2.shape))


def multi_margin_loss(x, target, p=1, margin=1.0, weight=None, reduction="mean", grad_output=None):
    """``w_y / C sum_{i != y} max(0, margin - x_y + x_i)^p`` (NaN terms skipped, no gradient at the tie);
    gradient ``w_y / C p z^(p-1)`` at each ``i != y`` with ``z > 0``, minus their sum at ``y``."""
    x = np.asarray(x, np.float64)
    y = np.asarray(target).reshape(-1).astype(np.int64)
    C = x.shape[-1]
    rows = x.reshape(-1, C)
    n = np.arange(rows.shape[0])
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    with np.errstate(invalid="ignore"):
        z = margin - rows[n, y][:, None] + rows
        active = z > 0
        h = np.where(active, z**p, 0.0)
        d = np.where(active, p * z ** (p - 1), 0.0)
    h[n, y] = 0.0
    d[n, y] = 0.0
    per = (w[y] * h.sum(axis=1) / C).reshape(np.shape(target))
    g = _scale(reduction, grad_output, per.size, per.shape).reshape(-1)
    grad = (g * w[y] / C)[:, None] * d
    grad[n, y] = -grad.sum(axis=1)
    return _reduce(per, reduction, per.size), grad.reshape(x.shape)


def _pnorm(v, p):
    """``(|v|_p over the last axis, d |v|_p / d v)``: 0 where the norm or the entry is 0; for ``inf`` the
    slope is split among the entries equal to the max (torch's norm backward)."""
    a = np.abs(v)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if np.isinf(p):
            d = a.max(axis=-1, initial=0.0)
            at_max = a == d[..., None]
            slope = np.sign(v) * at_max / np.maximum(at_max.sum(axis=-1, keepdims=True), 1)
        else:
            d = (a**p).sum(axis=-1) ** (1.0 / p)
            slope = np.sign(v) * (a / d[..., None]) ** (p - 1)
        slope = np.where((d[..., None] == 0) | (v == 0), 0.0 * v, slope)
    return d, slope


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean",
                        grad_output=None):
    """``max(0, d(a, p) - d(a, n) + margin)``, ``d(x, y) = |x - y + eps|_p`` (``swap``: ``min(d(a, n), d(p, n))``,
    half the gradient each at a tie); gradients from :func:`_pnorm`'s slopes."""
    a0, p0, n0 = (np.asarray(v, np.float64) for v in (anchor, positive, negative))
    a, pp, n = np.broadcast_arrays(a0, p0, n0)
    d_ap, q_ap = _pnorm(a - pp + eps, p)
    d_an, q_an = _pnorm(a - n + eps, p)
    d_pn, q_pn = _pnorm(pp - n + eps, p)
    if swap:
        s_an = np.where(d_an < d_pn, 1.0, np.where(d_pn < d_an, 0.0, 0.5))
        d_neg = np.where(d_an < d_pn, d_an, np.where(d_pn < d_an, d_pn, d_an + 0.0 * d_pn))
    else:
        s_an, d_neg = np.ones_like(d_an), d_an
    s_pn = (1.0 - s_an) if swap else np.zeros_like(d_an)
    with np.errstate(invalid="ignore"):
        u = d_ap - d_neg + margin
        per = np.where(u < 0, 0.0, u)
        c = (u >= 0).astype(float)
    g = (_scale(reduction, grad_output, per.size, per.shape) * c)[..., None]
    ga = g * (q_ap - s_an[..., None] * q_an)
    gp = g * (-q_ap - s_pn[..., None] * q_pn)
    gn = g * (s_an[..., None] * q_an + s_pn[..., None] * q_pn)
    return _reduce(per, reduction, per.size), (_sum_to(ga, a0.shape), _sum_to(gp, p0.shape), _sum_to(gn, n0.shape))


def multilabel_margin_loss(x, target, reduction="mean", grad_output=None):
    """``sum_{j < k} sum_{d not a label} max(0, 1 - x_{y_j} + x_d) / C`` per row (labels before the first
    -1, duplicates counted twice, NaN terms skipped); gradient ``+1/C`` at ``d``, ``-1/C`` at ``y_j``
    per active pair."""
    x = np.asarray(x, np.float64)
    C = x.shape[-1]
    rows = x.reshape(-1, C)
    ys = np.asarray(target).reshape(-1, C)
    per = np.zeros(rows.shape[0])
    dz = np.zeros_like(rows)
    for r, (xr, yr) in enumerate(zip(rows, ys)):
        end = np.flatnonzero(yr < 0)
        labels = yr[: end[0] if end.size else C]
        others = np.ones(C, bool)
        others[labels] = False
        for t in labels:
            with np.errstate(invalid="ignore"):
                z = 1 - xr[t] + xr
                active = others & (z > 0)
            per[r] += z[active].sum()
            dz[r, active] += 1.0
            dz[r, t] -= active.sum()
    per = (per / C).reshape(x.shape[:-1])
    g = _scale(reduction, grad_output, per.size, per.shape).reshape(-1)
    return _reduce(per, reduction, per.size), (g[:, None] * dz / C).reshape(x.shape)


def triplet_margin_with_distance_loss(anchor, positive, negative, distance_function=None, margin=1.0, swap=False,
                                      reduction="mean", grad_output=None):
    """:func:`triplet_margin_loss` (``p = 2``, ``eps = 1e-6``) without a distance function; with a
    ``(distance, gradient)`` pair, their Python bodies row by row and the same hinge, swap and sums."""
    if distance_function is None:
        return triplet_margin_loss(anchor, positive, negative, margin=margin, swap=swap, reduction=reduction,
                                   grad_output=grad_output)
    dist, grad = (f.py_func for f in distance_function)
    a0, p0, n0 = (np.asarray(v, np.float64) for v in (anchor, positive, negative))
    shape = np.broadcast_shapes(a0.shape, p0.shape, n0.shape)
    a, pp, n = (v.reshape(int(np.prod(shape[:-1])), shape[-1]) for v in np.broadcast_arrays(a0, p0, n0))

    def pair(x, y):
        d = np.array([dist(xr, yr) for xr, yr in zip(x, y)])
        gx, gy = np.zeros_like(x), np.zeros_like(y)
        for r in range(x.shape[0]):
            grad(x[r], y[r], gx[r], gy[r])
        return d, gx, gy

    (d_ap, ap_a, ap_p), (d_an, an_a, an_n), (d_pn, pn_p, pn_n) = pair(a, pp), pair(a, n), pair(pp, n)
    s_an = np.where(d_an < d_pn, 1.0, np.where(d_pn < d_an, 0.0, 0.5)) if swap else np.ones_like(d_an)
    s_pn = 1.0 - s_an if swap else np.zeros_like(d_an)
    u = margin + d_ap - (s_an * d_an + s_pn * d_pn if swap else d_an)
    per = np.where(u < 0, 0.0, u).reshape(shape[:-1])
    g = (_scale(reduction, grad_output, per.size, per.shape).reshape(-1) * (u >= 0))[:, None]
    ga = g * (ap_a - s_an[:, None] * an_a)
    gp = g * (ap_p - s_pn[:, None] * pn_p)
    gn = g * (-s_an[:, None] * an_n - s_pn[:, None] * pn_n)
    return _reduce(per, reduction, per.size), tuple(_sum_to(q.reshape(shape), v.shape) for q, v in zip((ga, gp, gn), (a0, p0, n0)))


def _ctc_samples(log_probs, targets, input_lengths, target_lengths):
    """Per sample: ``(its (T_n, C) log-probabilities, its labels)``, from either target layout."""
    lp = np.asarray(log_probs, np.float64)
    batched = lp.ndim == 3
    lp = lp if batched else lp[:, None, :]
    il = np.asarray(input_lengths, np.int64).reshape(-1)
    tl = np.asarray(target_lengths, np.int64).reshape(-1)
    t = np.asarray(targets).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(tl)))
    for n in range(lp.shape[1]):
        labels = t[n, : tl[n]] if t.ndim == 2 else t[starts[n] : starts[n + 1]]
        yield lp[: il[n], n, :], labels


def _ctc_one(lp, labels, blank):
    """``(nll, d nll / d lp)`` of one sample by the log-space recursions (np.logaddexp, float64)."""
    T, C = lp.shape
    ext = np.full(2 * len(labels) + 1, blank)
    ext[1::2] = labels
    L = ext.size
    if T == 0:
        return (0.0 if L == 1 else np.inf), np.zeros((0, C))
    skip = np.array([s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] for s in range(L)])
    with np.errstate(invalid="ignore"):
        la = np.full((T, L), -np.inf)
        la[0, :2] = lp[0, ext[:2]]
        for t in range(1, T):
            for s in range(L):
                terms = [la[t - 1, s]] + ([la[t - 1, s - 1]] if s >= 1 else []) + ([la[t - 1, s - 2]] if skip[s] else [])
                la[t, s] = np.logaddexp.reduce(terms) + lp[t, ext[s]]
        lb = np.full((T, L), -np.inf)
        lb[T - 1, L - 2 if L > 1 else 0 :] = lp[T - 1, ext[L - 2 if L > 1 else 0 :]]
        for t in range(T - 2, -1, -1):
            for s in range(L):
                terms = [lb[t + 1, s]] + ([lb[t + 1, s + 1]] if s + 1 < L else []) + ([lb[t + 1, s + 2]] if s + 2 < L and skip[s + 2] else [])
                lb[t, s] = np.logaddexp.reduce(terms) + lp[t, ext[s]]
        nll = -np.logaddexp.reduce(la[T - 1, -2:] if L > 1 else la[T - 1, -1:])
        grad = np.zeros((T, C))
        if not np.isfinite(nll):
            return nll, np.full((T, C), np.nan)
        for c in set(ext.tolist()):
            lab = np.logaddexp.reduce((la + lb)[:, ext == c], axis=1)
            # no complete path through (t, c) (its log-probability may be -inf): the derivative is 0
            grad[:, c] = np.where(lab == -np.inf, 0.0, -np.exp(lab - lp[:, c] + nll))
    return nll, grad


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False,
             grad_output=None, one=None):
    """Loss and exact gradient with respect to ``log_probs`` (zero past each input length).  ``one``
    computes ``(nll, grad)`` of one sample (default: the log-space recursions; the tests pass
    :func:`ctc_brute_force` too)."""
    one = one or _ctc_one
    lp = np.asarray(log_probs, np.float64)
    per, grads = [], []
    for x, labels in _ctc_samples(log_probs, targets, input_lengths, target_lengths):
        nll, g = one(x, labels, blank)
        if zero_infinity and nll == np.inf:
            nll, g = 0.0, np.zeros_like(g)
        per.append(nll)
        grads.append(g)
    per = np.array(per)
    tl = np.maximum(np.asarray(target_lengths, np.int64).reshape(-1), 1)
    N = per.size
    if reduction == "none":
        loss = per.reshape(lp.shape[1:2] if lp.ndim == 3 else ())
        w = np.broadcast_to(np.asarray(1.0 if grad_output is None else grad_output, np.float64), loss.shape).reshape(N)
    elif reduction == "sum":
        loss, w = per.sum(), np.full(N, 1.0 if grad_output is None else float(grad_output))
    else:
        loss = (per / tl).mean() if N else np.nan
        w = np.full(N, (1.0 if grad_output is None else float(grad_output)) / max(N, 1)) / tl
    grad = np.zeros(lp.shape if lp.ndim == 3 else (lp.shape[0], 1, lp.shape[1]))
    for n, g in enumerate(grads):
        grad[: g.shape[0], n, :] = w[n] * g
    return loss, grad.reshape(lp.shape)


def ctc_brute_force(lp, labels, blank):
    """``(nll, d nll / d lp)`` of one sample by enumerating all ``C**T`` paths (tiny cases only)."""
    import itertools

    T, C = lp.shape
    want = list(labels)
    p = 0.0
    dp = np.zeros((T, C))  # d p / d lp[t, c] = sum of the probabilities of the paths through (t, c)
    for path in itertools.product(range(C), repeat=T):
        collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
        if collapsed == want:
            q = np.exp(sum(lp[t, c] for t, c in enumerate(path)))
            p += q
            for t, c in enumerate(path):
                dp[t, c] += q
    nll = -np.log(p) if p > 0 else np.inf
    return nll, (-dp / p if p > 0 else np.full((T, C), np.nan))
