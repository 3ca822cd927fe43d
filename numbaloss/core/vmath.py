r"""Branch-free, vectorizable ``exp``, ``log`` and ``log1p`` for float32 and float64.

Why: the llvmlite wheels ship without SVML, so ``np.exp``/``np.log`` inside a
Numba loop stay scalar libm calls and cross-entropy runs far below memory speed.
These versions are straight-line arithmetic plus bit manipulation (``.view``),
so LLVM vectorizes the loops that call them.

Each is a Cephes-style algorithm: Cody-Waite range reduction, a minimax
polynomial (float32) or rational approximation (float64), and the exponent
rebuilt from bits.  Special values are exact: ``exp(-inf) = 0``,
``exp(inf) = inf``, overflow to ``inf``, gradual underflow through the
subnormals, ``log(0) = -inf``, ``log(x < 0) = nan``, ``log(inf) = inf``, and NaN
propagates.  Measured accuracy (``tests/test_math.py`` asserts it, ``python -m
numbaloss.bench --ulp`` prints it): see the README.

Use :func:`exp`, :func:`log`, :func:`log1p` (and :func:`log1p_unit`, :func:`exp_neg` on their
restricted domains); they dispatch on the argument's
dtype (float32 arithmetic stays float32, so it vectorizes twice as wide).
"""

import numpy as np
from numba import prange
from numba.core import types
from numba.extending import lower_builtin, type_callable

from .jit import kernel, overload, scalar


def reinterpret(x, dtype):
    """The bits of the integer or float scalar ``x`` read as ``dtype``, an integer or float type of the
    same width (``x.view(dtype)``); any other pair is a typing error.

    Compiled, it is one LLVM ``bitcast`` typed and lowered in place: Numba's own scalar ``.view`` is
    an overload that compiles a function per pair of types (about 0.025 s of a cold first call each)."""
    return x.view(dtype)


@type_callable(reinterpret)
def _reinterpret_type(context):
    def typer(x, dtype):
        # integers and floats only: a complex number is a pair in LLVM, not one value to bitcast
        real = (types.Integer, types.Float)
        if (isinstance(x, real) and isinstance(dtype, types.NumberClass) and isinstance(dtype.instance_type, real)
                and x.bitwidth == dtype.instance_type.bitwidth):
            return dtype.instance_type
        return None

    return typer


@lower_builtin(reinterpret, types.Number, types.NumberClass)
def _reinterpret_lower(context, builder, sig, args):
    return builder.bitcast(args[0], context.get_value_type(sig.return_type))


_LOG2E = 1.4426950408889634
# ln 2 split so that n * _LN2_HI is exact for |n| < 2**11 (Cody-Waite).
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440e-4


# ----------------------------------------------------------------- float32
@scalar
def _pow2_f32(n):
    """``2**n`` for int32 ``n`` in [-252, 254], as the product of two normal powers (keeps subnormals)."""
    h = n >> np.int32(1)
    a = reinterpret(np.int32((h + np.int32(127)) << np.int32(23)), np.float32)
    b = reinterpret(np.int32((n - h + np.int32(127)) << np.int32(23)), np.float32)
    return a, b


@scalar
def _exp_reduce_f32(x):
    """``(n, p)`` with ``e**x = p * 2**n``: Cody-Waite reduction, then Cephes' polynomial
    ``1 + r + r**2 P(r)``, ``P`` of degree 5 evaluated in Estrin's scheme: its three pairs are
    independent, so the chain of dependent roundings is 3 operations long instead of Horner's 5.
    The vectorized loop is bound by that chain's latency (the scheduler cannot keep enough
    iterations in flight): 12-17% faster, at the same accuracy (at most 1 ulp, and correctly
    rounded for about 99.2% of float32 inputs either way)."""
    n = np.floor(x * np.float32(_LOG2E) + np.float32(0.5))
    r = x - n * np.float32(_LN2_HI)
    r = r - n * np.float32(_LN2_LO)
    r2 = r * r
    a = np.float32(1.9875691500e-4) * r + np.float32(1.3981999507e-3)
    b = np.float32(8.3334519073e-3) * r + np.float32(4.1665795894e-2)
    c = np.float32(1.6666665459e-1) * r + np.float32(5.0000001201e-1)
    p = (a * r2 + b) * r2 + c
    p = p * r2 + r + np.float32(1.0)
    return n, p


