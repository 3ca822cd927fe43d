"""Deterministic reductions on the GPU: warp and block sums, online (max, sum exp) merges, partial sums.

Imported only when a CUDA array arrives.  No floating-point atomics: every sum is
a fixed order per block (warp shuffle butterflies, then the warps' sums through
shared memory in warp order), then one block sums the per-block partials in a
fixed order (:func:`sum_partials`).
"""

import math

from numba import config, cuda, float64

#: Threads per block of every kernel (a power of two: the tree reductions halve it).
#: Numba's simulator runs every thread as a Python thread, so it gets small blocks
#: (two warps: enough to exercise the cross-warp step of the reductions).
TPB = 64 if config.ENABLE_CUDASIM else 256
#: Elements per block of the elementwise kernels and the target pass.
CHUNK = TPB * 16


def grid_blocks(n, per_block):
    """Blocks that cover ``n`` items at ``per_block`` each (at least one)."""
    return max(1, -(-n // per_block))


# ------------------------------------------------------------------ reductions
WARP = 32

if config.ENABLE_CUDASIM:
    # The simulator has no warp shuffles: exchange through shared memory instead,
    # so the reduction code around the shuffle (lanes, order, broadcast) is what runs.
    @cuda.jit(device=True)
    def _shfl_xor(v, d, scratch, tid):
        cuda.syncthreads()
        scratch[tid] = v
        cuda.syncthreads()
        return scratch[tid ^ d]

else:

    @cuda.jit(device=True)
    def _shfl_xor(v, d, scratch, tid):
        return cuda.shfl_xor_sync(0xFFFFFFFF, v, d)


@cuda.jit(device=True)
def group_sum(v, sm, tid, G):
    """Sum of ``v`` over the ``G`` threads of a group (``G`` = 32 or ``TPB``), returned to every thread.

    A warp butterfly (``shfl_xor``) first: both partners add the same two
    numbers, and float addition commutes, so every lane holds bitwise the same
    sum.  For a whole block, each warp's sum then goes through shared memory and
    every thread adds them in warp order.  Fixed order, no atomics: deterministic.
    ``sm`` is a ``float64`` shared array of ``TPB``; every thread of the block
    must call this (the shuffles and barriers are collective).
    """
    v = float64(v)
    d = WARP // 2
    while d > 0:
        v += _shfl_xor(v, d, sm, tid)
        d //= 2
    if G > WARP:
        cuda.syncthreads()
        if tid % WARP == 0:
            sm[tid // WARP] = v
        cuda.syncthreads()
        v = 0.0
        for k in range(G // WARP):
            v += sm[k]
        cuda.syncthreads()
    return v


@cuda.jit(device=True)
def nan_max(a, b):
    """``max(a, b)``, NaN if either is: commutative and associative, so any order gives the same result."""
    return b if (b > a or b != b) else a


@cuda.jit(device=True)
def group_max(v, sm, tid, G):
    """Max of ``v`` over the ``G`` threads of a group, NaN propagating, returned to every thread
    (:func:`group_sum`'s butterfly and warp order; a max does not depend on the order at all)."""
    v = float64(v)
    d = WARP // 2
    while d > 0:
        v = nan_max(v, _shfl_xor(v, d, sm, tid))
        d //= 2
    if G > WARP:
        cuda.syncthreads()
        if tid % WARP == 0:
            sm[tid // WARP] = v
        cuda.syncthreads()
        v = sm[0]
        for k in range(1, G // WARP):
            v = nan_max(v, sm[k])
        cuda.syncthreads()
    return v


@cuda.jit(device=True)
def merge_max_exp(m1, s1, m2, s2):
    """Merge two online ``(max, sum exp(x - max))`` pairs; a -inf max adds nothing, NaN sums stay NaN.

    Symmetric in its two pairs, so butterfly partners get the same bits.
    """
    m = m1 if m1 > m2 else m2
    if m == -math.inf:
        return m, s1 + s2
    a = s1 * math.exp(m1 - m) if m1 != -math.inf else s1 * 0.0
    b = s2 * math.exp(m2 - m) if m2 != -math.inf else s2 * 0.0
    return m, a + b


@cuda.jit(device=True)
def group_max_exp(m, s, sm_m, sm_s, tid, G):
    """:func:`group_sum` for online ``(max, sum of exp)`` pairs, merged with :func:`merge_max_exp`."""
    m = float64(m)
    s = float64(s)
    d = WARP // 2
    while d > 0:
        m2 = _shfl_xor(m, d, sm_m, tid)
        s2 = _shfl_xor(s, d, sm_s, tid)
        m, s = merge_max_exp(m, s, m2, s2)
        d //= 2
    if G > WARP:
        cuda.syncthreads()
        if tid % WARP == 0:
            sm_m[tid // WARP] = m
            sm_s[tid // WARP] = s
        cuda.syncthreads()
        m = sm_m[0]
        s = sm_s[0]
        for k in range(1, G // WARP):
            m, s = merge_max_exp(m, s, sm_m[k], sm_s[k])
        cuda.syncthreads()
    return m, s


@cuda.jit(device=True)
def chunk_bounds(n):
    """``(lo, hi)``: the ``CHUNK`` elements of ``n`` that this block owns (threads stride inside)."""
    lo = cuda.blockIdx.x * CHUNK
    return lo, min(lo + CHUNK, n)


@cuda.jit(device=True)
def store_block_sum(acc, sm, tid, part):
    """``part[block] = `` the block's sum of ``acc`` (:func:`group_sum`); every thread must call it."""
    total = group_sum(acc, sm, tid, TPB)
    if tid == 0:
        part[cuda.blockIdx.x] = total


@cuda.jit
def block_partials(values, part):
    """Per-block sums of ``values`` over fixed chunks (the first pass of a deterministic sum)."""
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    lo, hi = chunk_bounds(values.size)
    acc = 0.0
    for i in range(lo + tid, hi, TPB):
        acc += values[i]
    store_block_sum(acc, sm, tid, part)


@cuda.jit(device=True)
def denominator(denom, denom0):
    """The mean's denominator: computed on the device (``denom[0]``), or known on the host
    (``denom0``, with ``denom`` empty), which then costs no copy."""
    return denom[0] if denom.size > 0 else denom0


@cuda.jit(device=True)
def row_scale(gscale, g0, r, n_rows, is_mean):
    """Row ``r``'s gradient scale in a row kernel: ``gscale[r]`` (an array ``grad_output``) or the
    uniform ``g0``, divided by the ``n_rows`` for ``"mean"``."""
    g = gscale[r] if gscale.size > 0 else g0
    return g / n_rows if is_mean else g


@cuda.jit
def sum_partials_kernel(part, dpart, denom0, is_mean, result):
    """One block: ``result[0] = sum(part)``, divided for ``is_mean`` by ``sum(dpart)`` (``denom0`` when
    ``dpart`` is empty).  Fixed order: a one-element ``dpart`` is its own sum, and per-block weight
    partials sum exactly as a separate pass over them would."""
    sm = cuda.shared.array(TPB, float64)
    tid = cuda.threadIdx.x
    acc = 0.0
    for i in range(tid, part.size, TPB):
        acc += part[i]
    dacc = 0.0
    for i in range(tid, dpart.size, TPB):
        dacc += dpart[i]
    total = group_sum(acc, sm, tid, TPB)
    dsum = group_sum(dacc, sm, tid, TPB)
    if tid == 0:
        if is_mean:
            d = dsum if dpart.size > 0 else denom0
            total = total / d if d != 0.0 else (math.nan if total == 0.0 else total / d)
        result[0] = total


def sum_partials(call, part, denom, is_mean, dtype):
    """The loss as a 0-d device array of ``dtype`` (the call's family): partials combined on the device.

    ``denom``: ``(device partials, host float)``: the mean divides by the partials' sum (the host
    float when there are none).
    """
    result = call.empty(1, dtype)
    call.launch(sum_partials_kernel, 1, part, denom[0], denom[1], is_mean, result)
    return call.result(result.reshape(()))
