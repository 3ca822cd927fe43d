"""Shared test configuration: tolerances (declared once), the loss registry, torch helpers."""

import os
import sys

# Numba reads this at import: without a real GPU, the CUDA tests run on Numba's simulator.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not os.path.exists("/proc/driver/nvidia/version"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    # The simulator runs each CUDA thread as a Python thread while the launching thread polls them in
    # a loop that holds the GIL; at Python's default switch interval (5 ms) the threads mostly wait
    # for it.  0.2 ms made the simulated kernels 3-4x faster here (88 s -> 23 s for 24 tests).
    sys.setswitchinterval(2e-4)
    # ...which exposes a race in the simulator's cuda.shared.array (numba-cuda 0.x): it finds a block's
    # array by a dict get-then-set keyed by the caller's line, after a slow traceback.extract_stack, so
    # two threads switched between the get and the set each make their own array and never see each
    # other's writes (CI saw a block sum lose a thread's share: a mean divided by 4 instead of 5).
    # The replacement keys by the same (file, line), read from the frame, and sets atomically.
    from numba.cuda.simulator import kernelapi as _kernelapi

    def _shared_array(self, shape, dtype, alignment=None, _original=_kernelapi.FakeCUDAShared.array):
        if shape == 0 or alignment is not None:
            return _original(self, shape, dtype, alignment)
        if isinstance(dtype, _kernelapi.types.Type):
            dtype = _kernelapi.numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        key = (caller.f_code.co_filename, caller.f_lineno)
        found = self._allocations.get(key)
        return found if found is not None else self._allocations.setdefault(key, _kernelapi.np.empty(shape, dtype))

    _kernelapi.FakeCUDAShared.array = _shared_array

import numpy as np
import pytest

import numbaloss
from tests import cases, reference

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - CI always installs torch
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed (pip install torch==2.13.0)")

#: Tolerances, declared once per dtype.  ``atol`` is relative to the largest
#: magnitude in the expected array, so tiny gradient entries are compared on the
#: scale of the whole gradient.
TOL = {
    np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}

#: The test table: one row of facts per loss (its float64 reference and its case maker in
#: tests/cases.py).  A registered loss without a row fails tests/test_registry.py.
FACTS = {
    "cross_entropy": (reference.cross_entropy, cases.class_case),
    "nll_loss": (reference.nll_loss, cases.class_case),
    "binary_cross_entropy": (reference.binary_cross_entropy, cases.binary_case),
    "binary_cross_entropy_with_logits": (reference.binary_cross_entropy_with_logits, cases.binary_case),
    **{name: (getattr(reference, name), cases.elementwise_case) for name in cases.ELEMENTWISE},
    **{name: (getattr(reference, name), cases.row_case) for name in cases.ROWS},
    "ctc_loss": (reference.ctc_loss, None),  # four data arrays: its own test module, tests/test_ctc.py
}

#: name -> (numbaloss function, reference function, torch function name), from the registry.
LOSSES = {name: (spec.fn, FACTS[name][0], name) for name, spec in numbaloss.REGISTRY.items()
          if name in FACTS and FACTS[name][1] is not None}


def central_differences(objective, at, h=1e-6):
    """``d objective / d at``, entry by entry, by central differences (``objective`` of one array)."""
    fd = np.empty_like(at)
    for idx in np.ndindex(at.shape):
        up, down = at.copy(), at.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (objective(up) - objective(down)) / (2 * h)
    return fd


def assert_close(actual, expected, dtype, scale=None):
    """Compare with the dtype's tolerance; NaN must match NaN and inf must match inf.  Tuples (the
    gradients of a loss with several) are compared entry by entry; None must match None."""
    if isinstance(expected, tuple) or isinstance(actual, tuple):
        assert isinstance(actual, tuple) and isinstance(expected, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert (a is None) == (e is None), (a, e)
            if e is not None:
                assert_close(a, e, dtype, scale)
        return
    tol = TOL[np.dtype(dtype)]
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    finite = np.isfinite(expected)
    if scale is None:
        scale = np.abs(expected[finite]).max() if finite.any() else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1e-30), equal_nan=True)


