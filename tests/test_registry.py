"""The registry is the one list of losses: every public loss is in it, in the test table and in
``__all__``; signatures match torch's; the ``nn`` classes come from it; and a loss made from
formulas plus one registration works end to end (CPU and CUDA simulator)."""

import inspect

import numpy as np
import pytest

import numbaloss
from numbaloss.core import elementwise, registry
from numbaloss.core import vmath as vm
from numbaloss.core.jit import scalar
from tests.conftest import FACTS, TOL, assert_close, needs_torch

CALL_ARGS = ("return_grad", "grad_output")


def test_every_loss_is_registered_tested_and_exported():
    functions = {n for n in numbaloss.__all__ if callable(getattr(numbaloss, n)) and n[0].islower()}
    assert set(numbaloss.REGISTRY) == functions
    assert set(FACTS) == set(numbaloss.REGISTRY), "add the loss's row to FACTS in tests/conftest.py"
    for name, spec in numbaloss.REGISTRY.items():
        assert getattr(numbaloss, name) is spec.fn and spec.fn.spec is spec
        cls = getattr(numbaloss, spec.module)
        assert spec.module in numbaloss.__all__ and cls.spec is spec
        assert spec.arrays[0] in ("input", "input1", "anchor", "log_probs") and set(spec.grads) <= set(spec.arrays)
        assert spec.fn.__doc__ and "Example:" in spec.fn.__doc__ and ".. math::" in spec.fn.__doc__


@needs_torch
@pytest.mark.parametrize("name", list(numbaloss.REGISTRY))
def test_signature_matches_torch(name):
    import torch.nn.functional as F

    ours = [(p.name, p.default) for p in inspect.signature(numbaloss.REGISTRY[name].fn).parameters.values()]
    theirs = [(p.name, p.default) for p in inspect.signature(getattr(F, name)).parameters.values()]
    assert ours[-2:] == [("return_grad", False), ("grad_output", None)]
    assert ours[:-2] == [p for p in theirs if p[0] not in ("size_average", "reduce")]


@pytest.mark.parametrize("name", list(numbaloss.REGISTRY))
def test_module_class_takes_the_options(name):
    spec = numbaloss.REGISTRY[name]
    cls = getattr(numbaloss, spec.module)
    fn_params = [p for p in inspect.signature(spec.fn).parameters.values() if p.name not in spec.arrays + CALL_ARGS]
    assert [(p.name, p.default) for p in inspect.signature(cls).parameters.values()] == [(p.name, p.default) for p in fn_params]
    with pytest.raises(TypeError):
        cls(no_such_option=1)


def test_module_class_calls_its_function():
    x = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    t = np.array([0, 2])
    loss = numbaloss.CrossEntropyLoss(reduction="sum", label_smoothing=0.1)
    assert repr(loss) == "CrossEntropyLoss(ignore_index=-100, reduction='sum', label_smoothing=0.1)"
    got = loss(x, t, return_grad=True)
    want = numbaloss.cross_entropy(x, t, reduction="sum", label_smoothing=0.1, return_grad=True)
    assert got[0] == want[0] and np.array_equal(got[1], want[1])


def test_reduction_is_checked_against_the_loss_s_list():
    with pytest.raises(ValueError, match="'batchmean' is not a valid value for reduction"):
        numbaloss.binary_cross_entropy(np.array([0.5]), np.array([1.0]), reduction="batchmean")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(module="X", cpu=None, cuda=None)(numbaloss.nll_loss)


# ------------------------------------------------------------ a loss from formulas alone
@scalar
def toy_value(x, t, p, k):
    """``p (x - t)^2 + k``."""
    d = x - t
    return p * d * d + vm.like(k, x)


@scalar
def toy_grad(x, t, p, k):
    """``2 p (x - t)``."""
    return vm.like(2.0, x) * p * (x - t)


@scalar
def toy_check(x, t, p, k):
    return x > -1e3


def toy_loss(input, target, weight=None, reduction="mean", scale=None, offset=0.0, *, return_grad=False, grad_output=None):
    r"""A test-only loss: ``w (p (x - t)^2 + k)``.

    .. math:: \ell = w\,(p (x - t)^2 + k)

    Example:
        none
    """
    options = {"weight": weight, "scale": scale, "offset": offset}
    return registry.run(toy_loss.spec, (input, target), options, reduction, return_grad, grad_output)


@pytest.fixture
def toy():
    elementwise.register(
        module="ToyLoss", value=toy_value, grad=toy_grad, check=toy_check, check_error="toy input below -1000",
        scale="weight", param="scale", option="offset",
    )(toy_loss)
    yield toy_loss
    del registry.REGISTRY["toy_loss"]


def _toy_expected(x, t, w, p, k, reduction, g):
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    per = w * (p * (x64 - t64) ** 2 + k)
    grad = w * 2 * p * (x64 - t64)
    if reduction == "none":
        return per, grad * g
    if reduction == "sum":
        return per.sum(), grad * g
    return per.mean(), grad * g / x.size


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("n", [7, 3 * 4096 + 5, 40000])  # serial, several blocks, parallel kernel
def test_toy_loss_from_formulas_on_cpu(toy, dtype, reduction, n):
    rng = np.random.default_rng(n)
    shape = (n // 5, 5) if n % 5 == 0 else (n,)
    x = rng.standard_normal(shape).astype(dtype)
    t = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0.5, 2.0, shape[-1:]).astype(dtype)  # broadcast along the last dimension
    p = rng.uniform(0.5, 2.0, shape).astype(dtype)  # full size
    g = rng.uniform(-2, 2, shape) if reduction == "none" else 1.5
    x0 = x.copy()
    loss, grad = toy(x, t, weight=w, reduction=reduction, scale=p, offset=0.25, return_grad=True, grad_output=g)
    want_loss, want_grad = _toy_expected(x, t, w.astype(np.float64), p.astype(np.float64), 0.25, reduction, g)
    assert np.asarray(loss).dtype == dtype and grad.dtype == dtype and grad.shape == shape
    assert_close(loss, want_loss, dtype)
    assert_close(grad, want_grad, dtype)
    assert np.array_equal(x, x0)  # inputs are never modified
    x[-1] = -5e3
    with pytest.raises(ValueError, match=r"toy input below -1000; input\[.*\] = -5000"):
        toy(x, t)


