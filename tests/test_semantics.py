"""Edge cases of torch semantics: -inf / NaN / extreme logits, dtypes, layouts, empty inputs, modules."""

import numpy as np
import pytest

import numbaloss
from tests import reference
from tests.cases import ROWS, row_case, third
from tests.conftest import LOSSES, TOL, assert_close, needs_torch, run_torch, torch_error_scale

INF = np.inf
NAN = np.nan
F32_F64 = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


def both(name, x, t, dtype, **kwargs):
    """numbaloss and torch on the same inputs; returns ((loss, grad), (torch_loss, torch_grad))."""
    ours = LOSSES[name][0](x, t, return_grad=True, **kwargs)
    return ours, run_torch(name, x, t, kwargs)


# ----------------------------------------------------------- masked / NaN logits
@needs_torch
@F32_F64
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_masked_logits(dtype, reduction, smoothing):
    x = np.array([[0.0, -INF, 1.0, 2.0], [-INF, 3.0, -INF, 0.5], [1.0, 2.0, 3.0, -INF]], dtype)
    t = np.array([0, 1, 2])
    (loss, grad), (tl, tg) = both("cross_entropy", x, t, dtype, reduction=reduction, label_smoothing=smoothing)
    assert_close(loss, tl, dtype)
    assert_close(grad, tg, dtype)
    assert np.isfinite(grad).all()
    if smoothing == 0.0:
        assert np.isfinite(loss).all()
    else:  # the smoothing mass lands on masked classes: torch gives inf
        assert np.isinf(loss).all()


@needs_torch
@F32_F64
def test_target_on_masked_class_is_inf(dtype):
    x = np.array([[0.0, -INF, 1.0]], dtype)
    (loss, grad), (tl, tg) = both("cross_entropy", x, np.array([1]), dtype, reduction="none")
    assert np.isposinf(loss[0]) and np.isposinf(tl[0])
    assert_close(grad, tg, dtype)


@needs_torch
@F32_F64
@pytest.mark.parametrize(
    "target", [np.array([[0.5, 0.0, 0.5]]), np.array([[0.5, 0.2, 0.3]])], ids=["zero-on-masked", "mass-on-masked"]
)
def test_probability_target_on_masked_class(dtype, target):
    x = np.array([[0.0, -INF, 1.0]], dtype)
    (loss, grad), (tl, tg) = both("cross_entropy", x, target.astype(dtype), dtype, reduction="none")
    assert_close(loss, tl, dtype)  # torch: 0 * -inf = nan; mass on a masked class = inf
    assert_close(grad, tg, dtype)


@needs_torch
@F32_F64
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_nan_logits_propagate(dtype, name):
    x = np.array([[NAN, 1.0, 2.0], [1.0, 2.0, 3.0], [0.5, NAN, 1.0], [-INF, -INF, -INF]], dtype)
    t = np.array([-100, 1, 0, 2])  # NaN in an ignored row, NaN in a kept row, an all-masked row
    for reduction in ("none", "sum", "mean"):
        (loss, grad), (tl, tg) = both(name, x, t, dtype, reduction=reduction)
        assert_close(loss, tl, dtype)
        assert_close(grad, tg, dtype)


@needs_torch
@F32_F64
def test_nan_in_binary_with_logits(dtype):
    x = np.array([NAN, 0.5, -2.0], dtype)
    t = np.array([1.0, NAN, 0.0], dtype)
    (loss, grad), (tl, tg) = both("binary_cross_entropy_with_logits", x, t, dtype, reduction="none")
    assert_close(loss, tl, dtype)
    assert_close(grad, tg, dtype)


# ----------------------------------------------------------------- extremes
@needs_torch
@F32_F64
@pytest.mark.parametrize("scale", [1e2, 1e4, 1e30])
def test_extreme_logits(dtype, scale):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((16, 9)) * scale).astype(dtype)
    t = rng.integers(0, 9, 16)
    for kwargs in ({}, {"label_smoothing": 0.2}):
        (loss, grad), (tl, tg) = both("cross_entropy", x, t, dtype, reduction="none", **kwargs)
        assert np.isfinite(loss).all()
        assert_close(loss, tl, dtype)
        assert_close(grad, tg, dtype)


