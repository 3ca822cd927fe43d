"""Every bad input gets a clear error (type and message) before any kernel can read out of bounds."""

import re

import numpy as np
import pytest

import numbaloss
from tests.cases import ROWS, row_case, third
from tests.conftest import LOSSES

rng = np.random.default_rng(0)
X = rng.standard_normal((4, 5))
Y = np.array([0, 1, 2, 3])
P = rng.uniform(0.1, 0.9, (4, 5))
T = rng.uniform(0, 1, (4, 5))
CLASS = ["cross_entropy", "nll_loss"]
BINARY = ["binary_cross_entropy", "binary_cross_entropy_with_logits"]


def _args(name):
    """Valid data arrays for the loss, in order (a third one from the test table: var, a label target)."""
    if name in CLASS:
        return X, Y
    if name in ROWS:  # the test table's case maker (class indices, a label per row...)
        x, t, kwargs = row_case(name, P.shape, np.float64, "plain", np.random.default_rng(1))
        return (x, t) + tuple(kwargs.values())
    return (P, T) + tuple(third(name, np.random.default_rng(1), P.shape, np.float64).values())


OUT_OF_BOUNDS = [
    (bad, tdtype)
    for tdtype in (np.int64, np.int8, np.uint8, np.uint64)
    for bad in (5, 7, -1, -3, 127)
    if bad >= 0 or np.dtype(tdtype).kind == "i"
]


@pytest.mark.parametrize("name", CLASS)
@pytest.mark.parametrize("bad, tdtype", OUT_OF_BOUNDS)
def test_target_out_of_bounds(name, bad, tdtype):
    t = np.array([0, 1, bad, 3], tdtype)
    for reduction in ("mean", "sum", "none"):
        with pytest.raises(IndexError, match=rf"^Target {bad} is out of bounds\. \(at target index \(2,\)"):
            LOSSES[name][0](X, t, reduction=reduction, return_grad=True)


def test_target_out_of_bounds_reports_first_position_in_kdim():
    x = rng.standard_normal((2, 3, 4))
    t = np.zeros((2, 4), np.int64)
    t[1, 2] = 3
    t[1, 3] = -7
    with pytest.raises(IndexError, match=re.escape("Target 3 is out of bounds. (at target index (1, 2);")):
        numbaloss.cross_entropy(x, t)


@pytest.mark.parametrize("tdtype", [np.int64, np.int32, np.uint8])
def test_target_out_of_bounds_in_a_large_call_names_the_first(tdtype):
    """A large few-class call checks its targets tile by tile, in parallel (the default options:
    ``_ce_plain``; with a weight or smoothing and no gradient that waits for the mean's count:
    ``_ce_columns``): the message names the first bad position over all tiles, whichever tile ends first."""
    x = rng.standard_normal((5000, 10)).astype(np.float32)  # 50,000 elements: the parallel kernel, tiles of 1024 rows
    t = rng.integers(0, 10, 5000).astype(tdtype)
    t[4900] = 10
    t[1500] = 12
    t[1501] = 250
    options = ({}, {"weight": rng.random(10).astype(np.float32)}, {"label_smoothing": 0.2})
    for kw in options:
        for reduction in ("mean", "sum", "none"):
            for return_grad in (False, True):
                with pytest.raises(IndexError, match=re.escape("Target 12 is out of bounds. (at target index (1500,);")):
                    numbaloss.cross_entropy(x, t, reduction=reduction, return_grad=return_grad, **kw)
    t[1500] = t[1501] = 0
    for kw in options:
        with pytest.raises(IndexError, match=re.escape("Target 10 is out of bounds. (at target index (4900,);")):
            numbaloss.cross_entropy(x, t, **kw)


def test_huge_unsigned_target():
    t = np.array([0, 1, 2, np.iinfo(np.uint64).max], np.uint64)
    with pytest.raises(IndexError, match=f"Target {np.iinfo(np.uint64).max} is out of bounds"):
        numbaloss.nll_loss(X, t)


def test_ignore_index_equal_to_valid_class_is_not_an_error():
    assert np.isfinite(numbaloss.cross_entropy(X, np.array([0, 1, 2, 7]), ignore_index=7))


@pytest.mark.parametrize("name", list(LOSSES))
def test_invalid_reduction(name):
    with pytest.raises(ValueError, match=r"'avg' is not a valid value for reduction; choose one of 'none', 'mean', 'sum'"):
        LOSSES[name][0](*_args(name), reduction="avg")