@scalar
def exp_f32(x):
    """``e**x`` for float32 ``x``; at most 1 ulp from the correctly rounded result on normal outputs."""
    # out-of-range x make n's int conversion meaningless; the selects at the end replace those lanes
    n, p = _exp_reduce_f32(x)
    a, b = _pow2_f32(np.int32(n))
    y = p * a * b
    y = np.float32(np.inf) if x > np.float32(88.72283935546875) else y
    y = np.float32(0.0) if x < np.float32(-103.97208) else y
    return y  # NaN: p is NaN, and neither select fires


@scalar
def _log_reduced_f32(f, fe):
    """``log((1 + f) 2**fe)`` for a reduced ``f`` in [sqrt(1/2) - 1, sqrt 2 - 1]: Cephes' degree-9
    polynomial and ``fe ln 2`` split in two (shared by :func:`log_f32` and :func:`log1p_unit_f32`)."""
    z = f * f
    y = np.float32(7.0376836292e-2)
    y = y * f - np.float32(1.1514610310e-1)
    y = y * f + np.float32(1.1676998740e-1)
    y = y * f - np.float32(1.2420140846e-1)
    y = y * f + np.float32(1.4249322787e-1)
    y = y * f - np.float32(1.6668057665e-1)
    y = y * f + np.float32(2.0000714765e-1)
    y = y * f - np.float32(2.4999993993e-1)
    y = y * f + np.float32(3.3333331174e-1)
    y = y * f * z
    y = y + fe * np.float32(_LN2_LO)
    y = y - np.float32(0.5) * z
    return f + y + fe * np.float32(_LN2_HI)


@scalar
def log_f32(x):
    """Natural log for float32 ``x``."""
    tiny = x < np.float32(1.1754943508222875e-38)  # subnormal (or zero/negative): rescale by 2**25
    xs = x * np.float32(33554432.0) if tiny else x
    bits = reinterpret(np.float32(xs), np.int32)
    shift = np.int32(25) if tiny else np.int32(0)
    e = ((bits >> np.int32(23)) & np.int32(0xFF)) - np.int32(126) - shift
    m = reinterpret(np.int32((bits & np.int32(-2139095041)) | np.int32(0x3F000000)), np.float32)  # mantissa in [0.5, 1)
    small = m < np.float32(0.70710678118654752440)
    one = np.int32(1) if small else np.int32(0)
    e = e - one
    mm = m + m if small else m
    f = mm - np.float32(1.0)
    r = _log_reduced_f32(f, np.float32(e))
    r = np.float32(-np.inf) if x == np.float32(0.0) else r
    r = np.float32(np.nan) if x < np.float32(0.0) else r
    r = x if x == np.float32(np.inf) else r
    return x if x != x else r


@scalar
def log1p_unit_f32(x):
    """``log(1 + x)`` for float32 ``x`` in [0, 1] (the softplus ``log(1 + exp(-|z|))``), NaN propagating.

    :func:`log_f32`'s polynomial (:func:`_log_reduced_f32`) without its range reduction: ``1 + x`` is in [1, 2],
    so the reduced argument is ``f = x`` (exponent 0) or ``f = (x - 1) / 2``
    (exponent 1, where ``1 + x >= sqrt 2``), both exact (Sterbenz), so no rounding of
    ``1 + x`` is ever made and no bit manipulation, special-value select or division
    is needed.  About half the work of :func:`log1p`.
    """
    big = x >= np.float32(0.41421356237309504880)
    f = (x - np.float32(1.0)) * np.float32(0.5) if big else x
    fe = np.float32(1.0) if big else np.float32(0.0)
    return _log_reduced_f32(f, fe)


@scalar
def exp_neg_f32(x):
    """``e**x`` for ``x <= 0`` (shifted softmax logits), results below ``e**-87`` flushed to 0.

    Same polynomial as :func:`exp_f32`, but ``2**n`` is added straight into the
    exponent bits of ``p`` (one integer add instead of two scale factors).  That
    is exact while the result is a normal float; below ``e**-87`` (1.6e-38) the
    result is flushed to 0, which cannot change a softmax sum that is >= 1.
    Positive ``x`` is not supported (it would overflow the exponent field).
    """
    n, p = _exp_reduce_f32(x)
    y = reinterpret(np.int32(reinterpret(np.float32(p), np.int32) + (np.int32(n) << np.int32(23))), np.float32)
    y = np.float32(0.0) if x < np.float32(-87.0) else y
    return x if x != x else y


