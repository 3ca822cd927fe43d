"""ctc_loss: torch parity (values, and gradients through log_softmax), the float64 reference, a
brute-force enumeration of every alignment, finite differences, edge cases and bad input."""

import numpy as np
import pytest

import numbaloss
from tests import reference
from tests.conftest import TOL, assert_close, central_differences, needs_torch

REDUCTIONS = ("none", "sum", "mean")


def _log_softmax(x):
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def batch(rng, T=12, N=5, C=5, S=4, blank=0, dtype=np.float64, layout="padded", normalised=True):
    """A ragged batch: random lengths (one impossible alignment, one target length 0, repeated labels),
    the logits too (for torch's chain)."""
    x = rng.standard_normal((T, N, C)) * 2
    lp = (_log_softmax(x) if normalised else x - 1.0).astype(dtype)
    labels = [c for c in range(C) if c != blank]
    tl = rng.integers(1, S + 1, N)
    tl[0] = 0
    tg = rng.choice(labels, (N, S))
    tg[1, :2] = tg[1, 0]  # a repeated label (needs a blank between)
    tl[1] = max(tl[1], 2)
    il = rng.integers(2 * S, T + 1, N)
    il[2], tl[2] = 2, S  # too short for S labels: an impossible alignment
    il[-1] = T
    if layout == "concatenated":
        tg = np.concatenate([tg[n, : tl[n]] for n in range(N)])
    return x, lp, tg, il, tl


