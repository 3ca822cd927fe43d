"""Numba options, pinned in one place.

Every CPU kernel in numbaloss is decorated with :func:`kernel` (parallel loop over
fixed-size blocks) or :func:`serial` (small helpers, scalar math).  Nothing is
compiled at import: Numba compiles lazily on the first call for each dtype
combination and ``cache=True`` keeps the machine code on disk, so only the first
process ever pays the JIT cost.
"""

import numba

#: LLVM fast-math flags that are safe for our semantics.  Plain ``fastmath=True``
#: also sets ``nnan``/``ninf``, which lets LLVM assume no NaN/inf exist: that
#: breaks ``-inf`` masked logits and NaN propagation.  ``reassoc`` is left out
#: too: it lets LLVM reorder floating-point sums, and a freshly compiled parallel
#: kernel and its cache-loaded copy could then disagree in the last bits.
#: Reductions get their speed from explicitly written lanes instead.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})

_COMMON = dict(cache=True, fastmath=set(FASTMATH), error_model="numpy", nogil=True)


def kernel(fn):
    """A parallel CPU kernel (``prange`` over fixed-size blocks)."""
    return numba.njit(parallel=True, **_COMMON)(fn)


def serial(fn):
    """A serial compiled function: scalar math, row helpers, small loops."""
    return numba.njit(**_COMMON)(fn)