@pytest.mark.parametrize("name", CLASS)
def test_batch_size_mismatch(name):
    with pytest.raises(ValueError, match=r"Expected input batch_size \(4\) to match target batch_size \(3\)"):
        LOSSES[name][0](X, np.array([0, 1, 2]))


def test_kdim_target_shape_mismatch():
    with pytest.raises(ValueError, match=re.escape("Expected target size (2, 4), got (2, 5)")):
        numbaloss.cross_entropy(rng.standard_normal((2, 3, 4)), np.zeros((2, 5), np.int64))


def test_unbatched_target_shape():
    with pytest.raises(ValueError, match=r"unbatched input of shape \(5,\) the target must have shape \(\)"):
        numbaloss.cross_entropy(X[0], np.array([1, 2]))


@pytest.mark.parametrize("name", BINARY)
def test_binary_shape_mismatch(name):
    with pytest.raises(ValueError, match=re.escape("target size (3, 5) that is different to the input size (4, 5)")):
        LOSSES[name][0](P, T[:3])


@pytest.mark.parametrize("eps", [-0.1, 1.5, float("nan"), "0.1"])
def test_label_smoothing_range(eps):
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        numbaloss.cross_entropy(X, Y, label_smoothing=eps)


@pytest.mark.parametrize("name", CLASS)
@pytest.mark.parametrize("shape", [(4,), (6,), (5, 1)])
def test_class_weight_wrong_length(name, shape):
    with pytest.raises(ValueError, match=re.escape(f"weight should be defined either for all 5 classes or no classes, but got weight of shape {shape}")):
        LOSSES[name][0](X, Y, weight=np.ones(shape))


@pytest.mark.parametrize("name", BINARY)
def test_binary_weight_not_broadcastable(name):
    with pytest.raises(ValueError, match=re.escape("weight of shape (4,) is not broadcastable to the input's shape (4, 5)")):
        LOSSES[name][0](P, T, weight=np.ones(4))


@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 4, 5)])
def test_pos_weight_not_broadcastable(shape):
    with pytest.raises(ValueError, match=re.escape(f"pos_weight of shape {shape} is not broadcastable")):
        numbaloss.binary_cross_entropy_with_logits(P, T, pos_weight=np.ones(shape))


@pytest.mark.parametrize("value", [1.5, -0.1, np.nan, np.inf])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_bce_input_outside_unit_interval(value, reduction):
    x = P.copy()
    x[2, 3] = value
    with pytest.raises(ValueError, match=re.escape(f"all elements of input should be between 0 and 1; input[2, 3] = {value}")):
        numbaloss.binary_cross_entropy(x, T, reduction=reduction, return_grad=True)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.complex64, np.bool_])
def test_non_float_input(name, dtype):
    x, *rest = _args(name)
    first = numbaloss.REGISTRY[name].arrays[0]  # input; input1
    with pytest.raises(TypeError, match=f"^{first} must be float32 or float64, got {np.dtype(dtype).name}"):
        LOSSES[name][0](x.astype(dtype), *rest)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("bad", [[[0.1, 0.2]], 0.5, "x", None])
def test_non_array_input(name, bad):
    with pytest.raises(TypeError, match=f"^{numbaloss.REGISTRY[name].arrays[0]} must be an array"):
        LOSSES[name][0](bad, *_args(name)[1:])


@pytest.mark.parametrize("name", CLASS)
def test_non_array_target(name):
    with pytest.raises(TypeError, match="target must be an array"):
        LOSSES[name][0](X, [0, 1, 2, 3])


@pytest.mark.parametrize("name", CLASS)
def test_float_class_target(name):
    with pytest.raises(TypeError, match="target with class indices must have an integer dtype, got float64"):
        LOSSES[name][0](X, Y.astype(np.float64))


def test_integer_probability_target():
    with pytest.raises(TypeError, match="Expected floating point type for target with class probabilities, got int64"):
        numbaloss.cross_entropy(X, np.zeros((4, 5), np.int64))


@pytest.mark.parametrize("ignore_index", [0, 3, 100])
def test_ignore_index_with_probability_target(ignore_index):
    with pytest.raises(ValueError, match="ignore_index is not supported for floating point target"):
        numbaloss.cross_entropy(X, T, ignore_index=ignore_index)
    # negative ignore_index (the default included) is accepted, as in torch
    assert np.isfinite(numbaloss.cross_entropy(X, T, ignore_index=-1))


