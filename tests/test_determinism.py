"""Bitwise-identical results for any thread count and from run to run."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.cases import DTYPES, all_cases, make
from tests.conftest import LOSSES

SCRIPT = r"""
import sys, numpy as np, numbaloss
rng = np.random.default_rng(0)
x = rng.standard_normal((3000, 257)).astype(np.float32)
y = rng.integers(0, 257, 3000); y[::7] = -100
w = rng.uniform(0.5, 2, 257).astype(np.float32)
p = rng.standard_normal(300_001).astype(np.float32)
t = (rng.random(300_001) < 0.3).astype(np.float32)
out = []
for kw in ({}, {"weight": w, "label_smoothing": 0.1}):
    loss, grad = numbaloss.cross_entropy(x, y, return_grad=True, **kw)
    out += [np.asarray(loss).tobytes(), grad.tobytes()]
xs = rng.standard_normal((100_000, 10)).astype(np.float32)  # few classes: the class-major tile path
ys = rng.integers(0, 10, 100_000)
ps = rng.random((100_000, 10)).astype(np.float32)
for target, kw in ((ys, {"weight": w[:10]}), (ps / ps.sum(1, keepdims=True), {"label_smoothing": 0.1})):
    loss, grad = numbaloss.cross_entropy(xs, target, return_grad=True, **kw)
    out += [np.asarray(loss).tobytes(), grad.tobytes()]
out.append(np.asarray(numbaloss.nll_loss(x, y, reduction="sum")).tobytes())
out.append(np.asarray(numbaloss.binary_cross_entropy_with_logits(p, t)).tobytes())
out.append(np.asarray(numbaloss.binary_cross_entropy(1 / (1 + np.exp(-p)), t, reduction="sum")).tobytes())
# a data param with its own gradient, broadcast (one variance per row: summed back to (1000,))
g = rng.standard_normal((1000, 301)).astype(np.float32)
loss, (gx, gv) = numbaloss.gaussian_nll_loss(g, g[::-1], rng.uniform(0.1, 2, 1000).astype(np.float32), return_grad=True)
out += [np.asarray(loss).tobytes(), gx.tobytes(), gv.tobytes()]
# the row losses: blocks of whole rows (several, in parallel), float64 row sums
yc = rng.integers(0, 257, 3000)
lab = (rng.random(x.shape) < 0.3).astype(np.float32)
pair = np.sign(rng.standard_normal(3000)).astype(np.float32)
for loss, grads in (numbaloss.multilabel_soft_margin_loss(x, lab, weight=w, return_grad=True),
                    numbaloss.cosine_embedding_loss(x, x[::-1], pair, margin=0.1, return_grad=True),
                    numbaloss.multi_margin_loss(x, yc, p=2, weight=w, return_grad=True),
                    numbaloss.multilabel_margin_loss(x, np.where(np.arange(257) < 5, yc[:, None], -1), return_grad=True),
                    numbaloss.triplet_margin_loss(x, x[::-1], x[::3].repeat(3, 0)[:3000], p=1.5, swap=True, return_grad=True)):
    out += [np.asarray(loss).tobytes()] + [g.tobytes() for g in (grads if isinstance(grads, tuple) else (grads,))]
# ctc_loss: one sample per parallel task (ragged lengths, dynamically scheduled)
lpc = rng.standard_normal((60, 24, 12)).astype(np.float32)
lpc = lpc - np.log(np.exp(lpc).sum(-1, keepdims=True))
loss, gc = numbaloss.ctc_loss(lpc, rng.integers(1, 12, (24, 15)), rng.integers(31, 61, 24), rng.integers(1, 16, 24),
                              reduction="sum", return_grad=True)
