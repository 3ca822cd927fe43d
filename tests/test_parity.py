"""Values and gradients against torch 2.13 and the float64 references, across the option space."""

import numpy as np
import pytest

from numbaloss.core import jit
from tests.cases import DTYPES, all_cases, grad_output_for, loss_shape, make
from tests.conftest import LOSSES, assert_close, grad_args, needs_torch, run_torch, torch_error_scale

CASES = all_cases()
#: Losses whose torch 2.13 CPU kernel returns uninitialised memory for an empty batch with "sum" or
#: "mean" (numbaloss: 0 and NaN, as every other loss).
TORCH_EMPTY_GARBAGE = {"multi_margin_loss", "multilabel_margin_loss"}
IDS = ["-".join([c[0], "x".join(map(str, c[1])) or "scalar", c[2], c[3]]) for c in CASES]


@pytest.fixture(autouse=True)
def serial_kernels(monkeypatch):
    """Every case here runs the serial kernels, large shapes included.  A parallel kernel is a
    ``prange`` over the same compiled block function (or the same source, compiled twice), and each
    costs seconds of compile per signature: tests/test_determinism.py checks every loss's parallel
    kernel bitwise against its serial one instead, which carries these checks over to it."""
    monkeypatch.setattr(jit, "PARALLEL_MIN_WORK", 1 << 62)




@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
@needs_torch
def test_matches_torch(case, dtype):
    name, shape, option, reduction = case
    (x, t, kwargs), rng = make(name, shape, dtype, option)
    go = grad_output_for(reduction, loss_shape(name, x, t), rng)
    fn = LOSSES[name][0]
    for grad_output in (None, go):
        loss, grad = fn(x, t, reduction=reduction, return_grad=True, grad_output=grad_output, **kwargs)
        want_loss, want_grad = run_torch(name, x, t, dict(kwargs, reduction=reduction), grad_output)
        if name in TORCH_EMPTY_GARBAGE and x.size == 0 and reduction != "none":
            want_loss = 0.0 if reduction == "sum" else np.nan  # torch returns uninitialised memory here
        assert np.asarray(loss).dtype == dtype
        for g, arg in zip(grad if isinstance(grad, tuple) else (grad,), grad_args(name, x, t, kwargs)):
            assert g is None if isinstance(arg, float) else (g.dtype == dtype and g.shape == np.shape(arg))
        loss_scale, grad_scale = torch_error_scale(name, x, dict(kwargs, reduction=reduction), grad_output, t)
        assert_close(loss, want_loss, dtype, scale=loss_scale)
        assert_close(grad, want_grad, dtype, scale=grad_scale)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_reference(case, dtype):
    name, shape, option, reduction = case
    (x, t, kwargs), rng = make(name, shape, dtype, option)
    go = grad_output_for(reduction, loss_shape(name, x, t), rng)
    fn, ref = LOSSES[name][:2]
    loss, grad = fn(x, t, reduction=reduction, return_grad=True, grad_output=go, **kwargs)
    want_loss, want_grad = ref(x, t, reduction=reduction, grad_output=go, **kwargs)
    _, grad_scale = torch_error_scale(name, x, dict(kwargs, reduction=reduction), go, t, ours=True)
    assert_close(loss, want_loss, dtype)
    assert_close(grad, want_grad, dtype, scale=grad_scale)
    # the value alone (no gradient requested) is the same number
    assert_close(fn(x, t, reduction=reduction, **kwargs), loss, dtype, scale=0)
