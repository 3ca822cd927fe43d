r"""Embedding losses over pairs of rows: ``cosine_embedding_loss``.

A row loss: sums over each row (the embedding dimension) first, then a per-row
finish, then the batch reduction.  The scalar per-row finish below is shared by
the CPU kernel here and the CUDA kernel (:mod:`numbaloss.losses.embedding_cuda`);
the host code around the kernel is :mod:`numbaloss.core.rows`.
"""

import math

import numpy as np

from ..core import reduce, rows
from ..core import vmath as vm
from ..core.dispatch import host_array, host_param
from ..core.elementwise import sum_to_shape
from ..core.jit import blocked, scalar
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


# ------------------------------------------------------------------ CPU kernel
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
    rpb = rows.rows_per_block(D)
    nb = reduce.n_blocks(N, rpb)
    loss_rows = np.empty(N)
    partials = np.empty(nb)
    g1 = np.empty((N, D), dtype) if return_grad else None
    g2 = np.empty((N, D), dtype) if return_grad else None
    gscale, gstride = rows.grad_scale(reduction, grad_output, loss_shape, return_grad)
    _cosine_kernel(nb, a, c, yr, float(margin), rpb, gscale, gstride, loss_rows, g1, g2, partials, work=N * D)
    value = rows.finish(reduction, loss_rows, partials, dtype, loss_shape)
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