# ----------------------------------------------------------------- float64
@scalar
def _pow2_f64(n):
    h = n >> np.int64(1)
    a = reinterpret(np.int64((h + np.int64(1023)) << np.int64(52)), np.float64)
    b = reinterpret(np.int64((n - h + np.int64(1023)) << np.int64(52)), np.float64)
    return a, b


@scalar
def _exp_reduce_f64(x):
    """``(n, p)`` with ``e**x = p * 2**n``: Cody-Waite reduction, then Cephes' Pade form."""
    n = np.floor(x * _LOG2E + 0.5)
    r = x - n * 6.93145751953125e-1
    r = r - n * 1.42860682030941723212e-6
    rr = r * r
    px = r * ((1.26177193074810590878e-4 * rr + 3.02994407707441961300e-2) * rr + 9.99999999999999999910e-1)
    q = ((3.00198505138664455042e-6 * rr + 2.52448340349684104192e-3) * rr + 2.27265548208155028766e-1) * rr
    q = q + 2.00000000000000000009e0
    p = 1.0 + 2.0 * (px / (q - px))
    return n, p


@scalar
def exp_f64(x):
    """``e**x`` for float64 ``x`` (Cephes ``exp``: Pade form, ~1 ulp)."""
    n, p = _exp_reduce_f64(x)
    a, b = _pow2_f64(np.int64(n))
    y = p * a * b
    y = np.inf if x > 709.782712893384 else y
    y = 0.0 if x < -745.1332191019412 else y
    return y  # NaN: p is NaN, and neither select fires


@scalar
def log_f64(x):
    """Natural log for float64 ``x`` (Cephes ``log``: rational approximation, ~1 ulp)."""
    tiny = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if tiny else x  # 2**54
    bits = reinterpret(np.float64(xs), np.int64)
    shift = np.int64(54) if tiny else np.int64(0)
    e = ((bits >> np.int64(52)) & np.int64(0x7FF)) - np.int64(1022) - shift
    m = reinterpret(np.int64((bits & np.int64(-9218868437227405313)) | np.int64(0x3FE0000000000000)), np.float64)
    small = m < 0.70710678118654752440
    one = np.int64(1) if small else np.int64(0)
    e = e - one
    mm = m + m if small else m
    f = mm - 1.0
    z = f * f
    p = 1.01875663804580931796e-4
    p = p * f + 4.97494994976747001425e-1
    p = p * f + 4.70579119878881725854e0
    p = p * f + 1.44989225341610930846e1
    p = p * f + 1.79368678507819816313e1
    p = p * f + 7.70838733755885391666e0
    q = f + 1.12873587189167450590e1
    q = q * f + 4.52279145837532221105e1
    q = q * f + 8.29875266912776603211e1
    q = q * f + 7.11544750618563894466e1
    q = q * f + 2.31251620126765340583e1
    y = f * (z * p / q)
    fe = np.float64(e)
    y = y + fe * -2.121944400546905827679e-4
    y = y - 0.5 * z
    r = f + y + fe * 0.693359375
    r = -np.inf if x == 0.0 else r
    r = np.nan if x < 0.0 else r
    r = x if x == np.inf else r
    return x if x != x else r


#: ``Q`` in ``log(1 + f) = f - f**2 / 2 + f**3 Q(f)`` on ``f`` in [sqrt(1/2) - 1, sqrt(2) - 1], degree 10:
#: a weighted least-squares fit (iteratively reweighted towards minimax) to the relative error of
#: ``log(1 + f)``, at most 2**-35.6 (float32's half ulp is 2**-25)
_LOG_Q = (0.3333333389243048, -0.24999997076185773, 0.19999911248483412, -0.1666685508081112,
          0.14290174650093088, -0.12498287076527448, 0.1101478855394724, -0.09924538427617975,
          0.09988490221916924, -0.09863077683641182, 0.053867635203396394)
_Q0, _Q1, _Q2, _Q3, _Q4, _Q5, _Q6, _Q7, _Q8, _Q9, _Q10 = _LOG_Q