out += [np.asarray(loss).tobytes(), gc.tobytes()]
import hashlib
print(hashlib.sha256(b"".join(out)).hexdigest())
"""


def _digest(threads, cache_dir):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), NUMBA_CACHE_DIR=str(cache_dir))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_bitwise_identical_for_any_thread_count(tmp_path):
    # the first process compiles into an empty cache; the others load that cache
    digests = {threads: _digest(threads, tmp_path) for threads in (2, 1, 3)}
    assert len(set(digests.values())) == 1, digests
    assert _digest(2, tmp_path) == digests[2]  # and from run to run


def test_serial_and_parallel_kernels_agree_bitwise(monkeypatch):
    """Small inputs take serial kernels (and a fused small path); forcing the parallel ones changes no bit."""
    import numbaloss

    rng = np.random.default_rng(0)
    cases = [
        ("cross_entropy", rng.standard_normal((300, 7)).astype(np.float32), rng.integers(0, 7, 300), {"label_smoothing": 0.1}),
        ("cross_entropy", rng.standard_normal((20, 300)), rng.integers(0, 300, 20), {"weight": rng.random(300)}),
        ("cross_entropy", rng.standard_normal((300, 7)).astype(np.float32), rng.random((300, 7)).astype(np.float32), {"weight": rng.random(7)}),
        ("nll_loss", rng.standard_normal((300, 7)), rng.integers(0, 7, 300), {}),
        ("binary_cross_entropy_with_logits", rng.standard_normal(5000).astype(np.float32), rng.random(5000).astype(np.float32), {}),
        ("multilabel_soft_margin_loss", rng.standard_normal((300, 70)), (rng.random((300, 70)) < 0.3) * 1.0, {}),
        ("multi_margin_loss", rng.standard_normal((300, 70)).astype(np.float32), rng.integers(0, 70, 300), {"p": 2}),
    ]
    for name, x, t, kw in cases:
        serial, parallel = _serial_and_parallel(monkeypatch, getattr(numbaloss, name), x, t, kw)
        assert serial == parallel, name


def test_default_cross_entropy_matches_the_tile_path(monkeypatch):
    """A few-class cross_entropy with the default options runs its own kernel (``_ce_plain``, quick
    to compile), serially on a small input and as a parallel kernel on a large
    one; both give the bits of the general tile path, which unit class weights force (they change no
    operation's result): random shapes (several tiles), both dtypes, NaN and +-inf logits, ignored
    targets (all of them too), another ignore_index, every reduction and a grad_output array."""
    import numbaloss
    from numbaloss.core import jit

    rng = np.random.default_rng(1)
    random_shapes = [(int(rng.integers(1, 16383 // C)), C) for C in rng.integers(1, 65, 40)]
    several_tiles = [(8000, 2), (1600, 10), (1090, 15), (2049, 7)]  # tiles of 1024 rows (reduce.ROW_WORK // C)
    for trial, (N, C) in enumerate(random_shapes + several_tiles):
        x = (rng.standard_normal((N, C)) * rng.choice([1, 10, 100])).astype(DTYPES[trial % 2])
        for value, every in ((np.nan, 5), (-np.inf, 7), (np.inf, 11)):
            if trial % every == 0:
                x[rng.integers(0, N), rng.integers(0, C)] = value
        if trial % 13 == 0:
            x[rng.integers(0, N)] = -np.inf
        ignore = int(rng.integers(0, C)) if trial % 4 == 0 else -100
        y = rng.integers(0, C, N)
        y[rng.random(N) < (1.0 if trial % 9 == 0 else 0.3)] = ignore
        for reduction, go in (("mean", None), ("sum", None), ("none", None), ("none", rng.standard_normal(N))):
            runs = []
            # the small (serial) plain kernel, the parallel one, then the tile path
            for threshold, weight in ((1 << 62, None), (0, None), (0, np.ones(C, x.dtype))):
                monkeypatch.setattr(jit, "PARALLEL_MIN_WORK", threshold)
                loss, grad = numbaloss.cross_entropy(x, y, weight=weight, ignore_index=ignore, reduction=reduction,
                                                     return_grad=True, grad_output=go)
                runs.append((np.asarray(loss).tobytes(), grad.tobytes()))
            assert runs[0] == runs[1] == runs[2], (trial, N, C, x.dtype, reduction, go is not None)
    monkeypatch.undo()


def test_few_class_forward_matches_the_gradient_path(monkeypatch):
    """A large few-class cross_entropy with a weight or smoothing whose gradient scale does not wait for
    the mean's count (a forward, or sum/none) validates and counts its targets inside the tile kernel
    (``_ce_columns``, blocks of four 1024-row tiles, one target-pass block each); with the mean's
    gradient the target pass runs first.  Either way, and on the small serial path, the loss has the
    same bits: ragged shapes, both dtypes, NaN and -inf logits, ignored targets, every reduction."""
    import numbaloss
    from numbaloss.core import jit

    rng = np.random.default_rng(2)
    shapes = [(5000, 10), (4096, 4), (4097, 7), (1638, 11), (9000, 2), (2000, 64)]
    for trial, (N, C) in enumerate(shapes):
        x = rng.standard_normal((N, C)).astype(DTYPES[trial % 2])
        x[rng.integers(0, N), rng.integers(0, C)] = np.nan
        x[rng.integers(0, N)] = -np.inf
        y = rng.integers(0, C, N)
        y[rng.random(N) < 0.2] = -100
        for kw in ({"weight": rng.uniform(0.1, 3, C).astype(x.dtype)}, {"label_smoothing": 0.15},
                   {"weight": rng.uniform(0.1, 3, C).astype(x.dtype), "label_smoothing": 0.05}):
            for reduction in ("mean", "sum", "none"):
                runs = []
                for threshold, return_grad in ((1 << 62, False), (0, False), (0, True)):  # small, fused, target pass first
                    monkeypatch.setattr(jit, "PARALLEL_MIN_WORK", threshold)
                    out = numbaloss.cross_entropy(x, y, reduction=reduction, return_grad=return_grad, **kw)
                    runs.append(np.asarray(out[0] if return_grad else out).tobytes())
                assert runs[0] == runs[1] == runs[2], (trial, N, C, x.dtype, reduction, list(kw))
    monkeypatch.undo()


def _serial_and_parallel(monkeypatch, fn, x, t, kwargs):
    """The bytes of ``fn``'s loss and gradients, mean and none, from its serial kernels and from its
    parallel ones (chosen through the work threshold)."""
    from numbaloss.core import jit

    runs = []
    for threshold in (1 << 62, 0):  # serial, then parallel
        monkeypatch.setattr(jit, "PARALLEL_MIN_WORK", threshold)
        run = []
        for reduction in ("mean", "none"):
            loss, grad = fn(x, t, reduction=reduction, return_grad=True, **kwargs)
            run += [np.asarray(loss).tobytes()] + [None if g is None else g.tobytes()
                                                   for g in (grad if isinstance(grad, tuple) else (grad,))]
        runs.append(run)
    monkeypatch.undo()
    return runs


#: Each loss's first parity case: its largest shape (above the parallel threshold) and first option.
LARGE = {name: next(c for c in all_cases() if c[0] == name) for name in LOSSES}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_parallel_kernel_matches_its_serial_kernel(name, monkeypatch):
    """Bitwise, values and gradients, mean and none.  tests/test_parity.py checks the serial kernels
    against torch and the references (at every shape and option): this carries those checks over
    to the parallel kernels, which run the same compiled block function inside a ``prange``."""
    _, shape, option, _ = LARGE[name]
    dtype = DTYPES[sorted(LOSSES).index(name) % 2]
    (x, t, kwargs), _ = make(name, shape, dtype, option)
    serial, parallel = _serial_and_parallel(monkeypatch, LOSSES[name][0], x, t, kwargs)
    assert serial == parallel
