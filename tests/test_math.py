"""Accuracy of the vectorizable exp / log / log1p in ulps, and their special values."""

import numpy as np
import pytest

from numbaloss.core import vmath as vm


FUNCS = {0: ("exp", np.exp), 1: ("log", np.log), 2: ("log1p", np.log1p), 3: ("exp_neg", np.exp),
         4: ("log1p_unit", np.log1p)}


def _apply(kind, x, out):
    out[...] = vm.evaluate(FUNCS[kind][0], x)


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
    if kind == 4:  # log1p_unit's domain, [0, 1]: every 1021st float32 there, or uniform float64
        x = x[(x >= 0) & (x <= 1)] if dtype == np.float32 else np.concatenate([rng.random(400_000), [0.0, 1.0]])
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
    assert vm.ulp_distance(out[ok], want[ok]).max() <= max_ulp


def test_log_of_a_softmax_sum_for_a_float32_result():
    """``log_ge1(x, float32)`` (cross-entropy's log of its float64 softmax sum, >= 1): relative error below 2**-35
    against libm densely where softmax sums lie ([1, 64], near 1 too) and over every positive normal float64
    (it is right there as well), so the float32 results are libm's rounded but at a rounding tie; NaN and
    +inf propagate."""
    rng = np.random.default_rng(5)
    x = np.concatenate([1 + rng.random(400_000) * 63, np.exp(rng.uniform(-708, 709.7, 400_000)),
                        1 + rng.random(20_000) * 2.0**-20, [1.0, 2.0, 0.5, np.finfo(np.float64).max, np.finfo(np.float64).tiny]])
    out = vm.evaluate("log_ge1_f32", x)
    want = np.log(x)
    nonzero = want != 0
    assert np.max(np.abs(out - want)[nonzero] / np.abs(want[nonzero])) < 2.0**-35
    assert np.all(out[~nonzero] == 0)
    assert np.mean(out.astype(np.float32) == want.astype(np.float32)) > 0.9999
    special = np.array([np.inf, np.nan])
    np.testing.assert_array_equal(vm.evaluate("log_ge1_f32", special), special)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_special_values(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, tiny, -tiny, 1e30 if dtype == np.float32 else 1e300], dtype)
    for kind, (_, ref) in FUNCS.items():
        xs = x[x <= 0] if kind == 3 else x
        xs = xs[np.isnan(xs) | ((xs >= 0) & (xs <= 1))] if kind == 4 else xs
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


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_order_keys_sort_like_floats(dtype):
    """order_key is monotonic over every non-NaN float (specials, subnormals, signed zeros) and
    from_order_key inverts it bit for bit; the row max built on it equals NumPy's."""
    from numba import njit

    from numbaloss.losses.classification.rows import _row_max

    @njit
    def keys(x, k):
        back = np.empty_like(x)
        for i in range(x.size):
            k[i] = vm.order_key(x[i])
            back[i] = vm.from_order_key(k[i])
        return k, back

    info = np.finfo(dtype)
    rng = np.random.default_rng(3)
    x = np.concatenate([
        np.array([-np.inf, np.inf, 0.0, -0.0, info.smallest_subnormal, -info.smallest_subnormal, info.max, -info.max, info.tiny, -info.tiny]),
        rng.standard_normal(2000) * 10.0 ** rng.integers(-30, 30, 2000),
    ]).astype(dtype)
    k, back = keys(x, np.empty(x.size, np.int32 if dtype == np.float32 else np.int64))
    assert back.tobytes() == x.tobytes()
    order = np.lexsort((~np.signbit(x), x))  # by value, -0.0 before 0.0
    ks, xs = k[order], x[order]
    assert np.all(ks[1:] >= ks[:-1])  # no np.diff: it would wrap around in int64
    same_float = (xs[1:] == xs[:-1]) & (np.signbit(xs[1:]) == np.signbit(xs[:-1]))
    assert np.array_equal(ks[1:] == ks[:-1], same_float)
    for row in (x, x[:1], x[x < 0], np.full(5, -np.inf, dtype), np.empty(0, dtype)):
        want = row.max() if row.size else -np.inf
        assert _row_max(row) == want
    with_nan = x.copy()
    with_nan[7] = np.nan
    assert np.isnan(_row_max(with_nan))  # a NaN (sign bit clear) comes out as the max: the row is NaN anyway