@scalar
def log_ge1_f32(x):
    """Natural log of a float64 ``x >= 1`` (NaN and +inf propagate) whose result is rounded to float32:
    cross-entropy's float64 softmax sum, for a float32 loss.  :func:`log_f64`'s exact range reduction,
    then a polynomial sized to float32's needs (:data:`_LOG_Q`, Estrin's scheme) instead of a rational
    function with a division, and none of the handling of zero, negative and subnormal arguments that
    a softmax sum never is (any positive normal ``x`` gets the right result).  Relative error below
    2**-35, so the float32 result is :func:`log_f64`'s but within a thousandth of an ulp of a rounding
    tie; half the time (the vectorized loop: 17 against 34 cycles per four values on AMD Zen 3)."""
    bits = reinterpret(np.float64(x), np.int64)
    e = ((bits >> np.int64(52)) & np.int64(0x7FF)) - np.int64(1022)
    m = reinterpret(np.int64((bits & np.int64(-9218868437227405313)) | np.int64(0x3FE0000000000000)), np.float64)
    small = m < 0.70710678118654752440
    e = e - (np.int64(1) if small else np.int64(0))
    f = (m + m if small else m) - 1.0
    z = f * f
    z2 = z * z
    q = (_Q0 + _Q1 * f) + z * (_Q2 + _Q3 * f) + z2 * ((_Q4 + _Q5 * f) + z * (_Q6 + _Q7 * f)) + z2 * z2 * ((_Q8 + _Q9 * f) + z * _Q10)
    r = f * z * q - 0.5 * z + f + np.float64(e) * 0.6931471805599453
    r = x if x == np.inf else r
    return x if x != x else r


@scalar
def exp_neg_f64(x):
    """float64 twin of :func:`exp_neg_f32`: ``e**x`` for ``x <= 0``, flushed to 0 below ``e**-708``."""
    n, p = _exp_reduce_f64(x)
    y = reinterpret(np.int64(reinterpret(np.float64(p), np.int64) + (np.int64(n) << np.int64(52))), np.float64)
    y = 0.0 if x < -708.0 else y
    return x if x != x else y


# ------------------------------------------------- order-preserving integer keys
# LLVM vectorizes an integer max reduction (vpmaxsd) but, without fast-math's
# "no NaN" promise, never a floating-point one: a row max over these keys runs
# 2.5x faster here than the best scalar float loop.
@scalar
def _key_f32(x):
    b = reinterpret(np.float32(x), np.int32)
    return np.int32(b ^ np.int32(np.int32(b >> np.int32(31)) & np.int32(0x7FFFFFFF)))


@scalar
def _unkey_f32(x):  # x: an order key
    return reinterpret(np.int32(x ^ np.int32(np.int32(x >> np.int32(31)) & np.int32(0x7FFFFFFF))), np.float32)


@scalar
def _key_f64(x):
    b = reinterpret(np.float64(x), np.int64)
    return np.int64(b ^ ((b >> np.int64(63)) & np.int64(0x7FFFFFFFFFFFFFFF)))


@scalar
def _unkey_f64(x):  # x: an order key
    return reinterpret(np.int64(x ^ ((x >> np.int64(63)) & np.int64(0x7FFFFFFFFFFFFFFF))), np.float64)


def order_key(x):
    """A signed integer of the float's width whose order is the float order: ``a < b`` exactly
    when ``order_key(a) < order_key(b)`` for non-NaN floats (``-0.0`` orders just below ``0.0``).
    A NaN with the sign bit clear orders above ``+inf``; one with it set, below ``-inf``."""


def from_order_key(k):
    """The float whose :func:`order_key` is ``k``."""


def by_type(table):
    """An ``@overload`` typer choosing the implementation by the argument's Numba type name
    (``{"float32": f, "float64": g}``: compiled functions of one argument named ``x``, as Numba
    requires of an implementation, or builtins); other types get no implementation."""

    def typer(x):
        f = table.get(str(x))
        if f is None:
            return None
        # a compiled function's own Python body (a lambda calling it would compile one more function);
        # a builtin (the CUDA target's math.exp) through a lambda
        return getattr(f, "py_func", None) or (lambda x: f(x))

    return typer


overload(order_key)(by_type({"float32": _key_f32, "float64": _key_f64}))
overload(from_order_key)(by_type({"int32": _unkey_f32, "int64": _unkey_f64}))


