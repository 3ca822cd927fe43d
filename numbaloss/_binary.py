r"""Binary losses: ``binary_cross_entropy`` and ``binary_cross_entropy_with_logits``.

One elementwise CPU kernel serves both; the scalar formulas below are plain
compiled functions so the CUDA kernels reuse them unchanged.
"""

import numpy as np
from numba import prange

from . import _math as M
from . import _reduce
from ._dispatch import backend_of, host_array, host_param
from ._jit import kernel, scalar, serial
from ._validate import broadcast_shape, check_same_shape, float_dtype

#: torch clamps each log at -100 so that input 0 or 1 gives a finite loss of 100.
LOG_CLAMP = -100.0
#: torch's floor on ``x (1 - x)`` in the BCE gradient; torch declares it as a
#: C++ ``float``, so float64 inputs see float32(1e-12) too.
GRAD_EPS = float(np.float32(1e-12))


@scalar
def bce_value(x, t):
    """``-(t * max(log x, -100) + (1 - t) * max(log(1 - x), -100))``, as torch computes it."""
    one = M.like(1.0, x)
    clamp = M.like(LOG_CLAMP, x)
    return (t - one) * max(M.log1p(-x), clamp) - t * max(M.log(x), clamp)


@scalar
def bce_grad(x, t):
    """``(x - t) / max(x (1 - x), 1e-12)``: finite at x = 0 and x = 1, as in torch."""
    return (x - t) / max((M.like(1.0, x) - x) * x, M.like(GRAD_EPS, x))


@scalar
def _softplus_parts(x):
    """``(log(1 + e), 1 / (1 + e), e)`` with ``e = exp(-|x|) <= 1``: never overflows."""
    e = M.exp(-abs(x))
    return M.log1p(e), M.like(1.0, x) / (M.like(1.0, x) + e), e


@scalar
def bce_logits_value(x, t, pw):
    """``(1 - t) x - (1 + (pw - 1) t) log_sigmoid(x)``, rearranged without cancellation.

    With ``L = log(1 + exp(-|x|))`` and ``l_p = 1 + (pw - 1) t`` this equals
    ``(1 - t) max(x, 0) - pw t min(x, 0) + l_p L``: non-negative terms for
    ``t`` in [0, 1].  torch's form subtracts two terms of size ``|x|`` and loses
    up to ``ulp(|x|)``, e.g. 1e-4 relative at x = -6 in float32.
    """
    one = M.like(1.0, x)
    zero = M.like(0.0, x)
    big, _, _ = _softplus_parts(x)
    pos = x if x > zero else zero
    neg = x - pos  # min(x, 0); NaN stays NaN
    return (one - t) * pos - pw * t * neg + (one + (pw - one) * t) * big


@scalar
def bce_logits_grad(x, t, pw):
    """``(pw t + 1 - t) sigmoid(x) - pw t``, computed as ``(1 - t) sigmoid(x) - pw t sigmoid(-x)``.

    Both sigmoids come from one ``exp(-|x|)``, so neither is ``1 - (something
    close to 1)``.
    """
    one = M.like(1.0, x)
    _, inv, e = _softplus_parts(x)
    s_abs = inv  # sigmoid(|x|)
    s_neg_abs = e * inv  # sigmoid(-|x|)
    sig = s_abs if x >= M.like(0.0, x) else s_neg_abs
    sig_neg = s_neg_abs if x >= M.like(0.0, x) else s_abs
    return (one - t) * sig - pw * t * sig_neg


@serial
def _values(x, t, w, pw, logits, dst):
    """``dst[i] = loss_i`` (a pure map, vectorized); returns False if a BCE input is outside [0, 1]."""
    has_w = w.size > 0
    has_pw = pw.size > 0
    one = M.like(1.0, x)
    ok = True
    if logits:
        for i in range(x.size):
            pwi = pw[i] if has_pw else one
            wi = w[i] if has_w else one
            dst[i] = bce_logits_value(x[i], t[i], pwi) * wi
    else:
        for i in range(x.size):
            xi = x[i]
            ok &= (xi >= 0) & (xi <= 1)  # NaN fails too, as in torch
            wi = w[i] if has_w else one
            dst[i] = bce_value(xi, t[i]) * wi
    return ok


@serial
def _grads(x, t, w, pw, logits, g, dst):
    """``dst[i] = g[i or 0] * d loss_i / d x_i`` (``g`` holds one scale or one per element)."""
    has_w = w.size > 0
    has_pw = pw.size > 0
    one = M.like(1.0, x)
    gstride = 1 if g.size == x.size and g.size > 1 else 0
    for i in range(x.size):
        wi = w[i] if has_w else one
        gi = M.like(g[i * gstride], x)
        if logits:
            pwi = pw[i] if has_pw else one
            dst[i] = bce_logits_grad(x[i], t[i], pwi) * wi * gi
        else:
            dst[i] = bce_grad(x[i], t[i]) * wi * gi