@pytest.mark.parametrize("bad", [1.5, "a", None, True])
def test_ignore_index_type(bad):
    with pytest.raises(TypeError, match="ignore_index must be an integer"):
        numbaloss.cross_entropy(X, Y, ignore_index=bad)


def test_zero_dim_input():
    with pytest.raises(ValueError, match="input must have at least 1 dimension"):
        numbaloss.cross_entropy(np.float64(1.0) * np.ones(()), np.array(0))


@pytest.mark.parametrize("name", list(LOSSES))
def test_grad_output_shape(name):
    args = _args(name)
    with pytest.raises(ValueError, match="grad_output must be a scalar for reduction='mean'"):
        LOSSES[name][0](*args, return_grad=True, grad_output=np.ones(3))
    with pytest.raises(ValueError, match=r"grad_output of shape \(3,\) does not broadcast to the loss's shape"):
        LOSSES[name][0](*args, reduction="none", return_grad=True, grad_output=np.ones(3))


@pytest.mark.parametrize("name", [n for n in LOSSES if "weight" in numbaloss.REGISTRY[n].params])
def test_weight_of_wrong_kind(name):
    with pytest.raises(TypeError, match="weight must be"):
        LOSSES[name][0](*_args(name), weight="heavy")


def test_errors_leave_inputs_untouched():
    x = X.copy()
    t = np.array([0, 1, 9, 3])
    with pytest.raises(IndexError):
        numbaloss.cross_entropy(x, t, return_grad=True)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(t, [0, 1, 9, 3])


@pytest.mark.parametrize("name", list(LOSSES))
def test_grad_output_without_return_grad(name):
    with pytest.raises(ValueError, match="grad_output is only used with return_grad=True"):
        LOSSES[name][0](*_args(name), grad_output=2.0)


# ------------------------------------------------------------------ row losses
@pytest.mark.parametrize("bad, tdtype", OUT_OF_BOUNDS)
def test_multi_margin_target_out_of_bounds(bad, tdtype):
    t = np.array([0, 1, bad, 3], tdtype)
    for reduction in ("mean", "sum", "none"):
        with pytest.raises(IndexError, match=rf"^Target {bad} is out of bounds\. \(at target index \(2,\); valid classes are 0\.\.4\)"):
            numbaloss.multi_margin_loss(X, t, reduction=reduction, return_grad=True)


@pytest.mark.parametrize("p", [0, 3, 1.5, "1", None, float("nan")])
def test_multi_margin_p(p):
    with pytest.raises(ValueError, match="only p == 1 and p == 2 supported"):
        numbaloss.multi_margin_loss(X, Y, p=p)