@F32_F64
@pytest.mark.parametrize("C", [2, 10, 1000])
def test_large_offset_uniform_logits_give_log_c(dtype, C):
    x = np.full((3, C), 1e6, dtype)
    loss = numbaloss.cross_entropy(x, np.array([0, 1, C - 1]), label_smoothing=0.3)
    np.testing.assert_allclose(loss, np.log(C), rtol=TOL[np.dtype(dtype)]["rtol"])


@needs_torch
@F32_F64
@pytest.mark.parametrize("x0", [1e4, -1e4, 88.0, -88.0, 710.0, -745.0])
def test_binary_with_logits_is_stable(dtype, x0):
    x = np.array([x0, -x0], dtype)
    t = np.array([0.0, 1.0], dtype)
    pw = np.array([3.0, 0.5], dtype)
    (loss, grad), (tl, tg) = both("binary_cross_entropy_with_logits", x, t, dtype, reduction="none", pos_weight=pw)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    ls, gs = torch_error_scale("binary_cross_entropy_with_logits", x, {"pos_weight": pw, "reduction": "none"})
    assert_close(loss, tl, dtype, scale=ls)
    assert_close(grad, tg, dtype, scale=gs)
    want, want_grad = reference.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=pw)
    assert_close(loss, want, dtype)  # and accurate where torch's form cancels
    assert_close(grad, want_grad, dtype)


@needs_torch
@F32_F64
def test_bce_log_clamp_at_0_and_1(dtype):
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5], dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.3], dtype)
    (loss, grad), (tl, tg) = both("binary_cross_entropy", x, t, dtype, reduction="none")
    np.testing.assert_array_equal(loss[:4], [100.0, 100.0, 0.0, 0.0])
    assert np.isfinite(grad).all()
    assert_close(loss, tl, dtype)
    assert_close(grad, tg, dtype)


# ------------------------------------------------------------ empty / ignored
@F32_F64
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_all_ignored_mean_is_nan_with_zero_grad(dtype, name):
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(dtype)
    t = np.full(4, -100)
    loss, grad = LOSSES[name][0](x, t, return_grad=True)
    assert np.isnan(loss)
    np.testing.assert_array_equal(grad, 0)
    assert LOSSES[name][0](x, t, reduction="sum") == 0


@F32_F64
@pytest.mark.parametrize("name", list(LOSSES))
def test_empty_batch(dtype, name):
    x = np.zeros((0, 3), dtype)
    t = np.zeros(0, np.int64) if name in ("cross_entropy", "nll_loss") else np.zeros((0, 3), dtype)
    if name in ROWS:  # the table's maker: class indices (0,), labels (0, 3)...
        t = row_case(name, x.shape, dtype, "plain", np.random.default_rng(0))[1]
    rest = list(third(name, np.random.default_rng(0), x.shape, dtype).values())  # var, a label target
    fn = LOSSES[name][0]
    assert np.isnan(fn(x, t, *rest))
    assert fn(x, t, *rest, reduction="sum") == 0
    loss, grad = fn(x, t, *rest, reduction="none", return_grad=True)
    grads = grad if isinstance(grad, tuple) else (grad,)
    assert loss.shape == ((0,) if name in ROWS else t.shape) and loss.dtype == dtype
    assert all(g.shape == x.shape for g in grads)


@needs_torch
@F32_F64
def test_zero_total_weight_matches_torch(dtype):
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(dtype)
    t = np.array([0, 1, 2])
    for name in ("cross_entropy", "nll_loss"):
        (loss, grad), (tl, tg) = both(name, x, t, dtype, weight=np.zeros(4))
        assert np.isnan(loss)
        assert_close(grad, tg, dtype)  # torch: NaN at the targets (nll) or whole rows (ce)


# -------------------------------------------------------------- dtypes, layouts
INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("tdtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss"])
def test_every_integer_target_dtype(tdtype, name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 5, 2))
    t = rng.integers(0, 5, (6, 2))
    fn, ref = LOSSES[name][:2]
    loss, grad = fn(x, t.astype(tdtype), return_grad=True, ignore_index=3)
    want, want_grad = ref(x, t, ignore_index=3)
    assert_close(loss, want, np.float64)
    assert_close(grad, want_grad, np.float64)


def test_ignore_index_outside_target_dtype_range():
    x = np.random.default_rng(0).standard_normal((3, 4))
    t = np.array([0, 1, 2], np.uint8)  # -100 cannot occur in uint8: nothing is ignored
    assert_close(numbaloss.cross_entropy(x, t), reference.cross_entropy(x, t)[0], np.float64)


