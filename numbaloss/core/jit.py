"""Numba options, pinned in one place.

Every CPU kernel in numbaloss is decorated with :func:`kernel` (parallel loop over
fixed-size blocks) or :func:`serial` (small helpers, scalar math).  Nothing is
compiled at import: Numba compiles lazily on the first call for each dtype
combination and ``cache=True`` keeps the machine code on disk, so only the first
process ever pays the JIT cost.
"""

import functools
import types

import numba

#: LLVM fast-math flags that are safe for our semantics.  Plain ``fastmath=True``
#: also sets ``nnan``/``ninf``, which lets LLVM assume no NaN/inf exist: that
#: breaks ``-inf`` masked logits and NaN propagation.  ``reassoc`` is left out
#: too: it lets LLVM reorder floating-point sums, and a freshly compiled parallel
#: kernel and its cache-loaded copy could then disagree in the last bits.
#: Reductions get their speed from explicitly written lanes instead.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})

#: The options of every CPU function (parallel kernels add ``parallel=True``).
OPTIONS = dict(cache=True, fastmath=set(FASTMATH), error_model="numpy", nogil=True)


#: Below this many input elements a kernel runs serially: waking Numba's
#: thread pool costs tens of microseconds, more than a small loss takes.
#: Chosen by measurement (``python -m numbaloss.bench`` prints the crossover).
PARALLEL_MIN_WORK = 1 << 14


class Kernel:
    """A CPU kernel compiled twice from one source: parallel (``prange`` over
    fixed-size blocks) and serial (``prange`` runs as ``range``).  Both walk the
    same blocks in the same order per block, so results are bitwise identical.
    Call as ``kernel(*args, work=n_elements)``.
    """

    def __init__(self, fn):
        self.py_func = fn
        self.parallel = numba.njit(parallel=True, **OPTIONS)(fn)
        # a distinct qualname gives the serial twin its own on-disk cache entry
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        twin.__doc__ = fn.__doc__
        self.serial = numba.njit(**OPTIONS)(twin)
        functools.update_wrapper(self, fn)

    def __call__(self, *args, work):
        return (self.parallel if work >= PARALLEL_MIN_WORK else self.serial)(*args)


def kernel(fn):
    """A CPU kernel with parallel and serial variants, chosen per call by the amount of work."""
    return Kernel(fn)


def serial(fn):
    """A serial compiled function: scalar math, row helpers, small loops."""
    return numba.njit(**OPTIONS)(fn)


def scalar(fn):
    """A scalar helper (math function, per-element formula), inlined into its callers
    at the Numba IR level so that LLVM sees one loop body it can vectorize: left to
    LLVM's own inliner, a chain such as ``log1p(exp(-|x|))`` can stay a call and
    keep the whole loop scalar."""
    return numba.njit(inline="always", **OPTIONS)(fn)