def torch_ctc(x, lp, tg, il, tl, blank, reduction, zero_infinity, grad_output=None):
    """torch's loss and its gradient with respect to the logits ``x`` (through log_softmax, where its
    convention and the exact gradient agree), from ``lp``'s dtype."""
    import torch

    xt = torch.tensor(x.astype(lp.dtype), requires_grad=True)
    loss = torch.nn.functional.ctc_loss(xt.log_softmax(-1), torch.tensor(tg), torch.tensor(il), torch.tensor(tl),
                                        blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    go = torch.tensor(1.0 if grad_output is None else grad_output, dtype=xt.dtype)
    (loss * go).sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def logit_grad(g, lp):
    """The gradient with respect to the logits from one with respect to log_softmax's output."""
    lp = lp.astype(np.float64)
    return g - np.exp(lp) * g.sum(-1, keepdims=True)


def torch_grad_tolerance(dtype, T):
    """torch's float32 recursion loses precision with the log-likelihood's magnitude (it grows with
    T): its gradient is off by up to about T * 1e-6 of the largest entry."""
    return 1e-10 if dtype == np.float64 else 2e-6 * T


@needs_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
@pytest.mark.parametrize("zero_infinity", [False, True], ids=["inf", "zero_inf"])
@pytest.mark.parametrize("blank", [0, 4])
def test_matches_torch(dtype, layout, zero_infinity, blank):
    rng = np.random.default_rng(blank + 7 * zero_infinity)
    x, lp, tg, il, tl = batch(rng, blank=blank, dtype=dtype, layout=layout)
    for reduction in REDUCTIONS:
        go = rng.uniform(0.5, 2, 5) if reduction == "none" else 1.3
        loss, g = numbaloss.ctc_loss(lp, tg, il, tl, blank=blank, reduction=reduction, zero_infinity=zero_infinity,
                                     return_grad=True, grad_output=go)
        want, want_g = torch_ctc(x, lp, tg, il, tl, blank, reduction, zero_infinity, go)
        assert np.asarray(loss).dtype == dtype and g.dtype == dtype and g.shape == lp.shape
        assert_close(loss, want, dtype)
        ours = logit_grad(g.astype(np.float64), lp)
        finite = np.isfinite(want_g)
        assert np.array_equal(finite, np.isfinite(ours))  # the impossible sample's NaN rows
        scale = np.abs(want_g[finite]).max()
        np.testing.assert_allclose(ours[finite], want_g[finite], rtol=TOL[np.dtype(dtype)]["rtol"],
                                   atol=torch_grad_tolerance(dtype, lp.shape[0]) * scale)


@needs_torch
def test_torch_convention_is_ours_plus_exp_log_probs():
    """The README's rule: torch's gradient is ours + w[n] exp(log_probs) where t < input_length, w[n]
    the sample's weight in the reduction, whatever ``log_probs`` holds (here un-normalised)."""
    import torch

    rng = np.random.default_rng(3)
    _, lp, tg, il, tl = batch(rng, normalised=False)
    il[2] = 12  # every alignment possible (torch's NaN rows aside)
    inside = (np.arange(lp.shape[0])[:, None] < il[None, :])[..., None]
    N = lp.shape[1]
    for reduction, go, w in (("sum", 1.0, np.ones(N)), ("mean", 0.6, 0.6 / (N * np.maximum(tl, 1))),
                             ("none", np.linspace(-1, 2, N), np.linspace(-1, 2, N))):
        lt = torch.tensor(lp, requires_grad=True)
        loss = torch.nn.functional.ctc_loss(lt, torch.tensor(tg), torch.tensor(il), torch.tensor(tl), reduction=reduction)
        (loss * torch.tensor(go, dtype=torch.float64)).sum().backward()
        _, g = numbaloss.ctc_loss(lp, tg, il, tl, reduction=reduction, return_grad=True, grad_output=go)
        np.testing.assert_allclose(g + np.where(inside, w[None, :, None] * np.exp(lp), 0.0), lt.grad.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_matches_reference_on_unnormalised_log_probs(dtype, layout):
    rng = np.random.default_rng(5)
    _, lp, tg, il, tl = batch(rng, T=30, N=6, C=7, S=9, dtype=dtype, layout=layout, normalised=False)
    for reduction in REDUCTIONS:
        for zero_infinity in (False, True):
            go = rng.uniform(-2, 2, 6) if reduction == "none" else -0.7
            kw = dict(reduction=reduction, zero_infinity=zero_infinity)
            loss, g = numbaloss.ctc_loss(lp, tg, il, tl, return_grad=True, grad_output=go, **kw)
            want, want_g = reference.ctc_loss(lp, tg, il, tl, grad_output=go, **kw)
            assert_close(loss, want, dtype)
            assert_close(g, want_g, dtype)
            assert_close(numbaloss.ctc_loss(lp, tg, il, tl, **kw), loss, dtype, scale=0)  # the value alone


@pytest.mark.parametrize("seed", range(6))
def test_matches_every_alignment_enumerated(seed):
    """Tiny cases (T <= 6, C <= 4) against the sum over all C**T paths, in float64."""
    rng = np.random.default_rng(seed)
    T, C = int(rng.integers(1, 7)), int(rng.integers(2, 5))
    blank = int(rng.integers(0, C))
    labels = [c for c in range(C) if c != blank]
    N = 3
    tl = rng.integers(0, min(4, T) + 1, N)
    tg = rng.choice(labels, (N, 4))
    il = rng.integers(0, T + 1, N)
    lp = rng.standard_normal((T, N, C)) - 1.0  # un-normalised: the gradient must still be exact
    loss, g = numbaloss.ctc_loss(lp, tg, il, tl, blank=blank, reduction="none", return_grad=True)
    want, want_g = reference.ctc_loss(lp, tg, il, tl, blank=blank, reduction="none", one=reference.ctc_brute_force)
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    np.testing.assert_allclose(g, want_g, rtol=1e-10, atol=1e-14)


def test_random_small_cases_match_reference():
    """Random tiny batches against the float64 reference: every length (0 included) and blank, masked
    (-inf) log-probabilities, both zero_infinity settings; the state windows' edges all get hit."""
    rng = np.random.default_rng(123)
    for it in range(60):
        T, N, C, S = (int(rng.integers(lo, hi)) for lo, hi in ((0, 13), (1, 5), (2, 5), (0, 6)))
        blank = int(rng.integers(0, C))
        tg = rng.choice([c for c in range(C) if c != blank], (N, S))
        tl, il = rng.integers(0, S + 1, N), rng.integers(0, T + 1, N)
        lp = rng.standard_normal((T, N, C)) * 2 - 1
        lp[rng.random(lp.shape) < 0.1] = -np.inf  # masked classes: no path through them, gradient 0
        kw = dict(blank=blank, reduction=REDUCTIONS[it % 3], zero_infinity=bool(it % 2))
        loss, g = numbaloss.ctc_loss(lp, tg, il, tl, return_grad=True, **kw)
        want, want_g = reference.ctc_loss(lp, tg, il, tl, **kw)
        np.testing.assert_allclose(loss, want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(g, want_g, rtol=1e-9, atol=1e-12)
        assert not np.isnan(g).any() or np.isinf(want).any() or np.isnan(want).any()


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_finite_differences(reduction):
    rng = np.random.default_rng(11)
    _, lp, tg, il, tl = batch(rng, T=7, N=3, C=4, S=2, normalised=False)
    il[2] = 7  # every alignment possible
    go = rng.uniform(0.5, 2, 3) if reduction == "none" else 1.7
    _, g = numbaloss.ctc_loss(lp, tg, il, tl, reduction=reduction, return_grad=True, grad_output=go)
    fd = central_differences(lambda a: np.sum(go * numbaloss.ctc_loss(a, tg, il, tl, reduction=reduction)), lp)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)


def test_edge_cases_as_torch():
    """Impossible alignments, target length 0, input length 0, unbatched inputs, every length type."""
    rng = np.random.default_rng(2)
    lp = _log_softmax(rng.standard_normal((6, 3, 4)))
    tg = np.array([[1, 2, 2], [1, 1, 3], [3, 3, 3]])
    loss, g = numbaloss.ctc_loss(lp, tg, [6, 2, 0], (3, 2, 0), reduction="none", return_grad=True)
    assert np.isfinite(loss[0]) and loss[1] == np.inf and loss[2] == 0.0  # "1 1" needs 3 steps (1, blank, 1)
    assert np.isnan(g[:2, 1]).all() and (g[2:, 1] == 0).all() and (g[:, 2] == 0).all()
    assert np.isfinite(numbaloss.ctc_loss(lp, tg, [6, 3, 0], (3, 2, 0), reduction="none")).all()
    loss, g = numbaloss.ctc_loss(lp, tg, [6, 2, 0], (3, 2, 0), reduction="none", zero_infinity=True, return_grad=True)
    assert loss[1] == 0.0 and (g[:, 1] == 0).all()
    assert numbaloss.ctc_loss(lp, tg, [6, 2, 0], [3, 2, 0], reduction="mean") == np.inf
    # input length 0 with a label: inf; unbatched: a 0-d loss; the lengths as ints, 0-d or 1-element arrays
    assert numbaloss.ctc_loss(lp, tg, [0, 3, 0], [1, 1, 0], reduction="none")[0] == np.inf
    one = numbaloss.ctc_loss(lp[:, 0], tg[0], 6, 3, reduction="none")
    assert np.shape(one) == () and one == numbaloss.ctc_loss(lp, tg, [6, 3, 0], [3, 2, 0], reduction="none")[0]
    for il, tl, t in ((np.array(6), np.array([3]), tg[:1]), ([6], (3,), tg[0].astype(np.int8))):
        assert numbaloss.ctc_loss(lp[:, 0], t, il, tl, reduction="none") == one
    # padding after the target length is never read (a value no class has)
    padded = tg.copy()
    padded[1, 2] = -5
    assert np.array_equal(numbaloss.ctc_loss(lp, padded, [6, 3, 0], [3, 2, 0], reduction="none"),
                          numbaloss.ctc_loss(lp, tg, [6, 3, 0], [3, 2, 0], reduction="none"))


@needs_torch
def test_nan_and_inf_propagate_as_in_torch():
    """A NaN or +inf log-probability reaches the loss and the gradient exactly where torch's full
    recursions carry it (states outside the windows this kernel computes included): not from a
    state the first step never enters, nor past the input length; torch's own ``exp(lp)`` term
    aside (compared in its convention)."""
    import torch

    rng = np.random.default_rng(4)
    lp = _log_softmax(rng.standard_normal((8, 1, 5)))
    tg = np.array([[1, 2, 3]])
    for t, c in ((1, 3), (0, 3), (0, 1), (3, 4), (3, 2), (7, 0), (6, 3), (7, 1), (6, 1)):
        for value in (np.nan, np.inf):
            bad = lp.copy()
            bad[t, 0, c] = value
            for il in (8, 6):
                loss, g = numbaloss.ctc_loss(bad, tg, [il], [3], reduction="none", return_grad=True)
                lt = torch.tensor(bad, requires_grad=True)
                want = torch.nn.functional.ctc_loss(lt, torch.tensor(tg), [il], [3], reduction="none")
                want.sum().backward()
                np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-12, err_msg=str((t, c, value, il)))
                with np.errstate(invalid="ignore", over="ignore"):
                    theirs = g + np.where(np.arange(8)[:, None, None] < il, np.exp(bad), 0.0)
                assert np.array_equal(np.isnan(theirs), np.isnan(lt.grad.numpy())), (t, c, value, il)


def test_float32_long_sequences_stay_accurate():
    """float32 inputs: the recursion's log-add correction is float32, its sums float64; the loss and
    gradient stay within a few float32 ulps of the float64 computation (torch's drift far more)."""
    rng = np.random.default_rng(6)
    lp = _log_softmax(rng.standard_normal((400, 2, 20)) * 3)
    tg = rng.integers(1, 20, (2, 120))
    l64, g64 = numbaloss.ctc_loss(lp, tg, [400, 390], [120, 100], reduction="none", return_grad=True)
    l32, g32 = numbaloss.ctc_loss(lp.astype(np.float32), tg, [400, 390], [120, 100], reduction="none", return_grad=True)
    np.testing.assert_allclose(l32, l64, rtol=2e-7)
    np.testing.assert_allclose(g32, g64, rtol=0, atol=5e-6 * np.abs(g64).max())


def test_inputs_unchanged_and_layouts_agree():
    rng = np.random.default_rng(8)
    _, lp, tg, il, tl = batch(rng)
    wide = np.zeros((lp.shape[0], lp.shape[1], 2 * lp.shape[2]))
    wide[..., ::2] = lp
    strided = wide[..., ::2]  # non-contiguous
    copies = [a.copy() for a in (lp, tg, il, tl)]
    want = numbaloss.ctc_loss(lp, tg, il, tl, return_grad=True, reduction="none")
    got = numbaloss.ctc_loss(strided, tg.astype(np.uint8), list(il), tuple(tl), return_grad=True, reduction="none")
    assert all(np.array_equal(a, b) for a, b in zip(copies, (lp, tg, il, tl)))
    assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1], equal_nan=True)


