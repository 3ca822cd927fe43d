"""The elementwise losses' own semantics: torch's edge cases, broadcasting, warnings and errors."""

import re
import warnings

import numpy as np
import pytest

import numbaloss
from tests.cases import ELEMENTWISE, make, third
from tests.conftest import assert_close, grad_args, needs_torch, run_torch

inf, nan = np.inf, np.nan
NAMES = list(ELEMENTWISE)


def _torch(name, x, t, **kw):
    """torch's loss and gradients (its warnings silenced: numbaloss's are tested below)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_torch(name, x, t, kw)


def _ones_rest(name, shape):
    """Ones for a loss's data arrays after the first two (``var``, margin_ranking's ``target``), by name."""
    return {k: np.ones(shape) for k in numbaloss.REGISTRY[name].arrays[2:]}


def _ours(name, x, t, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(numbaloss, name)(x, t, return_grad=True, **kw)


# (loss, input, target, options): NaN, inf, ties and torch's special values, each against torch
EDGES = [
    ("l1_loss", [nan, 1.0, 2.0, -inf, inf, 0.5], [0.0, 1.0, 1.0, 0.0, 0.0, nan], {}),
    ("mse_loss", [nan, 1.0, 2.0, -inf, inf], [0.0, 1.0, 1.0, 0.0, 0.0], {}),
    ("smooth_l1_loss", [nan, 2.0, 0.5, -1.0, 1.0, inf], [0.0, 1.0, 0.0, 0.0, 1.0, 0.0], {"beta": 1.0}),
    ("smooth_l1_loss", [nan, 2.0, 0.5, -1.0, 1.0, inf], [0.0, 1.0, 0.0, 0.0, 1.0, 0.0], {"beta": 0.0}),
    ("huber_loss", [nan, 2.0, 0.5, -1.0, 1.0, -inf], [0.0, 1.0, 0.0, 0.0, 1.0, 0.0], {"delta": 1.0}),
    ("soft_margin_loss", [1.0, -2.0, 30.0, nan, 0.0], [1.0, 1.0, -1.0, 1.0, -1.0], {}),
    ("kl_div", [-1.0, -inf, -inf, 0.5, 1.0, 2.0], [0.0, 0.0, 0.5, 0.2, nan, -0.5], {}),
    ("kl_div", [-1.0, -inf, 0.5, 1.0], [-inf, 0.0, -inf, 50.0], {"log_target": True}),
    ("poisson_nll_loss", [0.5, -1.0, 2.0, -inf, 30.0], [1.0, 2.0, 3.0, 0.0, 1.5], {"full": True}),
    ("poisson_nll_loss", [0.5, 0.0, 2.0, 1e-3], [1.0, 2.0, 0.5, 0.0], {"log_input": False, "full": True}),
    ("hinge_embedding_loss", [0.5, 1.0, 2.0, 0.3, 1.0, 0.2, nan, nan], [1.0, -1.0, -1.0, 0.0, 0.0, 2.0, -1.0, 1.0], {}),
    ("hinge_embedding_loss", [0.5, -0.5, 0.0], [-1.0, -1.0, -1.0], {"margin": -0.5}),
    # ties (the gradient passes), NaN in either input, an inf margin; input2 in the target's column
    ("margin_ranking_loss", [1.0, 2.0, 3.0, nan, 0.5, 1.0], [1.0, 1.0, 4.0, 0.0, 0.5, nan],
     {"target": [1.0, -1.0, 1.0, 1.0, 2.0, 1.0]}),
    ("margin_ranking_loss", [1.0, 2.0, -inf, 0.0], [1.5, 1.0, 0.0, 0.0], {"target": [1.0, 1.0, -1.0, 0.0], "margin": 0.5}),
    # var below eps (clamped; its gradient is the formula at eps), 0 with eps 0, NaN and inf var, inf input
    ("gaussian_nll_loss", [1.0, 2.0, 1.0, 1.0, 1.0, inf], [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
     {"var": [1e-9, 0.5, 0.0, nan, inf, 1.0]}),
    ("gaussian_nll_loss", [1.0, 0.0, 3.0], [0.0, 0.0, 3.0], {"var": [0.0, 0.0, 2.0], "eps": 0.0, "full": True}),
]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("case", EDGES, ids=[f"{c[0]}-{i}" for i, c in enumerate(EDGES)])
def test_edge_values_match_torch(case, reduction, dtype):
    name, x, t, kw = case
    x, t = np.array(x, dtype), np.array(t, dtype)
    kw = {k: (np.array(v, dtype) if isinstance(v, list) else v) for k, v in kw.items()}
    loss, grad = _ours(name, x, t, reduction=reduction, **kw)
    want, want_grad = _torch(name, x, t, reduction=reduction, **kw)
    assert_close(loss, want, dtype)
    assert_close(grad, want_grad, dtype)


def test_soft_margin_stays_finite_where_torch_overflows():
    # torch's float32 gives inf at t x < -88; the value is |t x| + log1p(exp(-|t x|))
    loss, grad = numbaloss.soft_margin_loss(np.array([100.0], np.float32), np.array([-1.0], np.float32),
                                            reduction="none", return_grad=True)
    assert loss[0] == np.float32(100.0) and grad[0] == np.float32(1.0)


def test_smooth_l1_with_beta_zero_is_l1():
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal(1000), rng.standard_normal(1000)
    x[::10] = t[::10]  # ties: both gradients 0 there
    for reduction in ("none", "mean"):
        a = numbaloss.smooth_l1_loss(x, t, beta=0.0, reduction=reduction, return_grad=True)
        b = numbaloss.l1_loss(x, t, reduction=reduction, return_grad=True)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_huber_is_delta_times_smooth_l1():
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal(500) * 3, rng.standard_normal(500)
    for delta in (0.3, 1.0, 2.5):
        h, hg = numbaloss.huber_loss(x, t, delta=delta, reduction="none", return_grad=True)
        s, sg = numbaloss.smooth_l1_loss(x, t, beta=delta, reduction="none", return_grad=True)
        assert_close(h, delta * s, np.float64)
        assert_close(hg, delta * sg, np.float64)


@needs_torch
@pytest.mark.parametrize("name", NAMES)
def test_input_broadcast_against_target(name):
    """torch's broadcast_tensors: a (3, 1) input and a (1, 4) target give a (3, 4) loss; the input's
    gradient is summed back to (3, 1).  soft_margin_loss broadcasts only the target, as torch."""
    rng = np.random.default_rng(3)
    make_x, make_t, _ = ELEMENTWISE[name]
    x, t = make_x(rng, (3, 1)), make_t(rng, (1, 4))
    extra = third(name, rng, (3, 1), np.float64)  # var of the input's shape; margin_ranking's target
    if name == "soft_margin_loss":
        with pytest.raises(ValueError, match=re.escape("target of shape (1, 4) is not broadcastable to the input's shape (3, 1)")):
            numbaloss.soft_margin_loss(x, t)
        return
    for reduction in ("none", "mean", "sum"):
        loss, grad = _ours(name, x, t, reduction=reduction, **extra)
        want, want_grad = _torch(name, x, t, reduction=reduction, **extra)
        assert np.shape(loss) == np.shape(want) == (() if reduction != "none" else (3, 4))
        for g, arg in zip(grad if isinstance(grad, tuple) else (grad,), grad_args(name, x, t, extra)):
            assert g.shape == arg.shape  # each summed back to its own shape: (3, 1), input2's (1, 4)
        assert_close(loss, want, np.float64)
        assert_close(grad, want_grad, np.float64)


@needs_torch
@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_inputs(name):
    rng = np.random.default_rng(4)
    make_x, make_t, _ = ELEMENTWISE[name]
    x, t = make_x(rng, (6, 8)).astype(np.float32)[::2, ::3], make_t(rng, (8, 6)).astype(np.float32).T[::2, ::3]
    extra = {k: v[::2, ::3] for k, v in third(name, rng, (6, 8), np.float32).items()}
    xc, tc, ec = x.copy(), t.copy(), {k: v.copy() for k, v in extra.items()}
    loss, grad = _ours(name, x, t, reduction="none", **extra)
    want, want_grad = _torch(name, np.ascontiguousarray(x), np.ascontiguousarray(t), reduction="none",
                             **{k: np.ascontiguousarray(v) for k, v in extra.items()})
    assert_close(loss, want, np.float32)
    assert_close(grad, want_grad, np.float32)
    np.testing.assert_array_equal(x, xc)  # inputs untouched
    np.testing.assert_array_equal(t, tc)
    for k, v in extra.items():
        np.testing.assert_array_equal(v, ec[k])


@needs_torch
@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss"])
def test_weighted_means(name):
    """l1/mse: sum(w l) / sum(w); huber: mean(w l), as torch."""
    rng = np.random.default_rng(5)
    x, t, w = rng.standard_normal((7, 3)), rng.standard_normal((7, 3)), rng.uniform(0.1, 2, (7, 3))
    for reduction in ("mean", "sum", "none"):
        loss, grad = _ours(name, x, t, reduction=reduction, weight=w)
        want, want_grad = _torch(name, x, t, reduction=reduction, weight=w)
        assert_close(loss, want, np.float64)
        assert_close(grad, want_grad, np.float64)


def test_kl_div_batchmean():
    rng = np.random.default_rng(6)
    x, t = np.log(rng.random((4, 5))), rng.random((4, 5))
    s, gs = numbaloss.kl_div(x, t, reduction="sum", return_grad=True)
    b, gb = numbaloss.kl_div(x, t, reduction="batchmean", return_grad=True)
    assert_close(b, s / 4, np.float64)
    assert_close(gb, gs / 4, np.float64)
    # a 0-d input: batchmean is the plain sum
    assert numbaloss.kl_div(np.array(-1.0), np.array(0.5), reduction="batchmean") == numbaloss.kl_div(
        np.array(-1.0), np.array(0.5), reduction="sum")


def test_poisson_full_skips_target_one():
    x = np.array([0.3, 0.3])
    t = np.array([1.0, 1.0 + 1e-12])
    a = numbaloss.poisson_nll_loss(x, t, full=True, reduction="none")
    b = numbaloss.poisson_nll_loss(x, t, full=False, reduction="none")
    assert a[0] == b[0] and a[1] != b[1]


# ------------------------------------------------------------------ warnings
@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss"])
def test_target_size_warning(name):
    fn = getattr(numbaloss, name)
    with pytest.warns(UserWarning, match=re.escape("Using a target size ((3,)) that is different to the input size ((2, 3))")) as rec:
        fn(np.zeros((2, 3)), np.zeros(3))
    assert rec[0].filename == __file__  # points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(np.zeros((2, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize("name", ["kl_div", "poisson_nll_loss", "hinge_embedding_loss", "soft_margin_loss"])
def test_no_target_size_warning(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        getattr(numbaloss, name)(np.zeros((2, 3)), np.ones(3), reduction="sum")


def test_kl_div_mean_warning():
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
        numbaloss.kl_div(np.zeros(3), np.ones(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for reduction in ("batchmean", "sum", "none"):
            numbaloss.kl_div(np.zeros(3), np.ones(3), reduction=reduction)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("beta", [-1.0, -1e-9])
def test_negative_beta(beta):
    with pytest.raises(ValueError, match="smooth_l1_loss does not support negative values for beta"):
        numbaloss.smooth_l1_loss(np.zeros(3), np.zeros(3), beta=beta)


@pytest.mark.parametrize("delta", [0.0, -1.0, nan])
def test_non_positive_delta(delta):
    with pytest.raises(ValueError, match="huber_loss does not support non-positive values for delta"):
        numbaloss.huber_loss(np.zeros(3), np.zeros(3), delta=delta)


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "huber_loss"])
@pytest.mark.parametrize("shape", [(3,), (1, 3), (2, 1), (1,)])
def test_weight_must_have_the_input_shape(name, shape):
    with pytest.raises(ValueError, match=re.escape(f"Weights and input must have the same size: weight of shape {shape}")):
        getattr(numbaloss, name)(np.zeros((2, 3)), np.zeros((2, 3)), weight=np.ones(shape))


@pytest.mark.parametrize("name", NAMES)
def test_shapes_that_do_not_broadcast(name):
    extra = third(name, np.random.default_rng(0), (2, 4), np.float64)
    with pytest.raises(ValueError, match="do not broadcast|is not broadcastable"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(numbaloss, name)(np.zeros((2, 4)), np.zeros((2, 3)), **extra)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "kl_div"])
def test_batchmean_only_for_kl_div(name):
    with pytest.raises(ValueError, match="'batchmean' is not a valid value for reduction"):
        getattr(numbaloss, name)(np.zeros(3), np.zeros(3), reduction="batchmean", **_ones_rest(name, 3))


@pytest.mark.parametrize("name", NAMES)
def test_integer_input_and_non_array_target(name):
    fn = getattr(numbaloss, name)
    rest = _ones_rest(name, 3)
    first, second = numbaloss.REGISTRY[name].arrays[:2]  # input, target; margin_ranking's input1, input2
    with pytest.raises(TypeError, match=f"^{first} must be float32 or float64, got int64"):
        fn(np.zeros(3, np.int64), np.zeros(3), **rest)
    with pytest.raises(TypeError, match=f"{second} must be an array"):
        fn(np.zeros(3), "abc", **rest)


@pytest.mark.parametrize("name", NAMES)
def test_class_form(name):
    """The nn-style class: options at construction, data at the call; same result as the function."""
    spec = numbaloss.REGISTRY[name]
    cls = getattr(numbaloss, spec.module)
    rng = np.random.default_rng(7)
    make_x, make_t, _ = ELEMENTWISE[name]
    x, t = make_x(rng, (4, 3)), make_t(rng, (4, 3))
    rest = tuple(third(name, rng, (4, 3), np.float64).values())  # positional, as the class takes the data
    obj = cls(reduction="sum")
    assert repr(obj).startswith(f"{spec.module}(") and "reduction='sum'" in repr(obj)
    got = obj(x, t, *rest, return_grad=True)
    want = getattr(numbaloss, name)(x, t, *rest, reduction="sum", return_grad=True)
    flat = lambda r: [r[0], *(r[1] if isinstance(r[1], tuple) else (r[1],))]  # noqa: E731
    for a, b in zip(flat(got), flat(want), strict=True):  # the same numbers: loss and every gradient
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ three data arrays
#: (input shape, var shape): every kind of var torch accepts (the input's shape; the input's less its
#: last dimension, per row even when N == D; one dimension of size 1; 0-d on a 1-d input)
GAUSSIAN_VAR_SHAPES = [
    ((4, 3), (4, 3)), ((4, 3), (4,)), ((4, 3), (4, 1)), ((4, 3), (1, 3)), ((4, 4), (4,)), ((3,), ()), ((3,), (1,)),
    ((2, 3, 4), (2, 3)), ((2, 3, 4), (2, 1, 4)), ((), ()), ((0, 3), (0,)),
]


@needs_torch
@pytest.mark.parametrize("shapes", GAUSSIAN_VAR_SHAPES, ids=str)
def test_gaussian_var_shapes(shapes):
    x_shape, var_shape = shapes
    rng = np.random.default_rng(11)
    x, t, var = rng.standard_normal(x_shape), rng.standard_normal(x_shape), rng.uniform(0.1, 2.0, var_shape)
    for reduction in ("none", "mean", "sum"):
        loss, (gx, gv) = _ours("gaussian_nll_loss", x, t, var=var, reduction=reduction)
        want, want_grads = _torch("gaussian_nll_loss", x, t, var=var, reduction=reduction)
        assert gx.shape == x.shape and gv.shape == var.shape
        assert_close(loss, want, np.float64)
        assert_close((gx, gv), want_grads, np.float64)


@needs_torch
@pytest.mark.parametrize("shapes", [((4, 3), (1, 1)), ((4, 3), (3,)), ((4, 3), ()), ((4, 3), (2, 3)),
                                    ((2, 3, 4), (1, 1, 4)), ((2, 3, 4), (3, 4))], ids=str)
def test_gaussian_var_shapes_torch_rejects(shapes):
    x_shape, var_shape = shapes
    x, var = np.zeros(x_shape), np.ones(var_shape)
    with pytest.raises(ValueError, match="var is of incorrect size"):
        _torch("gaussian_nll_loss", x, x, var=var)
    with pytest.raises(ValueError, match=re.escape(f"var is of incorrect size: var of shape {var_shape}")):
        numbaloss.gaussian_nll_loss(x, x, var)


def test_gaussian_negative_var_is_reported_where_it_is():
    x = np.zeros((3, 4))
    var = np.ones(3)
    var[1] = -2.0  # one per row: reported in var's own shape
    with pytest.raises(ValueError, match=re.escape("var has negative entry/entries; var[1] = -2.0")):
        numbaloss.gaussian_nll_loss(x, x, var)
    with pytest.raises(ValueError, match=re.escape("var has negative entry/entries")):
        numbaloss.gaussian_nll_loss(x, x, -0.5)
    with pytest.raises(ValueError, match=re.escape("var has negative entry/entries; var[0, 2] = -1e-30")):
        numbaloss.gaussian_nll_loss(x, x, np.where(np.arange(12).reshape(3, 4) == 2, -1e-30, 1.0))
    # NaN is not negative (torch: NaN results, no error)
    assert np.isnan(numbaloss.gaussian_nll_loss(x, x, np.full((3, 4), nan)))


def test_gaussian_var_types():
    x = np.zeros(3)
    with pytest.raises(TypeError, match="var must be an array or a float, got int"):
        numbaloss.gaussian_nll_loss(x, x, 1)
    with pytest.raises(TypeError, match="var must be a floating-point array, got int64"):
        numbaloss.gaussian_nll_loss(x, x, np.ones(3, np.int64))
    loss, (gx, gv) = numbaloss.gaussian_nll_loss(x + 1.0, x, 2.0, return_grad=True)  # a float: no var gradient
    assert gv is None and gx.shape == (3,)
    assert_close(loss, 0.5 * (np.log(2.0) + 0.5), np.float64)


def test_gaussian_float32_var_of_float64_input_is_cast():
    rng = np.random.default_rng(12)
    x, t = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    var = rng.uniform(0.5, 1.5, (5, 2)).astype(np.float32)
    loss, (gx, gv) = numbaloss.gaussian_nll_loss(x, t, var, return_grad=True)
    want, (wx, wv) = numbaloss.gaussian_nll_loss(x, t, var.astype(np.float64), return_grad=True)
    assert gv.dtype == np.float64 and loss == want
    np.testing.assert_array_equal(gv, wv)


def test_margin_ranking_needs_the_same_number_of_dimensions():
    with pytest.raises(ValueError, match=re.escape(
            "margin_ranking_loss : All input tensors should have same dimension but got sizes: input1: (3,), "
            "input2: (3, 1), target: (3,)")):
        numbaloss.margin_ranking_loss(np.zeros(3), np.zeros((3, 1)), np.ones(3))


def test_margin_ranking_gradients_are_opposite():
    rng = np.random.default_rng(13)
    x1, x2, y = rng.standard_normal(100), rng.standard_normal(100), np.sign(rng.standard_normal(100))
    x2[::7] = x1[::7]  # ties with margin 0: both gradients pass (-t and t)
    _, (g1, g2) = numbaloss.margin_ranking_loss(x1, x2, y, reduction="sum", return_grad=True)
    np.testing.assert_array_equal(g1, -g2)
    np.testing.assert_array_equal(g1[::7], -y[::7])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", NAMES)
def test_value_is_bitwise_the_same_with_and_without_gradient(name, dtype):
    """The template computes value and gradient in one loop when a gradient is asked for: the value
    must not change by a bit (LLVM shares what the formulas have in common; see gaussian_nll's
    explicit reciprocal)."""
    rng = np.random.default_rng(14)
    make_x, make_t, options = ELEMENTWISE[name]
    x, t = make_x(rng, (5000,)).astype(dtype), make_t(rng, (5000,)).astype(dtype)
    extra = third(name, rng, (5000,), dtype)
    for option in options.values():
        kw = dict(extra, **option(rng, (5000,)))
        a = getattr(numbaloss, name)(x, t, reduction="none", **kw)
        b, _ = getattr(numbaloss, name)(x, t, reduction="none", return_grad=True, **kw)
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name, shape, go_shape", [
    ("mse_loss", (7, 3000), (7, 3000)),  # parallel kernel
    ("mse_loss", (5,), (5,)),  # serial kernel
    ("binary_cross_entropy_with_logits", (7, 3000), (1, 3000)),  # a broadcast grad_output
    ("gaussian_nll_loss", (7, 3000), (7, 3000)),  # with a parameter's gradient (var)
])
def test_float32_grad_output_is_used_as_is(name, shape, go_shape):
    """A float32 ``grad_output`` array for a float32 input is read without a float64 copy (2**24
    elements: 22 ms saved): the gradients are bitwise those of the same values given in float64,
    and ``grad_output`` itself is left untouched."""
    (x, t, extra), rng = make(name, shape, np.float32, "plain")  # the test table's inputs (a third array in extra)
    go = rng.uniform(-2.0, 2.0, go_shape).astype(np.float32)
    before = go.copy()
    loss, grads = _ours(name, x, t, reduction="none", grad_output=go, **extra)
    loss64, grads64 = _ours(name, x, t, reduction="none", grad_output=go.astype(np.float64), **extra)
    np.testing.assert_array_equal(go, before)
    np.testing.assert_array_equal(loss, loss64)
    for g, g64 in zip(grads if isinstance(grads, tuple) else (grads,), grads64 if isinstance(grads64, tuple) else (grads64,)):
        assert g.dtype == np.float32 and g.tobytes() == g64.tobytes()
