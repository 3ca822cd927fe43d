"""The target pass: class indices validated, ignored ones mapped to -1, the mean's denominator summed.

It runs before any row kernel, so no kernel can read out of bounds.
"""

import numpy as np

from ...core import reduce
from ...core.jit import blocked
from ...core.validate import int_range, or_empty


# ------------------------------------------------------------------ target pass
@blocked
def _targets(b, target, ignore, has_ignore, n_classes, w, cls, wsum, bad):
    """Block ``b`` of the target pass: ``cls[i]`` = the class, or -1 (ignored or out of range),
    ``wsum[b]`` = the sum of the kept targets' weights, ``bad[b]`` = the first out-of-range
    position or -1."""
    block = reduce.BLOCK
    lo = b * block
    hi = min(lo + block, target.size)
    has_w = w.size > 0
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


def target_pass(flat, ignore, has_ignore, n_classes, w):
    """Validate flat class indices in fixed blocks (``w``: class weights, or empty).

    Returns ``(cls, denominator, first_bad)``: ``cls[i]`` is the class or -1
    (ignored), ``denominator`` the sum of the kept targets' weights (pairwise
    over blocks), ``first_bad`` the first out-of-range position or -1.
    """
    m = flat.size
    nb = reduce.n_blocks(m)
    cls = np.empty(m, np.int64)
    wsum = np.empty(nb)
    bad = np.empty(nb, np.int64)
    _targets(nb, flat, ignore, has_ignore, n_classes, w, cls, wsum, bad, work=m)
    return cls, reduce.total(wsum), reduce.first_flag(bad)


def _class_targets(target, ignore_index, n_classes, w, dtype):
    """Run the target pass; returns ``(cls, denominator)`` or raises IndexError naming the bad target."""
    flat, ignore, has_ignore = _flat_targets(target, ignore_index)
    cls, denominator, pos = target_pass(flat, ignore, has_ignore, n_classes, or_empty(w, dtype))
    if pos >= 0:
        _raise_out_of_bounds(target, pos, n_classes, ignore_index)
    return cls, denominator


def _ignore_value(dtype, ignore_index):
    """``ignore_index`` in the targets' dtype, and whether any target of that dtype can equal it."""
    lo, hi = int_range(np.dtype(dtype))
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