def test_empty_batch():
    lp = np.zeros((5, 0, 4))
    loss, g = numbaloss.ctc_loss(lp, np.zeros((0, 2), np.int64), [], [], reduction="none", return_grad=True)
    assert loss.shape == (0,) and g.shape == lp.shape
    assert numbaloss.ctc_loss(lp, np.zeros((0, 2), np.int64), [], [], reduction="sum") == 0.0
    assert np.isnan(numbaloss.ctc_loss(lp, np.zeros((0, 2), np.int64), [], [], reduction="mean"))
    # no time steps (torch raises): length 0 with no label is a certain empty alignment, with one impossible
    loss, g = numbaloss.ctc_loss(np.zeros((0, 2, 3)), np.ones((2, 1), np.int64), [0, 0], [0, 1], reduction="none",
                                 return_grad=True)
    assert loss.tolist() == [0.0, np.inf] and g.shape == (0, 2, 3)


def test_module_class():
    rng = np.random.default_rng(9)
    _, lp, tg, il, tl = batch(rng)
    loss = numbaloss.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    assert repr(loss) == "CTCLoss(blank=0, reduction='sum', zero_infinity=True)"
    assert loss(lp, tg, il, tl) == numbaloss.ctc_loss(lp, tg, il, tl, reduction="sum", zero_infinity=True)