@pytest.mark.parametrize("x, t, w, message", [
    (X, Y[:3], None, "Expected target size [4], but got [3]"),
    (X, Y[:, None], None, "Expected target size [4], but got [4, 1]"),
    (X[0], Y[:2], None, "Expected target size [1], but got [2]"),
    (X[None], Y, None, "Expected non-empty vector or matrix with optional 0-dim batch size, but got: [1, 4, 5]"),
    (X[:, :0], Y, None, "Expected non-empty vector or matrix with optional 0-dim batch size, but got: [4, 0]"),
    (X, Y, np.ones(4), "inconsistent weight size, expected 5 but got [4]"),
    (X, Y, np.ones((1, 5)), "weight must be one-dimensional"),
])
def test_multi_margin_shapes(x, t, w, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        numbaloss.multi_margin_loss(x, t, weight=w)


def test_multi_margin_float_target():
    with pytest.raises(TypeError, match="target with class indices must have an integer dtype, got float64"):
        numbaloss.multi_margin_loss(X, Y.astype(np.float64))


@pytest.mark.parametrize("t, message", [
    (T.astype(bool), "target must be a numeric (not bool) array"),
    (T[:, :3], "does not broadcast with the input's shape (4, 5)"),
    (T[None], "has more dimensions than the input (4, 5)"),
])
def test_multilabel_soft_margin_target(t, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        numbaloss.multilabel_soft_margin_loss(P, t)


def test_multilabel_soft_margin_shapes():
    with pytest.raises(ValueError, match="needs an input with a class dimension"):
        numbaloss.multilabel_soft_margin_loss(np.ones(()), np.ones(()))
    with pytest.raises(ValueError, match=re.escape("weight of shape (2, 4, 5) is not broadcastable to the input's shape (4, 5)")):
        numbaloss.multilabel_soft_margin_loss(P, T, weight=np.ones((2, 4, 5)))


@pytest.mark.parametrize("a, b, y, message", [
    (P, T, np.ones((4, 1)), "0D or 1D target tensor expected, multi-target not supported"),
    (P[0], T[0], np.ones(4), "1D target tensor expects 2D input tensors, but found inputs with sizes [5] and [5]."),
    (P, T, np.array(1.0), "0D target tensor expects 1D input tensors, but found inputs with sizes [4, 5] and [4, 5]."),
    (P, T[0], np.ones(4), "1D target tensor expects 2D input tensors, but found inputs with sizes [4, 5] and [5]."),
    (P, T[:, :3], np.ones(4), "input1 of shape (4, 5) and input2 of shape (4, 3) do not broadcast together"),
    (P, T, np.ones(3), "target of shape (3,) is not broadcastable to the input's shape (4,)"),
    (P, T, np.ones(4, complex), "target must be a real numeric array of 1 / -1 labels"),
])
def test_cosine_embedding_shapes(a, b, y, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        numbaloss.cosine_embedding_loss(a, b, y)


@pytest.mark.parametrize("kwargs, shapes, message", [
    (dict(margin=0.0), None, "margin must be greater than 0, got 0.0"),
    (dict(margin=-1.0), None, "margin must be greater than 0, got -1.0"),
    (dict(p=0), None, "p must be a positive number (inf included), got 0"),
    (dict(p=-1.5), None, "p must be a positive number (inf included), got -1.5"),
    (dict(p="2"), None, "p must be a positive number"),
    ({}, ((4, 5), (5,), (4, 5)), "expected to have the same number of dimensions, but got: anchor 2D, positive 1D, and negative 2D inputs"),
    ({}, ((4, 5), (4, 3), (4, 5)), "anchor of shape (4, 5), positive of shape (4, 3), negative of shape (4, 5) do not broadcast together"),
    (dict(p=float("inf")), ((4, 0), (4, 0), (4, 0)), "the inf norm of an empty row is undefined"),
])
def test_triplet_margin_options_and_shapes(kwargs, shapes, message):
    a, p, n = (np.ones(s) for s in shapes) if shapes else (P, T, T + 0.5)
    with pytest.raises(ValueError, match=re.escape(message)):
        numbaloss.triplet_margin_loss(a, p, n, **kwargs)


@pytest.mark.parametrize("row, pos", [([3, -1, 7, 1], (1, 2)), ([-2, 0, 0, 1], (1, 0)), ([5, -1, 0, 1], (1, 0)),
                                      ([0, 1, 2, 3], None)])
def test_multilabel_margin_labels_out_of_range(row, pos):
    x = rng.standard_normal((2, 4))
    t = np.array([[0, -1, 0, 0], row])
    if pos is None:  # no -1 at all: every entry is a label
        assert np.isfinite(numbaloss.multilabel_margin_loss(x, t))
        return
    with pytest.raises(IndexError, match=re.escape(f"Target {row[pos[1]]} is out of bounds. (at target index {pos};")):
        numbaloss.multilabel_margin_loss(x, t, return_grad=True)


@pytest.mark.parametrize("x, t, message", [
    (X, Y, "inconsistent target size: [4] for input of size: [4, 5]"),
    (X[None], Y[None], "Expected non-empty vector or matrix with optional 0-dim batch size, but got: [1, 4, 5]"),
])
def test_multilabel_margin_shapes(x, t, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        numbaloss.multilabel_margin_loss(x, t)


def test_triplet_distance_function_kinds():
    from tests.cases import L1

    a, p, n = P, T, T + 0.5
    with pytest.raises(TypeError, match=re.escape("distance_function must be a Numba @njit function of two 1-d rows (decorate it with @numba.njit)")):
        numbaloss.triplet_margin_with_distance_loss(a, p, n, distance_function=lambda x, y: 0.0)
    with pytest.raises(TypeError, match="its gradient must be a Numba @njit function"):
        numbaloss.triplet_margin_with_distance_loss(a, p, n, distance_function=(L1[0], lambda x, y, gx, gy: None))
    with pytest.raises(NotImplementedError, match=re.escape("return_grad=True with a distance_function needs its gradient")):
        numbaloss.triplet_margin_with_distance_loss(a, p, n, distance_function=L1[0], return_grad=True)
    assert np.isfinite(numbaloss.triplet_margin_with_distance_loss(a, p, n, distance_function=L1[0]))  # values alone
    with pytest.raises(ValueError, match="margin must be greater than 0, got 0"):
        numbaloss.triplet_margin_with_distance_loss(a, p, n, margin=0)
