"""Accuracy of the vectorizable exp / log / log1p in ulps, and their special values."""

import numpy as np
import pytest

from numbaloss import _math as M


FUNCS = {0: ("exp", np.exp), 1: ("log", np.log), 2: ("log1p", np.log1p), 3: ("exp_neg", np.exp)}


def _apply(kind, x, out):
    out[...] = M.evaluate(FUNCS[kind][0], x)


def _inputs(kind, dtype, rng):
    if dtype == np.float32:  # an even sweep of float32 bit patterns, all signs and exponents
        x = np.arange(0, 2**32, 1021, dtype=np.uint64).astype(np.uint32).view(np.float32)
        x = x[np.isfinite(x)]
    else:
        x = rng.standard_normal(400_000) * 300 if kind in (0, 3) else np.exp(rng.uniform(-700, 700, 400_000))
        x = np.concatenate([x, -rng.random(10_000), rng.standard_normal(10_000) * 1e-9])
    if kind == 3:
        x = -np.abs(x)
        x = x[x >= (-87.0 if dtype == np.float32 else -708.0)]  # below that exp_neg flushes to 0 by design
    return x


@pytest.mark.parametrize("dtype, max_ulp", [(np.float32, 2), (np.float64, 3)], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(FUNCS), ids=[v[0] for v in FUNCS.values()])
def test_ulp_error(kind, dtype, max_ulp):
    """float32 against float64 rounded to float32 (<= 2 ulp); float64 against libm (<= 1 ulp itself)."""
    x = _inputs(kind, dtype, np.random.default_rng(kind))
    out = np.empty_like(x)
    _apply(kind, x, out)
    with np.errstate(all="ignore"):
        want = FUNCS[kind][1](x.astype(np.float64)).astype(dtype)
    ok = np.isfinite(want)
    assert np.array_equal(np.isfinite(out), ok)
    assert M.ulp_distance(out[ok], want[ok]).max() <= max_ulp


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_special_values(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, tiny, -tiny, 1e30 if dtype == np.float32 else 1e300], dtype)
    for kind, (_, ref) in FUNCS.items():
        xs = x[x <= 0] if kind == 3 else x
        out = np.empty_like(xs)
        _apply(kind, xs, out)
        with np.errstate(all="ignore"):
            want = ref(xs.astype(np.float64)).astype(dtype)
        np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_exp_overflow_and_underflow(dtype):
    big = 89.0 if dtype == np.float32 else 710.0
    x = np.array([big, -big - 50, -1e4, 1e4], dtype)  # below the subnormals: exactly 0
    out = np.empty_like(x)
    _apply(0, x, out)
    np.testing.assert_array_equal(out, [np.inf, 0.0, 0.0, np.inf])
