"""Host plumbing of the row losses (CPU): losses that reduce over a row before the batch reduction.

A row loss's kernel is a :func:`~numbaloss.core.jit.blocked` function over blocks
of whole rows: block ``b`` owns rows ``b * R`` to ``(b + 1) * R`` (``R`` =
:func:`rows_per_block`, a function of the row length only), writes each row's
loss (float64) into ``loss_rows`` and the block's pairwise sum of them into
``partials[b]``, so the result depends on the shape alone, never on the thread
count.  This module holds what every row loss does around its kernel: the block
layout, the per-row gradient scale and the batch reduction.
"""

from dataclasses import dataclass

import numpy as np

from . import reduce


@dataclass(frozen=True)
class Rows:
    """What the registry records of a row loss (its ``family``) for the tools that make inputs from
    it (benchmarks, asv, tests): ``per_row`` names the data arrays holding one entry per row (cosine's
    label target; the others have the input's shape), ``values`` the data arrays that are not reals,
    as ``(name, kind)`` pairs with kind ``"labels"`` (0/1), ``"signs"`` (1/-1), ``"classes"`` (class
    indices into the row) or ``"label_lists"`` (rows of class indices ended by -1)."""

    per_row: tuple = ()
    values: tuple = ()


def rows_per_block(row_length):
    """Rows per kernel block: about ``reduce.ROW_WORK`` elements, at least one row."""
    return max(1, reduce.ROW_WORK // max(row_length, 1))


def grad_scale(reduction, grad_output, loss_shape, wanted):
    """The per-row gradient scale ``(scale, stride)`` (row ``r`` uses ``scale[r * stride]``): the mean
    divides by the number of rows (the loss's elements)."""
    n = int(np.prod(loss_shape, dtype=np.int64))
    return reduce.grad_scale(reduction, grad_output, n, loss_shape, wanted)


def launch(kernel, data, n_rows, row_length, loss_shape, dtype, reduction, grad_output, return_grad, grads=1,
           checked=False, work=None):
    """Run a row loss's CPU kernel over ``n_rows`` rows of ``row_length`` and finish the reduction:
    ``(value, grads, first_bad)``.

    Every row kernel's arguments end the same way, after its ``data`` (arrays and options):
    ``rpb, gscale, gstride, loss_rows, grad_1 .. grad_k, partials`` and, when it checks its
    targets (``checked``), ``bad`` (per block, the first bad position or -1).  ``grads``: ``k``, the
    ``(n_rows, row_length)`` gradients of ``dtype`` it writes (None each without ``return_grad``).
    ``first_bad`` is -1 when nothing was flagged; otherwise the caller raises (``value`` is then
    meaningless)."""
    rpb = rows_per_block(row_length)
    nb = reduce.n_blocks(n_rows, rpb)
    loss_rows = np.empty(n_rows)
    partials = np.empty(nb)
    bad = np.empty(nb, np.int64)
    out = [np.empty((n_rows, row_length), dtype) if return_grad else None for _ in range(grads)]
    gscale, gstride = grad_scale(reduction, grad_output, loss_shape, return_grad)
    kernel(nb, *data, rpb, gscale, gstride, loss_rows, *out, partials, *((bad,) if checked else ()),
           work=n_rows * row_length if work is None else work)
    first_bad = reduce.first_flag(bad) if checked else -1
    return finish(reduction, loss_rows, partials, dtype, loss_shape), out, first_bad


def finish(reduction, loss_rows, partials, dtype, loss_shape):
    """The loss from a kernel's per-row losses (``none``) or its block partials (``sum``, ``mean``)."""
    if reduction == "none":
        return loss_rows.astype(dtype).reshape(loss_shape)
    total = reduce.total(partials)
    return reduce.finish(reduction, None, total, loss_rows.size, np.dtype(dtype), loss_shape)