@pytest.mark.parametrize("name", list(LOSSES))
def test_layouts_and_inputs_untouched(name):
    rng = np.random.default_rng(3)
    fn, ref = LOSSES[name][:2]
    base = rng.standard_normal((8, 10, 6))
    if name == "binary_cross_entropy":
        base = rng.uniform(0, 1, base.shape)
    if name in ("cross_entropy", "nll_loss"):
        t = rng.integers(0, 5, (8, 3))
        t_layouts = [t, np.asfortranarray(t), np.repeat(t, 2, axis=1)[:, ::2]]
    else:
        t = rng.uniform(0, 1, (8, 5, 3))
        t_layouts = [t, np.asfortranarray(t), np.repeat(t, 2, axis=1)[:, ::2]]
    x = base[:, ::2, ::2]  # non-contiguous (8, 5, 3)
    # a third data array (var, margin_ranking's target) in the target's layouts
    r = rng.uniform(0.5, 1.5, (8, 10, 3))[:, ::2] if len(numbaloss.REGISTRY[name].arrays) > 2 else None
    if name == "cosine_embedding_loss":  # 2-d inputs, one 1 / -1 label per row
        x, t, t_layouts = x[..., 1], t[..., 1], [a[..., 1] for a in t_layouts]
        r = np.sign(r[:, ::2, 0] - 1.0)[:, 0]  # strided
    if name == "multilabel_margin_loss":  # 2-d input, label rows of its shape
        t = np.array([[0, 2, -1, 9, 9][:5]] * 8)
        t[:, 3:] = rng.integers(-1, 5, (8, 2))
        x, t_layouts = x[..., 1], [t, np.asfortranarray(t), np.repeat(t, 2, axis=1)[:, ::2]]
    if name == "multi_margin_loss":  # 2-d input, one class per row
        t = rng.integers(0, 5, (8, 2))
        x, t, t_layouts = x[..., 1], t[:, 0], [t[:, 0], np.ascontiguousarray(t[:, 0])]
    rest = [] if r is None else [r]
    want, want_grad = ref(x, t, *rest)
    for xs in (x, np.asfortranarray(x), np.ascontiguousarray(x)):
        for ts in t_layouts:
            for rs in ([rest] if r is None else [[r], [np.asfortranarray(r)], [np.ascontiguousarray(r)]]):
                xs_copy, ts_copy, rs_copy = xs.copy(), ts.copy(), [a.copy() for a in rs]
                xs.flags.writeable = False  # read-only works too
                loss, grad = fn(xs, ts, *rs, return_grad=True)
                assert_close(loss, want, np.float64)
                assert_close(grad, want_grad, np.float64)
                np.testing.assert_array_equal(xs, xs_copy)
                np.testing.assert_array_equal(ts, ts_copy)
                for a, c in zip(rs, rs_copy):
                    np.testing.assert_array_equal(a, c)


@F32_F64
def test_weight_dtype_is_cast_and_untouched(dtype):
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(dtype)
    w = np.array([1, 2, 3, 4])  # integer weights are accepted
    w_copy = w.copy()
    loss = numbaloss.cross_entropy(x, np.array([0, 1, 2, 3, 0]), weight=w)
    assert np.asarray(loss).dtype == dtype
    np.testing.assert_array_equal(w, w_copy)


def test_result_types():
    x = np.zeros((2, 3), np.float32)
    t = np.array([0, 1])
    assert isinstance(numbaloss.cross_entropy(x, t), np.float32)
    assert isinstance(numbaloss.cross_entropy(x.astype(np.float64), t, reduction="sum"), np.float64)
    out = numbaloss.cross_entropy(x, t, reduction="none")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2,)


def test_unbatched_input():
    x = np.array([1.0, 2.0, 0.5])
    loss, grad = numbaloss.cross_entropy(x, np.array(1), return_grad=True, reduction="none")
    assert loss.shape == () and grad.shape == (3,)
    want, want_grad = reference.cross_entropy(x, np.array(1), reduction="none")
    assert_close(loss, want, np.float64)
    assert_close(grad, want_grad, np.float64)


