"""Where the time of cross_entropy's few-class tile kernel goes, stage by stage.

A hand-written copy of the tile kernel's forward with class weights (1048576x10 float32, the
``cross_entropy fwd 1048576x10 weight`` workload of ``python -m numbaloss.bench``), each tile run
in parts of 64 samples (a constant width), cut off after each stage: the differences between
consecutive rows are the stages' costs.  The last row is the library's own kernel on the same
input (``tiles._ce_columns``, with the target pass's output), for comparison.

    python benchmarks/ce_tile_stages.py

Not a test and not part of the package: a measuring tool for #15 (see the README's performance
section for the figures it gave).
"""

import time

import numpy as np
from numba import njit, prange

from numbaloss.core import reduce
from numbaloss.core import vmath as vm
from numbaloss.core.jit import OPTIONS
from numbaloss.losses.classification import tiles
from numbaloss.losses.classification.formulas import class_row_loss
from numbaloss.losses.classification.targets import target_pass

TILE = 1024  # tiles._tile_size(10)
PART = 64
STAGES = ["read x", "+ transpose", "+ max", "+ target gathers", "+ exp and float64 sum", "+ loss (log of the float64 sum)",
          "+ pairwise sum"]


def make(stage):
    @njit(parallel=True, **dict(OPTIONS, cache=False))
    def kernel(x, y, w, part, losses):
        C = x.shape[1]
        w_total = 0.0
        for c in range(C):
            w_total += w[c]
        for b in prange(part.size):
            flat = x[b * TILE:(b + 1) * TILE].ravel()
            yy = y[b * TILE:(b + 1) * TILE]
            loss = losses[b * TILE:(b + 1) * TILE]
            xt = np.empty((C, PART), x.dtype)
            e1 = np.empty(PART, x.dtype)
            m = np.empty(PART, x.dtype)
            s = np.zeros(PART)
            gap = np.zeros(PART, x.dtype)
            wy = np.empty(PART)
            for u0 in range(0, TILE, PART):
                blk = flat[u0 * C:(u0 + PART) * C]
                if stage == 0:
                    for c in range(C):
                        for j in range(PART):
                            s[j] += blk[c * PART + j]
                    continue
                for i0 in range(0, PART, 8):
                    bb = blk[i0 * C:(i0 + 8) * C]
                    for c in range(C):
                        col = xt[c, i0:i0 + 8]
                        for j in range(8):
                            col[j] = bb[j * C + c]
                if stage == 1:
                    s[0] += xt[0, 0]
                    continue
                for t in range(PART):
                    m[t] = xt[0, t]
                for c in range(1, C):
                    np.maximum(m, xt[c], m)
                if stage == 2:
                    s[0] += m[0]
                    continue
                for t in range(PART):
                    k = max(yy[u0 + t], 0)
                    gap[t] = m[t] - xt[k, t]
                    wy[t] = w[k]
                if stage == 3:
                    s[0] += gap[0]
                    continue
                for t in range(PART):
                    s[t] = 0.0
                for c in range(C):
                    xc = xt[c]
                    for t in range(PART):
                        e1[t] = vm.exp_neg(xc[t] - m[t])
                    for t in range(PART):
                        s[t] += e1[t]
                if stage == 4:
                    continue
                for t in range(PART):
                    lt, q = class_row_loss(vm.log_ge1(s[t], x), gap[t], 0.0, wy[t], 0.0, 0.0, w_total)
                    loss[u0 + t] = lt if yy[u0 + t] >= 0 else 0.0
            if stage == 5:
                part[b] = s[0] + s[3]
                continue
            part[b] = reduce.tree_sum(loss, np.empty((TILE + 1) // 2))

    return kernel


def best_ms(f, rounds=20):
    b = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        b = min(b, time.perf_counter() - t)
    return b * 1e3


def _inputs(n, C=10):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, C)).astype(np.float32)
    y = rng.integers(0, C, n)
    w = (rng.random(C) + 0.5).astype(np.float32)
    return x, y, w


def _library(x, y, w):
    """The library's tile kernel on ``x``: returns ``(run, losses, partials)``."""
    n, C = x.shape
    cls, _, _ = target_pass(y, np.int64(0), False, C, w)
    out, grad, g, partials = np.empty(n, np.float32), np.empty((0, 0), np.float32), np.ones(1), np.empty(n // TILE)
    span = reduce.BLOCK // TILE
    checks = reduce.n_blocks(n // TILE, span)
    wsum, bad = np.empty(checks), np.empty(checks, np.int64)
    args = (x, cls, np.int64(-1), True, None, w, 0.0, g, 0, out, grad, partials, wsum, bad, TILE, span, 1)
    return (lambda: tiles._ce_columns(checks, *args, work=x.size)), out, partials


def check(n=1 << 12):
    """The hand-written copy, run whole, gives the library kernel's bits (losses and tile sums): the
    stages time the library's computation."""
    x, y, w = _inputs(n)
    part, losses = np.empty(n // TILE), np.empty(n)
    make(len(STAGES) - 1)(x, y, w, part, losses)
    run, out, partials = _library(x, y, w)
    run()
    assert np.array_equal(losses.astype(np.float32), out) and np.array_equal(part, partials)


def main(n=1 << 20, rounds=3):
    check()
    x, y, w = _inputs(n)
    nt = n // TILE
    runs = {}
    for i, name in enumerate(STAGES):
        k, part, losses = make(i), np.empty(nt), np.empty(n)
        runs[name] = lambda k=k, part=part, losses=losses: k(x, y, w, part, losses)
    runs["library kernel (tiles._ce_columns)"] = _library(x, y, w)[0]
    for f in runs.values():
        f()  # compile
    times = {name: [] for name in runs}
    for _ in range(rounds):  # alternating rounds: the machine is shared
        for name, f in runs.items():
            times[name].append(best_ms(f))
    print(f"| stage ({n}x10 float32, class weights, forward) | ms (best of {rounds} rounds) |\n|---|---:|")
    for name, ts in times.items():
        print(f"| {name} | {min(ts):.2f} |")


if __name__ == "__main__":
    main()