LP = np.log(np.full((6, 2, 4), 0.25))
TG = np.array([[1, 2, 3], [1, 1, 0]])


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((LP, TG, [6, 5], [3, 2]), {"blank": 4}, ValueError, r"blank must be in label range \[0, 4\), got 4"),
    ((LP, TG, [6, 5], [3, 2]), {"blank": -1}, ValueError, "blank must be in label range"),
    ((LP, np.array([[1, 2, 3], [1, 4, 0]]), [6, 5], [3, 2]), {}, IndexError, r"target label 4 .*index \(1, 1\)"),
    ((LP, np.array([[1, 2, 3], [-1, 1, 0]]), [6, 5], [3, 2]), {}, IndexError, r"target label -1 .*index \(1, 0\)"),
    ((LP, np.array([[1, 0, 3], [1, 1, 0]]), [6, 5], [3, 2]), {}, ValueError, r"label 0 at targets index \(0, 1\) equals blank"),
    ((LP, np.array([1, 2, 3, 1, 9]), [6, 5], [3, 2]), {}, IndexError, r"target label 9 .*index \(4,\)"),
    ((LP, TG, [7, 5], [3, 2]), {}, ValueError, "input_lengths must be at most .* T = 6, got 7 at position 0"),
    ((LP, TG, [6, -1], [3, 2]), {}, ValueError, "input_lengths must be non-negative, got -1 at position 1"),
    ((LP, TG, [6, 5], [3, 4]), {}, ValueError, "target_lengths must be at most .* S = 3, got 4 at position 1"),
    ((LP, TG, [6, 5], [3, -2]), {}, ValueError, "target_lengths must be non-negative"),
    ((LP, np.array([1, 2, 3, 1]), [6, 5], [3, 2]), {}, ValueError, r"sum\(target_lengths\) = 5 labels, got 4"),
    ((LP, TG, [6, 5, 4], [3, 2]), {}, ValueError, "input_lengths must have one entry per sample: expected 2"),
    ((LP, TG, [6, 5], [3]), {}, ValueError, "target_lengths must have one entry per sample"),
    ((LP, TG[:1], [6, 5], [3, 2]), {}, ValueError, r"targets must be padded \(N, S\) = \(2, S\)"),
    ((LP, TG[None], [6, 5], [3, 2]), {}, ValueError, "targets must be padded"),
    ((LP[:, 0], TG, [6], [3]), {}, ValueError, r"targets must be padded \(N, S\) = \(1, S\)"),
    ((LP[:, 0], TG[0], [6, 5], [3, 2]), {}, ValueError, "expected 1 value, got 2 .*unbatched"),
    ((LP[None], TG, [6, 5], [3, 2]), {}, ValueError, r"log_probs must be \(T, N, C\) or unbatched \(T, C\)"),
    ((LP, TG.astype(np.float64), [6, 5], [3, 2]), {}, TypeError, "targets must hold integer class labels"),
    ((LP, TG.astype(bool), [6, 5], [3, 2]), {}, TypeError, "targets must hold integer class labels"),
    ((LP, TG, [6.0, 5.0], [3, 2]), {}, TypeError, "input_lengths must be integral"),
    ((LP, TG, [6, 5], np.array([3.0, 2.0])), {}, TypeError, "target_lengths must be integral"),
    ((LP, TG, [True, 5], [3, 2]), {}, TypeError, "input_lengths must hold integers"),
    ((LP.astype(np.float16), TG, [6, 5], [3, 2]), {}, TypeError, "log_probs must be float32 or float64"),
    ((LP.astype(np.int64), TG, [6, 5], [3, 2]), {}, TypeError, "log_probs must be float32 or float64"),
    ((LP, TG, [6, 5], [3, 2]), {"reduction": "batchmean"}, ValueError, "not a valid value for reduction"),
    ((LP, TG, [6, 5], [3, 2]), {"reduction": "sum", "return_grad": True, "grad_output": np.ones(2)}, ValueError,
     "grad_output must be a scalar"),
    (("lp", TG, [6, 5], [3, 2]), {}, TypeError, "log_probs must be an array"),
])
def test_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        numbaloss.ctc_loss(*args, **kwargs)