@kernel
def _binary_kernel(x, t, w, pw, logits, gscale, gstride, out, grad, partials, bad):
    """Elementwise BCE (``logits=False``) or BCE-with-logits over flat arrays, in blocks.

    ``w`` and ``pw`` are flat broadcasts of weight / pos_weight or empty.
    Per block: the losses (into ``out`` for ``none``, else a scratch block summed
    pairwise into ``partials``) and the gradient.  ``bad[b]`` receives the first
    index in block ``b`` with an input outside [0, 1] (BCE only), or -1.
    """
    m = x.size
    block = _reduce.BLOCK
    want_out = out.size > 0
    want_grad = grad.size > 0
    for b in prange(partials.size):
        lo = b * block
        hi = min(lo + block, m)
        xs = x[lo:hi]
        ts = t[lo:hi]
        ws = w[lo:hi] if w.size > 0 else w
        ps = pw[lo:hi] if pw.size > 0 else pw
        if want_out:
            ok = _values(xs, ts, ws, ps, logits, out[lo:hi])
            partials[b] = 0.0  # unused for reduction="none"
        else:
            vals = np.empty(hi - lo, x.dtype)
            ok = _values(xs, ts, ws, ps, logits, vals)
            partials[b] = _reduce.tree_sum(vals, np.empty((hi - lo + 1) // 2))
        bad[b] = -1
        if not ok:
            for i in range(xs.size):
                if not (xs[i] >= 0.0 and xs[i] <= 1.0):
                    bad[b] = lo + i
                    break
        if want_grad:
            gs = gscale[lo:hi] if gstride else gscale[:1]
            _grads(xs, ts, ws, ps, logits, gs, grad[lo:hi])
    for b in range(bad.size):
        if bad[b] >= 0:
            return _reduce.combine(partials), bad[b]
    return _reduce.combine(partials), -1


def _binary(input, target, weight, pos_weight, reduction, return_grad, grad_output, logits):
    _reduce.check_reduction(reduction)
    backend = backend_of(input, ("target", target), ("weight", weight), ("pos_weight", pos_weight))
    if backend == "cuda":
        from . import _binary_cuda

        return _binary_cuda.run(input, target, weight, pos_weight, reduction, return_grad, grad_output, logits)
    x = host_array(input, "input")
    t = host_array(target, "target")
    dtype = float_dtype(x.dtype)
    if t.dtype.kind not in "biuf":
        raise TypeError(f"target must be a real numeric array, got {t.dtype}")
    check_same_shape(x.shape, t.shape)
    shape = x.shape
    params = []
    for name, p in (("weight", weight), ("pos_weight", pos_weight)):
        p = host_param(p, name, dtype)
        if p is not None:
            broadcast_shape(p.shape, shape, name)
            p = np.ascontiguousarray(np.broadcast_to(p, shape)).reshape(-1)
        params.append(np.empty(0, dtype) if p is None else p)
    xf = np.ascontiguousarray(x).reshape(-1)
    tf = np.ascontiguousarray(t, dtype=dtype).reshape(-1)
    M = xf.size
    out = np.empty(M if reduction == "none" else 0, dtype)
    grad = np.empty(M if return_grad else 0, dtype)
    nb = _reduce.n_blocks(M)
    partials = np.empty(nb)
    bad = np.empty(nb, np.int64)
    gscale, gstride = _reduce.grad_scale(reduction, grad_output, M, shape, return_grad)
    total, pos = _binary_kernel(xf, tf, params[0], params[1], logits, gscale, gstride, out, grad, partials, bad, work=M)
    if pos >= 0:
        raise ValueError(
            f"all elements of input should be between 0 and 1; input{[int(i) for i in np.unravel_index(pos, shape)]} "
            f"= {xf[pos]}"
        )
    loss = _reduce.finish(reduction, out, total, M, dtype, shape)
    if return_grad:
        return loss, grad.reshape(shape)
    return loss


def binary_cross_entropy(input, target, weight=None, reduction="mean", *, return_grad=False, grad_output=None):
    r"""Binary cross-entropy between probabilities ``input`` and ``target``.

    Same semantics as ``torch.nn.functional.binary_cross_entropy``:

    .. math::
        \ell = -w\,[\,t \max(\log x, -100) + (1 - t) \max(\log(1 - x), -100)\,],
        \qquad
        \frac{\partial \ell}{\partial x} = w\,\frac{x - t}{\max(x (1 - x), 10^{-12})}

    ``input`` must lie in ``[0, 1]`` (else ValueError, NaN included, as torch);
    ``target`` has the input's shape and is cast to its dtype; ``weight``
    broadcasts to the input.  ``mean`` divides by the number of elements.

    Example:
        >>> import numpy as np, numbaloss
        >>> p = np.array([0.9, 0.2, 1.0]); y = np.array([1.0, 0.0, 0.0])
        >>> numbaloss.binary_cross_entropy(p, y, reduction="none").round(4)
        array([  0.1054,   0.2231, 100.    ])
    """
    return _binary(input, target, weight, None, reduction, return_grad, grad_output, False)


def binary_cross_entropy_with_logits(
    input, target, weight=None, reduction="mean", pos_weight=None, *, return_grad=False, grad_output=None
):
    r"""Binary cross-entropy on logits, numerically stable for any ``|x|``.

    Same semantics as ``torch.nn.functional.binary_cross_entropy_with_logits``.
    With :math:`\log\sigma(x) = \min(x, 0) - \log(1 + e^{-|x|})` and
    :math:`l_p = 1 + (p - 1)\,t` for ``pos_weight`` :math:`p`:

    .. math::
        \ell = w\,[\,(1 - t)\,x - l_p \log\sigma(x)\,],
        \qquad
        \frac{\partial \ell}{\partial x} = w\,[\,(p t + 1 - t)\,\sigma(x) - p t\,]

    ``weight`` and ``pos_weight`` broadcast to the input (``pos_weight`` of shape
    ``(C,)`` along the last dimension).  ``mean`` divides by the number of elements.

    Example:
        >>> import numpy as np, numbaloss
        >>> x = np.array([3.0, -1.0, 1e4]); y = np.array([1.0, 0.0, 0.0])
        >>> numbaloss.binary_cross_entropy_with_logits(x, y, reduction="none").round(4)
        array([4.860e-02, 3.133e-01, 1.000e+04])
    """
    return _binary(input, target, weight, pos_weight, reduction, return_grad, grad_output, True)
