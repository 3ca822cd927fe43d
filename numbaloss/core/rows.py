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
    as ``(name, kind)`` pairs with kind ``"labels"`` (0/1), ``"signs"`` (1/-1) or ``"classes"`` (class
    indices into the row)."""

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


def finish(reduction, loss_rows, partials, dtype, loss_shape):
    """The loss from a kernel's per-row losses (``none``) or its block partials (``sum``, ``mean``)."""
    if reduction == "none":
        return loss_rows.astype(dtype).reshape(loss_shape)
    total = reduce.total(partials)
    return reduce.finish(reduction, None, total, loss_rows.size, np.dtype(dtype), loss_shape)