# ------------------------------------------------------------------ CUDA (the simulator in CI: tiny shapes)
def _device_batch(dtype):
    rng = np.random.default_rng(12)
    lp = _log_softmax(rng.standard_normal((6, 3, 4))).astype(dtype)
    return lp, np.array([[1, 2, 2], [1, 1, 3], [3, 0, 0]]), np.array([6, 2, 5]), np.array([3, 2, 1])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator's NumPy scalars warn at inf - inf
@pytest.mark.parametrize("dtype, reduction", [(np.float64, "none"), (np.float32, "mean")])
def test_on_device_matches_cpu(dtype, reduction):
    """Values and gradients (an impossible alignment's NaN rows, a repeated label, t past the input
    length), device or host targets and lengths, a device grad_output; results stay device arrays."""
    from numba import cuda

    lp, tg, il, tl = _device_batch(dtype)
    go = np.array([0.5, 2.0, -1.0]) if reduction == "none" else 1.5
    want = numbaloss.ctc_loss(lp, tg, il, tl, reduction=reduction, return_grad=True, grad_output=go)
    dev = (cuda.to_device(tg), il, cuda.to_device(tl)) if dtype == np.float64 else (tg, cuda.to_device(il), tl)
    got = numbaloss.ctc_loss(cuda.to_device(lp), *dev, reduction=reduction, return_grad=True,
                             grad_output=cuda.to_device(go) if reduction == "none" else go)
    assert all(hasattr(a, "copy_to_host") for a in got)
    assert_close(got[0].copy_to_host(), want[0], dtype)
    assert_close(got[1].copy_to_host(), want[1], dtype)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_on_device_concatenated_targets_and_bad_labels():
    from numba import cuda

    lp, tg, il, tl = _device_batch(np.float64)
    flat = np.concatenate([tg[n, : tl[n]] for n in range(3)]).astype(np.int32)
    got = numbaloss.ctc_loss(cuda.to_device(lp), cuda.to_device(flat), il, tl, reduction="sum", blank=0)
    assert_close(got.copy_to_host(), numbaloss.ctc_loss(lp, tg, il, tl, reduction="sum"), np.float64)
    # bad labels on the device: the error buffer, before any log-probability is read through them
    for bad, error, match in ((np.array([1, 2, 2, 1, 1, 4]), IndexError, r"label 4 .*index \(5,\)"),
                              (np.array([1, 2, 0, 1, 1, 3]), ValueError, r"label 0 at targets index \(2,\) equals blank")):
        with pytest.raises(error, match=match):
            numbaloss.ctc_loss(cuda.to_device(lp), cuda.to_device(bad), il, tl)