def test_toy_loss_on_the_simulator_matches_cpu(toy):
    cuda = pytest.importorskip("numba.cuda")
    if not cuda.is_available() and not __import__("numba").config.ENABLE_CUDASIM:
        pytest.skip("no CUDA device and no simulator")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 30))
    t = rng.standard_normal((9, 30))
    w = rng.uniform(0.5, 2.0, (9, 1))  # broadcast over the columns: read through its strides
    p = rng.uniform(0.5, 2.0, (30,))
    for reduction in ("none", "mean", "sum"):
        cpu = toy(x, t, weight=w, scale=p, offset=0.5, reduction=reduction, return_grad=True)
        dev = toy(cuda.to_device(x), cuda.to_device(t), weight=w, scale=cuda.to_device(p), offset=0.5,
                  reduction=reduction, return_grad=True)
        host = [np.asarray(d.copy_to_host() if hasattr(d, "copy_to_host") else d) for d in dev]
        np.testing.assert_allclose(host[0], cpu[0], **TOL[np.dtype(np.float64)])
        np.testing.assert_allclose(host[1], cpu[1], **TOL[np.dtype(np.float64)])
    bad = x.copy()
    bad[3, 4] = -2e3
    with pytest.raises(ValueError, match=r"toy input below -1000; input\[3, 4\]"):
        toy(cuda.to_device(bad), cuda.to_device(t))


@pytest.mark.parametrize(
    "param_shape", [(), (1,), (5,), (4, 1), (3, 1, 5), (3, 4, 1), (1, 4, 5), (3, 4, 5), (3, 1, 1)]
)
def test_broadcast_parameters_are_read_through_their_strides(param_shape):
    """Every broadcast pattern gives the values of the materialised broadcast (the old way), on
    several blocks, with the parameter kept compact."""
    rng = np.random.default_rng(0)
    shape = (3, 4, 5)
    big = (700, 4, 5)  # several kernel blocks, parallel kernel
    for s in (shape, big):
        ps = tuple(s[i - len(param_shape) + len(s)] if n != 1 else 1 for i, n in enumerate(param_shape))
        x = rng.standard_normal(s)
        t = rng.uniform(0, 1, s)
        w = rng.uniform(0.5, 2.0, ps)
        pw = rng.uniform(0.5, 2.0, ps)
        got = numbaloss.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, reduction="none", return_grad=True)
        want = numbaloss.binary_cross_entropy_with_logits(
            x, t, weight=np.broadcast_to(w, s).copy(), pos_weight=np.broadcast_to(pw, s).copy(), reduction="none", return_grad=True
        )
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (s, ps)


def test_broadcast_maps_merge_dimensions():
    # [ndim, shape..., element strides...]; broadcast dimensions have stride 0
    assert elementwise.broadcast_map((3, 4, 5), (5,)).tolist() == [2, 12, 5, 0, 1]
    assert elementwise.broadcast_map((3, 4, 5), (4, 1)).tolist() == [3, 3, 4, 5, 0, 1, 0]
    assert elementwise.broadcast_map((3, 4, 5), (3, 1, 1)).tolist() == [2, 3, 20, 1, 0]
    assert elementwise.broadcast_map((3, 4, 5), ()).tolist() == [1, 60, 0]
    assert elementwise.broadcast_map((3, 4, 5), (3, 4, 5)).size == 0  # full size: read directly


def test_host_tree_sum_is_the_compiled_one_bit_for_bit():
    """Small elementwise calls finish their partials in Python: same additions, same order."""
    from numbaloss.core import reduce

    rng = np.random.default_rng(3)
    for n in range(0, 70):
        v = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
        assert np.float64(reduce.tree_sum_host(v)).tobytes() == np.float64(reduce.combine(v)).tobytes()


@pytest.mark.parametrize("name", list(numbaloss.REGISTRY))
def test_benchmark_inputs_exist_for_every_loss(name):
    """asv and ``python -m numbaloss.bench --jit`` make their inputs from the registry."""
    from numbaloss.bench import sample_inputs

    spec = numbaloss.REGISTRY[name]
    arrays = sample_inputs(spec, 64, np.float32, np.random.default_rng(0))
    loss, grad = spec.fn(*arrays, return_grad=True)
    grads = grad if isinstance(grad, tuple) else (grad,)
    assert len(arrays) == len(spec.arrays) and len(grads) == len(spec.grads)
    assert np.isfinite(loss) and all(g.shape == arrays[0].shape for g in grads)


def test_an_input_check_comes_with_its_message():
    """The CUDA kernel records failing inputs only where there is a message to raise them with."""
    with pytest.raises(ValueError, match="needs its check_error"):
        elementwise.register(module="X", value=toy_value, grad=toy_grad, check=toy_check)
    with pytest.raises(ValueError, match="needs its check_error"):
        elementwise.register(module="X", value=toy_value, grad=toy_grad, check_error="never raised")