# ------------------------------------------------------------ dtype dispatch
def exp(x):
    """``e**x``; dispatches to :func:`exp_f32` or :func:`exp_f64` inside compiled code."""
    return np.exp(x)


def exp_neg(x):
    """``e**x`` for ``x <= 0``; dispatches to :func:`exp_neg_f32` or :func:`exp_neg_f64`."""
    return np.exp(x)


def log(x):
    """Natural log; dispatches to :func:`log_f32` or :func:`log_f64` inside compiled code."""
    return np.log(x)


def log1p(x):
    """``log(1 + x)`` accurate for small ``x``; built on :func:`log` inside compiled code."""
    return np.log1p(x)


def log1p_unit(x):
    """``log(1 + x)`` for ``x`` in [0, 1] (``x = exp(-|z|)``: softplus); :func:`log1p_unit_f32` for
    float32, :func:`log1p` for float64."""
    return np.log1p(x)


overload(exp)(by_type({"float32": exp_f32, "float64": exp_f64}))
overload(exp_neg)(by_type({"float32": exp_neg_f32, "float64": exp_neg_f64}))
overload(log)(by_type({"float32": log_f32, "float64": log_f64}))


@overload(log1p)
def _log1p_overload(x):
    from numba.core import types

    if not isinstance(x, types.Float):
        return None
    one = np.float32(1.0) if x == types.float32 else 1.0
    log_x = log_f32 if x == types.float32 else log_f64  # called directly: no log overload to compile too

    def impl(x):
        # Goldberg's trick: log(u) * x / (u - 1) cancels the rounding of u = 1 + x.
        u = x + one
        d = u - one
        dd = one if d == 0 else d
        r = log_x(u) * (x / dd)
        r = x if d == 0 else r
        return u if u == np.inf else r

    return impl


# float64: log1p itself (a Python stub, so through a lambda, to its overload)
overload(log1p_unit)(by_type({"float32": log1p_unit_f32, "float64": log1p}))


def log_ge1(x, like):
    """Natural log of a float64 ``x >= 1`` (a softmax sum; NaN and +inf propagate) for a result in
    ``like``'s float type (a scalar or an array): :func:`log_ge1_f32` for float32, :func:`log_f64` for float64."""
    return np.log(x)


@overload(log_ge1)
def _log_ge1_overload(x, like):
    from numba.core import types

    dtype = like.dtype if isinstance(like, types.Array) else like
    f = log_ge1_f32 if dtype == types.float32 else log_f64
    return lambda x, like: f(x)


def like(value, x):
    """``value`` as a constant of the float type of ``x`` (a scalar or an array).

    Keeps float32 arithmetic in float32: a bare Python float literal would
    promote it to float64 and halve the vector width.
    """
    return value


@overload(like)
def _like_overload(value, x):
    from numba.core import types

    dtype = x.dtype if isinstance(x, types.Array) else x
    if dtype == types.float32:
        return lambda value, x: np.float32(value)
    return lambda value, x: np.float64(value)


# ------------------------------------------------------- accuracy measurement
_NAMES = ("exp", "log", "log1p", "exp_neg", "log1p_unit", "log_ge1_f32")


@kernel
def _evaluate(which, a, out):
    for i in prange(a.size):
        if which == 0:
            out[i] = exp(a[i])
        elif which == 1:
            out[i] = log(a[i])
        elif which == 2:
            out[i] = log1p(a[i])
        elif which == 3:
            out[i] = exp_neg(a[i])
        elif which == 4:
            out[i] = log1p_unit(a[i])
        else:
            out[i] = log_ge1(a[i], np.float32(0.0))


def evaluate(name, x):
    """``name`` ("exp", "log", "log1p", "exp_neg", "log1p_unit" or "log_ge1_f32": :func:`log_ge1` of float64 values
    for a float32 result) applied to ``x`` by compiled code, as the kernels see it."""
    out = np.empty_like(x)
    _evaluate(_NAMES.index(name), x, out, work=x.size)
    return out


def ulp_distance(a, b):
    """Distance in units in the last place between same-dtype float arrays (finite values)."""
    it = np.int32 if a.dtype == np.float32 else np.int64
    ia, ib = a.view(it).astype(np.int64), b.view(it).astype(np.int64)
    lo = np.iinfo(it).min
    return np.abs(np.where(ia < 0, lo - ia, ia) - np.where(ib < 0, lo - ib, ib))
