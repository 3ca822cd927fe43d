"""Finite-difference gradient checks in float64, and the accuracy of float32 reductions."""

import numpy as np
import pytest

import numbaloss
from tests.cases import ELEMENTWISE, L1, ROWS, third
from tests.conftest import LOSSES, central_differences

FD_CASES = {
    "cross_entropy": [
        dict(),
        dict(weight=np.array([0.5, 2.0, 1.0, 1.5]), label_smoothing=0.2, ignore_index=1),
        dict(probabilities=True, weight=np.array([0.5, 2.0, 1.0, 1.5]), label_smoothing=0.1),
    ],
    "nll_loss": [dict(weight=np.array([0.5, 2.0, 1.0, 1.5]), ignore_index=2)],
    "binary_cross_entropy": [dict(weight=np.array([0.5, 2.0, 1.0, 1.5]))],
    "binary_cross_entropy_with_logits": [dict(weight=np.array([0.5, 2.0, 1.0, 1.5]), pos_weight=np.array([3.0, 1.0, 0.5, 2.0]))],
}
FD_CASES.update({
    "l1_loss": [dict(), dict(weight="full")],
    "mse_loss": [dict(weight="full")],
    "smooth_l1_loss": [dict(beta=0.7), dict(beta=0.0)],
    "huber_loss": [dict(delta=0.6, weight="full")],
    "soft_margin_loss": [dict()],
    "kl_div": [dict(), dict(log_target=True)],
    "poisson_nll_loss": [dict(full=True), dict(log_input=False, eps=1e-3)],
    "hinge_embedding_loss": [dict(margin=0.5)],
    "margin_ranking_loss": [dict(margin=0.3)],
    "gaussian_nll_loss": [dict(var="full"), dict(var="row", full=True)],  # var of the input's shape; one per row
    "multilabel_soft_margin_loss": [dict(), dict(weight="full")],
    "cosine_embedding_loss": [dict(margin=-0.3), dict(margin=0.2)],
    "multi_margin_loss": [dict(weight=np.array([0.5, 2.0, 1.0, 1.5])), dict(p=2, margin=0.7)],
    "multilabel_margin_loss": [dict()],
    "triplet_margin_with_distance_loss": [dict(swap=True), dict(distance_function=L1, swap=True, margin=2.0)],
    "triplet_margin_loss": [dict(), dict(p=1.5, swap=True, margin=2.0), dict(p=3, margin=2.0)],
})
FD_IDS = [(name, i) for name, cases in FD_CASES.items() for i in range(len(cases))]


def _inputs(name, probabilities, rng):
    shape = (3, 4, 2) if name in ("cross_entropy", "nll_loss") else (5, 4)
    if name in ELEMENTWISE or name in ROWS:  # the table's makers; rates (not log-rates) for log_input=False
        make_x, make_t, _ = ELEMENTWISE[name] if name in ELEMENTWISE else ROWS[name]
        x = rng.uniform(0.2, 3.0, shape) if probabilities == "rates" else make_x(rng, shape)
        return x, make_t(rng, shape)
    if name == "binary_cross_entropy":
        return rng.uniform(0.1, 0.9, shape), rng.uniform(0, 1, shape)
    x = rng.standard_normal(shape) * 2
    if probabilities:
        t = rng.random(shape)
        return x, t / t.sum(axis=1, keepdims=True)
    if name == "binary_cross_entropy_with_logits":
        return x, rng.uniform(0, 1, shape)
    return x, rng.integers(0, 4, (3, 2))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name, i", FD_IDS, ids=[f"{n}-{i}" for n, i in FD_IDS])
def test_finite_differences(name, i, reduction):
    rng = np.random.default_rng(i)
    kwargs = dict(FD_CASES[name][i])
    kind = "rates" if kwargs.get("log_input") is False else kwargs.pop("probabilities", False)
    x, t = _inputs(name, kind, rng)
    if isinstance(kwargs.get("weight"), str):  # "full": one of the input's shape
        kwargs["weight"] = rng.uniform(0.2, 2.0, x.shape)
    if isinstance(kwargs.get("var"), str):  # away from eps: finite differences need the smooth part
        kwargs["var"] = rng.uniform(0.5, 2.0, x.shape if kwargs["var"] == "full" else x.shape[:-1])
    kwargs = dict(third(name, rng, x.shape, np.float64), **kwargs)  # var, margin_ranking's target
    spec = numbaloss.REGISTRY[name]
    fn = LOSSES[name][0]
    loss_shape = np.shape(fn(x, t, reduction=reduction, **kwargs))
    go = rng.uniform(-2, 2, loss_shape) if reduction == "none" else 1.7
    _, grads = fn(x, t, reduction=reduction, return_grad=True, grad_output=go, **kwargs)
    grads = grads if isinstance(grads, tuple) else (grads,)
    call = dict(zip(spec.arrays, [x, t]), **kwargs)
    for arg, grad in zip(spec.grads, grads, strict=True):  # every gradient: input, input2, var

        def objective(a):
            return float(np.sum(go * fn(**dict(call, **{arg: a}), reduction=reduction)))

        fd = central_differences(objective, call[arg])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7 * max(1.0, np.abs(fd).max()), err_msg=arg)


def test_float32_mean_of_two_million_losses_is_accurate():
    rng = np.random.default_rng(0)
    n = 2_000_000
    x = rng.standard_normal(n).astype(np.float32) * 3
    t = (rng.random(n) < 0.5).astype(np.float32)
    got = numbaloss.binary_cross_entropy_with_logits(x, t)
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    want = np.mean((1 - t64) * x64 + np.logaddexp(0.0, -x64))
    assert abs(float(got) - want) <= 1e-6 * abs(want)

    logits = rng.standard_normal((n, 3)).astype(np.float32)
    y = rng.integers(0, 3, n)
    got = numbaloss.cross_entropy(logits, y)
    l64 = logits.astype(np.float64)
    want = np.mean(np.log(np.exp(l64).sum(axis=1)) - l64[np.arange(n), y])
    assert abs(float(got) - want) <= 1e-6 * abs(want)
