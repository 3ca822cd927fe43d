"""The elementwise losses' own semantics: torch's edge cases, broadcasting, warnings and errors."""

import re
import warnings

import numpy as np
import pytest

import numbaloss
from tests.cases import ELEMENTWISE
from tests.conftest import assert_close, needs_torch, run_torch

inf, nan = np.inf, np.nan
NAMES = list(ELEMENTWISE)


def _torch(name, x, t, **kw):
    """torch's loss and input gradient (its warnings silenced: numbaloss's are tested below)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_torch(name, x, t, kw)


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
]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("case", EDGES, ids=[f"{c[0]}-{i}" for i, c in enumerate(EDGES)])
def test_edge_values_match_torch(case, reduction, dtype):
    name, x, t, kw = case
    x, t = np.array(x, dtype), np.array(t, dtype)
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
    if name == "soft_margin_loss":
        with pytest.raises(ValueError, match=re.escape("target of shape (1, 4) is not broadcastable to the input's shape (3, 1)")):
            numbaloss.soft_margin_loss(x, t)
        return
    for reduction in ("none", "mean", "sum"):
        loss, grad = _ours(name, x, t, reduction=reduction)
        want, want_grad = _torch(name, x, t, reduction=reduction)
        assert np.shape(loss) == np.shape(want) and grad.shape == (3, 1)
        assert_close(loss, want, np.float64)
        assert_close(grad, want_grad, np.float64)


@needs_torch
@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_inputs(name):
    rng = np.random.default_rng(4)
    make_x, make_t, _ = ELEMENTWISE[name]
    x, t = make_x(rng, (6, 8)).astype(np.float32)[::2, ::3], make_t(rng, (8, 6)).astype(np.float32).T[::2, ::3]
    xc, tc = x.copy(), t.copy()
    loss, grad = _ours(name, x, t, reduction="none")
    want, want_grad = _torch(name, np.ascontiguousarray(x), np.ascontiguousarray(t), reduction="none")
    assert_close(loss, want, np.float32)
    assert_close(grad, want_grad, np.float32)
    np.testing.assert_array_equal(x, xc)  # inputs untouched
    np.testing.assert_array_equal(t, tc)


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
    with pytest.raises(ValueError, match="do not broadcast|is not broadcastable"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            getattr(numbaloss, name)(np.zeros((2, 3)), np.zeros(4))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "kl_div"])
def test_batchmean_only_for_kl_div(name):
    with pytest.raises(ValueError, match="'batchmean' is not a valid value for reduction"):
        getattr(numbaloss, name)(np.zeros(3), np.zeros(3), reduction="batchmean")


@pytest.mark.parametrize("name", NAMES)
def test_integer_input_and_non_array_target(name):
    fn = getattr(numbaloss, name)
    with pytest.raises(TypeError, match="input must be float32 or float64, got int64"):
        fn(np.zeros(3, np.int64), np.zeros(3))
    with pytest.raises(TypeError, match="target must be an array"):
        fn(np.zeros(3), "abc")


@pytest.mark.parametrize("name", NAMES)
def test_class_form(name):
    """The nn-style class: options at construction, data at the call; same result as the function."""
    spec = numbaloss.REGISTRY[name]
    cls = getattr(numbaloss, spec.module)
    rng = np.random.default_rng(7)
    make_x, make_t, _ = ELEMENTWISE[name]
    x, t = make_x(rng, (4, 3)), make_t(rng, (4, 3))
    obj = cls(reduction="sum")
    assert repr(obj).startswith(f"{spec.module}(") and "reduction='sum'" in repr(obj)
    np.testing.assert_array_equal(obj(x, t, return_grad=True)[1], getattr(numbaloss, name)(x, t, reduction="sum", return_grad=True)[1])