def run_torch(name, x, target, kwargs, grad_output=None):
    """torch's loss and gradient of ``sum(grad_output * loss)`` for NumPy inputs: one gradient, or a
    tuple for a loss with several (``x`` and ``target`` are the first two data arrays; a third one
    travels in ``kwargs`` by name, as for numbaloss; a Python float gets no gradient, None)."""
    spec = numbaloss.REGISTRY[name]
    wanted = set(spec.grads)

    def tensor(name_, v):
        v = np.asarray(v)
        if v.dtype.kind in "iu":
            return torch.from_numpy(v.astype(np.int64))
        return torch.tensor(v.astype(x.dtype), requires_grad=name_ in wanted)

    xt = tensor(spec.arrays[0], x)
    tt = tensor(spec.arrays[1], target)
    kw = {k: (torch.tensor(np.asarray(v, x.dtype)) if k in ("weight", "pos_weight") and v is not None else v)
          for k, v in kwargs.items()}
    for k in spec.arrays[2:]:
        if k in kw and not isinstance(kw[k], float):
            kw[k] = tensor(k, kw[k])
    if kw.get("distance_function") is not None:  # a Numba (distance, gradient) pair: its torch twin
        kw["distance_function"] = cases.TORCH_DISTANCES[kw["distance_function"][0]]
    loss = getattr(F, name)(xt, tt, **kw)
    go = torch.ones_like(loss) if grad_output is None else torch.as_tensor(np.asarray(grad_output, x.dtype)).expand_as(loss)
    loss.backward(go)
    grads = tuple(a.grad.numpy() if isinstance(a, torch.Tensor) else None for a in grad_args(name, xt, tt, kw))
    return loss.detach().numpy(), (grads[0] if len(grads) == 1 else grads)


def grad_args(name, x, t, kwargs):
    """The arrays (or Python floats) whose gradients a loss returns, in order (x and t: the first two
    data arrays, the others in ``kwargs`` by name)."""
    spec = numbaloss.REGISTRY[name]
    by_name = dict(zip(spec.arrays, [x, t] + [kwargs.get(k) for k in spec.arrays[2:]]))
    return [by_name[g] for g in spec.grads]


def torch_error_scale(name, x, kwargs, grad_output=None, second=None, ours=False):
    """Magnitudes on which torch's own float rounding lives, as ``(loss_scale, grad_scale)``.

    torch computes BCE-with-logits as ``(1 - t) x - l_p log_sigmoid(x)``, two
    terms of size ``|x|`` that cancel: its loss is only good to ``ulp(|x|)`` and
    its gradient ``(p t + 1 - t) sigmoid(x) - p t`` to ``ulp(1 + p)``.  numbaloss
    avoids both cancellations (the float64 reference checks that), so against
    torch the tolerance is taken relative to those magnitudes.  cosine_embedding_loss's
    gradient (``second``: its input2) is a difference that cancels for (anti)parallel rows in
    every implementation, numbaloss's float32 one too: with ``ours`` only such scales are given.  ``None``: the
    default (the largest expected value).
    """
    if name == "cosine_embedding_loss":
        # torch's gradient c (x2 / den - cos x1 / m1) subtracts two terms that cancel when the rows
        # are (anti)parallel: its rounding lives on the terms' size, not the difference's
        a, b = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(second, np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            m1, m2 = (a * a).sum(-1, keepdims=True) + 1e-12, (b * b).sum(-1, keepdims=True) + 1e-12
            terms = np.abs(b) / np.sqrt(m1 * m2) + np.abs(a) / m1 + np.abs(a) / np.sqrt(m1 * m2) + np.abs(b) / m2
        g = np.abs(np.asarray(1.0 if grad_output is None else grad_output, np.float64)).max(initial=1.0)
        rows = max(a.shape[0] if a.ndim > 1 else 1, 1)
        n = rows if kwargs.get("reduction", "mean") == "mean" else 1
        # torch's float32 1 - cos rounds on the scale of 1 per row (numbaloss's is float64)
        loss_scale = None if ours else float(rows if kwargs.get("reduction", "mean") == "sum" else 1)
        return loss_scale, float(terms[np.isfinite(terms)].max(initial=1.0) * g / n)
    if name != "binary_cross_entropy_with_logits" or ours:
        return None, None
    w = np.abs(np.asarray(kwargs.get("weight", 1.0), np.float64)).max(initial=1.0)
    pw = np.abs(np.asarray(kwargs.get("pos_weight", 1.0), np.float64)).max(initial=1.0)
    g = np.abs(np.asarray(1.0 if grad_output is None else grad_output, np.float64)).max(initial=1.0)
    n = max(np.size(x), 1) if kwargs.get("reduction", "mean") == "mean" else 1
    ax = np.abs(x[np.isfinite(x)]).max(initial=1.0)
    return float(ax * w * (1 + pw) * max(n, 1)), float(w * (1 + pw) * g)


#: The test files that take longest (most of it Numba and NVVM compiles), longest first.  pytest-xdist
#: hands files to its two workers in collection order, so collecting these first spreads them over
#: both workers instead of leaving one of them alone with a two-minute file at the end.
LONGEST_FIRST = ("tests/test_cuda_compile.py", "tests/test_determinism.py", "tests/test_parity.py", "tests/test_cuda.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order inside each file is kept
