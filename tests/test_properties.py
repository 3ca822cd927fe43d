"""Hypothesis property tests: invariants that hold for any input."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import numbaloss

SETTINGS = settings(max_examples=60, deadline=None)
finite = st.floats(-30, 30, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def logits_and_targets(draw):
    n = draw(st.integers(1, 12))
    c = draw(st.integers(1, 9))
    x = draw(hnp.arrays(np.float64, (n, c), elements=finite))
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    eps = draw(st.sampled_from([0.0, 0.1, 0.5]))
    return x, y, eps


@SETTINGS
@given(logits_and_targets(), st.floats(-1e3, 1e3, allow_nan=False))
def test_cross_entropy_shift_invariant_nonnegative_and_grad_rows_sum_to_zero(case, shift):
    x, y, eps = case
    loss, grad = numbaloss.cross_entropy(x, y, label_smoothing=eps, reduction="none", return_grad=True)
    assert (loss >= 0).all()
    shifted = numbaloss.cross_entropy(x + shift, y, label_smoothing=eps, reduction="none")
    np.testing.assert_allclose(shifted, loss, rtol=1e-9, atol=1e-9 * (1 + abs(shift)))
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)


@SETTINGS
@given(logits_and_targets())
def test_sum_equals_mean_times_count(case):
    x, y, eps = case
    for fn, kw in ((numbaloss.cross_entropy, dict(label_smoothing=eps)), (numbaloss.nll_loss, {})):
        s = fn(x, y, reduction="sum", **kw)
        m = fn(x, y, reduction="mean", **kw)
        np.testing.assert_allclose(s, m * len(y), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(fn(x, y, reduction="none", **kw).sum(), s, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(0, 1)), st.data())
def test_binary_losses_nonnegative_and_consistent(p, data):
    t = data.draw(hnp.arrays(np.float64, p.shape, elements=st.floats(0, 1)))
    x = data.draw(hnp.arrays(np.float64, p.shape, elements=finite))
    for fn, inp in ((numbaloss.binary_cross_entropy, p), (numbaloss.binary_cross_entropy_with_logits, x)):
        per = fn(inp, t, reduction="none")
        assert (per >= -1e-12).all()
        np.testing.assert_allclose(fn(inp, t, reduction="sum"), fn(inp, t) * p.size, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(hnp.arrays(np.float64, st.integers(1, 40), elements=finite), st.data())
def test_bce_with_logits_equals_bce_of_sigmoid(x, data):
    x = np.clip(x, -15, 15)  # keep sigmoid(x) away from 0 and 1, where BCE clamps
    t = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(0, 1)))
    a = numbaloss.binary_cross_entropy_with_logits(x, t, reduction="none")
    b = numbaloss.binary_cross_entropy(1 / (1 + np.exp(-x)), t, reduction="none")
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