def test_reinterpret_is_a_bitcast():
    """vm.reinterpret reads a scalar's bits as another type of its width, compiled as in Python
    (NaN payloads and signed zeros included), and refuses a type of another width."""
    from numba import njit
    from numba.core.errors import TypingError

    @njit
    def round_trip(x, i):
        for j in range(x.size):
            i[j] = vm.reinterpret(x[j], np.int32)
            x[j] = vm.reinterpret(np.int32(i[j] + 1), np.float32)

    x = np.array([0.0, -0.0, 1.5, -np.inf, np.nan, 1e-45], np.float32)
    x[4] = np.int32(0x7FC00123).view(np.float32)  # a NaN with a payload
    i, y = np.empty(x.size, np.int32), x.copy()
    round_trip(y, i)
    assert i.tobytes() == x.tobytes() and (i + 1).tobytes() == y.tobytes()
    assert vm.reinterpret(np.float64(-0.0), np.int64) == np.int64(-(2**63))  # the Python body
    with pytest.raises(TypingError):
        njit(lambda v: vm.reinterpret(v, np.int32))(np.float64(1.0))
    with pytest.raises(TypingError):  # complex: not one value to bitcast
        njit(lambda v: vm.reinterpret(v, np.complex64))(np.int64(1))


def test_transpose8_moves_every_value_and_only_the_rows_asked_for():
    """simd.transpose8, compiled (vector shuffles; ``first`` a constant or known at run time only) and as
    Python, against NumPy: every ``first``, strides that are and are not multiples of 8, offsets inside
    the arrays, 1-d and 2-d arrays; the bits travel unchanged (NaN payloads, -0.0), skipped output rows
    and the values between rows stay as they were, and an out-of-range ``first`` writes nothing."""
    from numba import njit
    from numba.core.errors import TypingError
    from numbaloss.core import simd

    @njit
    def constant(src, s, ss, dst, d, ds, first):  # `first` as the literal each call site passes
        if first == 0:
            simd.transpose8(src, s, ss, dst, d, ds, 0)
        elif first == 3:
            simd.transpose8(src, s, ss, dst, d, ds, 3)
        elif first == 6:
            simd.transpose8(src, s, ss, dst, d, ds, 6)
        else:
            simd.transpose8(src, s, ss, dst, d, ds, 7)

    @njit
    def run_time(src, s, ss, dst, d, ds, first):
        simd.transpose8(src, s, ss, dst, d, ds, first)

    rng = np.random.default_rng(0)
    for ss, ds, s, d in ((8, 8, 0, 0), (10, 1040, 3, 17), (13, 9, 5, 1), (64, 24, 0, 2)):
        src = rng.standard_normal(s + 7 * ss + 8 + 5).astype(np.float32)
        src[s + ss + 2] = np.int32(0x7FC00123).view(np.float32)
        src[s + 2 * ss + 7] = -0.0
        block = np.lib.stride_tricks.as_strided(src[s:], (8, 8), (4 * ss, 4))
        for first in range(-1, 9):
            dst = np.full(d + 7 * ds + 8 + 3, 7.0, np.float32)
            want = dst.copy()
            if 0 <= first < 8:
                np.lib.stride_tricks.as_strided(want[d:], (8, 8), (4 * ds, 4))[first:] = block.T[first:]
            runs = [dst.copy() for _ in range(3)]
            run_time(src, s, ss, runs[0].reshape(1, -1) if first % 2 else runs[0], d, ds, first)  # any C-contiguous shape
            simd.transpose8(src, s, ss, runs[1], d, ds, first)  # the Python body
            if first in (0, 3, 6, 7):
                constant(src, s, ss, runs[2], d, ds, first)
            else:
                runs[2] = want
            assert all(r.tobytes() == want.tobytes() for r in runs), first
    untouched = dst.copy()
    njit(lambda a, b: simd.transpose8(a, 0, 8, b, 0, 8, 8))(src, untouched)  # a constant out of range, too
    assert untouched.tobytes() == dst.tobytes()
    with pytest.raises(TypingError):  # float32 only
        njit(lambda a, b: simd.transpose8(a, 0, 8, b, 0, 8, 0))(src.astype(np.float64), dst.astype(np.float64))