def test_reference_matches_hand_computed_values():
    # log-softmax of [2, 0.5, -1] by hand: lse = 2 + log(1 + e^-1.5 + e^-3)
    lse = 2 + np.log(1 + np.exp(-1.5) + np.exp(-3))
    loss, grad = reference.cross_entropy(np.array([[2.0, 0.5, -1.0]]), np.array([0]))
    assert loss == pytest.approx(lse - 2)
    assert grad[0, 0] == pytest.approx(np.exp(2 - lse) - 1)
    assert reference.nll_loss(np.log([[0.7, 0.2, 0.1]]), np.array([1]))[0] == pytest.approx(-np.log(0.2))
    assert reference.binary_cross_entropy(np.array([0.9]), np.array([1.0]))[0] == pytest.approx(-np.log(0.9))
    assert reference.binary_cross_entropy(np.array([0.0]), np.array([1.0]))[0] == pytest.approx(100.0)
    x = np.array([3.0])
    assert reference.binary_cross_entropy_with_logits(x, np.array([1.0]), pos_weight=np.array([2.0]))[0] == (
        pytest.approx(2 * np.log1p(np.exp(-3.0)))
    )
    # one-hot smoothing by hand: C = 2, eps = 0.2, t' = [0.9, 0.1]
    lp = np.log(np.exp([1.0, 0.0]) / np.exp([1.0, 0.0]).sum())
    got = reference.cross_entropy(np.array([[1.0, 0.0]]), np.array([0]), label_smoothing=0.2)[0]
    assert got == pytest.approx(-(0.9 * lp[0] + 0.1 * lp[1]))


# -------------------------------------------------------------------- modules
@pytest.mark.parametrize(
    "cls, fn, kwargs",
    [
        (numbaloss.CrossEntropyLoss, numbaloss.cross_entropy, dict(weight=np.array([1.0, 2.0, 0.5]), label_smoothing=0.1, ignore_index=2)),
        (numbaloss.NLLLoss, numbaloss.nll_loss, dict(reduction="sum", ignore_index=1)),
        (numbaloss.BCELoss, numbaloss.binary_cross_entropy, dict(reduction="none")),
        (numbaloss.BCEWithLogitsLoss, numbaloss.binary_cross_entropy_with_logits, dict(pos_weight=np.array([2.0, 1.0, 0.5]))),
    ],
)
def test_modules_match_functions(cls, fn, kwargs):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 0.95, (4, 3))
    t = rng.integers(0, 3, 4) if cls in (numbaloss.CrossEntropyLoss, numbaloss.NLLLoss) else rng.uniform(0, 1, (4, 3))
    loss_fn = cls(**kwargs)
    got, grad = loss_fn(x, t, return_grad=True, grad_output=0.5 if kwargs.get("reduction") != "none" else None)
    want, want_grad = fn(x, t, **kwargs, return_grad=True, grad_output=0.5 if kwargs.get("reduction") != "none" else None)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(grad, want_grad)
    assert cls.__name__ in repr(loss_fn)


# ---------------------------------------------------- rows longer than one chunk
@needs_torch
@F32_F64
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_multi_chunk_rows_with_masks_and_rising_max(dtype, smoothing):
    """Rows of several streaming chunks: -inf leading chunks, the max rising late, NaN-only chunks."""
    from numbaloss.losses.classification.rows import ROW_CHUNK as CHUNK

    rng = np.random.default_rng(5)
    C = 2 * CHUNK + 123
    x = rng.standard_normal((6, C)).astype(dtype)
    x[0, :CHUNK] = -INF  # first chunk fully masked
    x[1, :] = np.linspace(-50, 50, C).astype(dtype)  # max rises in every chunk
    x[2, CHUNK : 2 * CHUNK] = NAN  # a NaN-only chunk
    x[3, :CHUNK] = NAN  # NaN-only first chunk
    x[3, CHUNK:] = -INF
    x[4, :] = -INF  # fully masked row
    x[5, -1] = 80.0  # max in the tail chunk
    t = np.array([CHUNK + 5, C - 1, 3, C - 2, 0, 7])
    for reduction in ("none", "sum"):
        (loss, grad), (tl, tg) = both("cross_entropy", x, t, dtype, reduction=reduction, label_smoothing=smoothing)
        assert_close(loss, tl, dtype)
        assert_close(grad, tg, dtype)
    probs = rng.random((6, C)).astype(dtype)
    probs /= probs.sum(axis=1, keepdims=True)
    xf = rng.standard_normal((6, C)).astype(dtype) * 5
    xf[:, :CHUNK] -= 30  # later chunks raise the max
    (loss, grad), (tl, tg) = both("cross_entropy", xf, probs, dtype, reduction="none", label_smoothing=smoothing)
    assert_close(loss, tl, dtype)
    assert_close(grad, tg, dtype)
