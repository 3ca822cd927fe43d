"""numbaloss.torch: every registered loss as a torch function with autograd, against torch itself.

Values and the gradients of every differentiable input, for every reduction, through
``loss.backward()`` and through ``torch.autograd.grad`` with a non-trivial ``grad_output``;
``gradcheck`` in float64; a short training run, eager and under ``torch.compile``; the modules.
"""

import inspect

import numpy as np
import pytest

import numbaloss
from tests.cases import DTYPES, REDUCTIONS, all_cases, grad_output_for, loss_shape, make
from tests.conftest import LOSSES, assert_close, run_torch, torch_error_scale

torch = pytest.importorskip("torch")
nlt = pytest.importorskip("numbaloss.torch")
F = torch.nn.functional


def _small_cases():
    """Per loss and option, its first parity shape with 3 to 60 elements (every reduction)."""
    seen, out = set(), []
    for name, shape, option, reduction in all_cases():
        if name in LOSSES and 3 <= int(np.prod(shape)) <= 60 and (name, option, reduction) not in seen:
            seen.add((name, option, reduction))
            out.append((name, shape, option, reduction))
    return out


CASES = _small_cases()


def _param(name, v, x):
    """An array option (weight, pos_weight) in the input's dtype, as torch requires; data as it is."""
    return v.astype(x.dtype) if name in ("weight", "pos_weight") else v


def _ours(name, x, t, kwargs, reduction):
    """numbaloss.torch's loss on fresh leaf tensors, and those tensors (in ``grad_args`` order)."""
    spec = numbaloss.REGISTRY[name]
    leaves = {}

    def tensor(arg, v):
        if isinstance(v, np.ndarray):
            v = torch.tensor(v)
            if arg in spec.grads:
                v.requires_grad_(True)
                leaves[arg] = v
        return v

    xt, tt = tensor(spec.arrays[0], x), tensor(spec.arrays[1], t)
    kw = {k: tensor(k, _param(k, v, x)) for k, v in kwargs.items()}
    loss = getattr(nlt, name)(xt, tt, reduction=reduction, **kw)
    return loss, [leaves.get(a) for a in spec.grads]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=["-".join([c[0], "x".join(map(str, c[1])), c[2], c[3]]) for c in CASES])
def test_values_and_gradients_match_torch(case, dtype):
    """Through torch.autograd.grad with a non-trivial grad_output, then through loss.backward()."""
    name, shape, option, reduction = case
    (x, t, kwargs), rng = make(name, shape, dtype, option)
    go = np.asarray(grad_output_for(reduction, loss_shape(name, x, t), rng), dtype)
    want_loss, want_grad = run_torch(name, x, t, dict(kwargs, reduction=reduction), go)
    loss, leaves = _ours(name, x, t, kwargs, reduction)
    assert isinstance(loss, torch.Tensor) and loss.dtype == torch.from_numpy(x).dtype
    wanted = [leaf for leaf in leaves if leaf is not None]
    got = iter(torch.autograd.grad(loss, wanted, torch.from_numpy(go)))
    grads = tuple(None if leaf is None else next(got).numpy() for leaf in leaves)
    loss_scale, grad_scale = torch_error_scale(name, x, dict(kwargs, reduction=reduction), go, t)
    assert_close(loss.detach().numpy(), want_loss, dtype, scale=loss_scale)
    assert_close(grads if len(grads) > 1 else grads[0], want_grad, dtype, scale=grad_scale)

    # .backward() on the reduced loss (the fused path), or on a weighted sum of the unreduced one
    loss, leaves = _ours(name, x, t, kwargs, reduction)
    (loss * torch.from_numpy(go)).sum().backward()
    grads = tuple(None if leaf is None else leaf.grad.numpy() for leaf in leaves)
    assert_close(grads if len(grads) > 1 else grads[0], want_grad, dtype, scale=grad_scale)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck(name, reduction):
    """torch.autograd.gradcheck (finite differences, float64) on a small input of the loss's first option."""
    _, shape, option, _ = next(c for c in CASES if c[0] == name)
    (x, t, kwargs), _ = make(name, shape, np.float64, option)
    spec = numbaloss.REGISTRY[name]
    arrays = dict(zip(spec.arrays, [x, t] + [kwargs.pop(a, None) for a in spec.arrays[2:]]))
    differentiable = [a for a in spec.grads if isinstance(arrays[a], np.ndarray)]
    fixed = {a: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for a, v in arrays.items()}
    kw = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}

    def loss(*inputs):
        return getattr(nlt, name)(**dict(fixed, **dict(zip(differentiable, inputs))), reduction=reduction, **kw)

    inputs = [torch.from_numpy(arrays[a]).clone().requires_grad_(True) for a in differentiable]
    assert torch.autograd.gradcheck(loss, inputs)


def test_ctc_loss_matches_torch():
    """ctc_loss through log_softmax (where torch's gradient convention and the exact one agree)."""
    rng = np.random.default_rng(3)
    T, N, C, S = 12, 4, 5, 3
    x = torch.tensor(rng.standard_normal((T, N, C)), requires_grad=True)
    targets = torch.tensor(rng.integers(1, C, (N, S)))
    il, tl = [12, 10, 7, 12], torch.tensor([3, 1, 2, 0])
    for reduction in REDUCTIONS:
        go = torch.tensor(rng.uniform(0.5, 2, N) if reduction == "none" else 2.5)
        want = F.ctc_loss(x.log_softmax(-1), targets, torch.tensor(il), tl, reduction=reduction)
        (want_grad,) = torch.autograd.grad(want, x, go)
        ours = nlt.ctc_loss(x.log_softmax(-1), targets, il, tl, reduction=reduction)
        (grad,) = torch.autograd.grad(ours, x, go)
        assert_close(ours.detach().numpy(), want.detach().numpy(), np.float64)
        assert_close(grad.numpy(), want_grad.numpy(), np.float64)
    lp = x.detach().log_softmax(-1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: nlt.ctc_loss(a, targets, il, tl, reduction="sum"), [lp])


def test_every_registered_loss_has_a_function_and_a_module_of_torchs_names():
    for name, spec in numbaloss.REGISTRY.items():
        fn, module = getattr(nlt, name), getattr(nlt, spec.module)
        assert name in nlt.__all__ and spec.module in nlt.__all__
        ours = list(inspect.signature(fn).parameters)
        theirs = [p for p in inspect.signature(getattr(F, name)).parameters if p not in ("size_average", "reduce")]
        assert ours == theirs, name
        assert issubclass(module, torch.nn.Module)
        assert list(inspect.signature(module).parameters) == [p for p in theirs if p not in spec.arrays]


def _mlp_curve(loss_fn, steps=50, compile=False):
    """The loss curve of 50 SGD steps of a small MLP classifier on synthetic data."""
    torch.manual_seed(0)
    x = torch.randn(256, 20)
    y = (x[:, :5].sum(1) > 0).long() + (x[:, 5] > 1).long()
    model = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)

    def forward(x, y):
        return loss_fn(model(x), y)

    if compile:  # model and loss in one graph (fullgraph fails on any graph break), backward by AOTAutograd
        forward = torch.compile(forward, fullgraph=True, backend="aot_eager")
    curve = []
    for _ in range(steps):
        opt.zero_grad()
        loss = forward(x, y)
        loss.backward()
        opt.step()
        curve.append(loss.item())
    return np.array(curve)


def test_training_curve_equals_torchs():
    want = _mlp_curve(torch.nn.CrossEntropyLoss())
    assert want[-1] < 0.6 * want[0]  # it trains
    np.testing.assert_allclose(_mlp_curve(nlt.CrossEntropyLoss()), want, rtol=2e-5)


def test_training_curve_under_torch_compile_equals_torchs():
    """aot_eager traces forward and backward through the custom op's fake and autograd
    registrations (what every backend relies on) without compiling C++ for this test."""
    want = _mlp_curve(torch.nn.CrossEntropyLoss())
    np.testing.assert_allclose(_mlp_curve(nlt.CrossEntropyLoss(), compile=True), want, rtol=2e-5)


def test_modules_behave_like_torchs():
    w = torch.tensor([0.5, 1.0, 2.0])
    ours, theirs = nlt.CrossEntropyLoss(weight=w, label_smoothing=0.1), torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1)
    assert repr(ours) == "CrossEntropyLoss(label_smoothing=0.1)"
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {"weight"}
    fresh = nlt.CrossEntropyLoss(weight=torch.ones(3), label_smoothing=0.1)
    fresh.load_state_dict(ours.state_dict())
    assert torch.equal(fresh.weight, w)
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0])
    assert fresh.double().weight.dtype == torch.float64
    torch.testing.assert_close(fresh(x, y), theirs.double()(x, y), rtol=1e-12, atol=0)
    head = torch.nn.Sequential(torch.nn.Identity())
    assert torch.equal(nlt.MSELoss(reduction="sum")(head(x), x + 1), torch.tensor(18.0, dtype=torch.float64))
    assert repr(nlt.TripletMarginLoss(margin=0.5, swap=True)) == "TripletMarginLoss(margin=0.5, swap=True)"


def test_low_precision_is_computed_in_float32():
    x32 = torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    for dtype in (torch.float16, torch.bfloat16):
        x = x32.to(dtype).requires_grad_(True)
        loss = nlt.cross_entropy(x, y)
        loss.backward()
        want = x.detach().float().requires_grad_(True)
        want_loss = F.cross_entropy(want, y)
        want_loss.backward()
        assert loss.dtype == dtype and x.grad.dtype == dtype
        assert loss.item() == want_loss.to(dtype).item()
        assert torch.equal(x.grad, want.grad.to(dtype))


def test_unsupported_gradients_raise():
    x, t = torch.randn(4, 3).log_softmax(-1), torch.rand(4, 3)
    with pytest.raises(NotImplementedError, match="target requires a gradient"):
        nlt.kl_div(x, t.requires_grad_(True), reduction="batchmean")
    with pytest.raises(NotImplementedError, match="weight requires a gradient"):
        nlt.binary_cross_entropy(t.detach(), t.detach(), weight=torch.ones(3, requires_grad=True))
    for reduction in ("sum", "none"):
        xg = torch.randn(4, 3, requires_grad=True)
        loss = nlt.mse_loss(xg, t.detach(), reduction=reduction).sum()
        with pytest.raises(NotImplementedError, match="double backward"):
            torch.autograd.grad(loss, xg, create_graph=True)
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        nlt.mse_loss(np.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="input must be a torch.Tensor, got None"):
        nlt.mse_loss(None, torch.zeros(3))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        nlt.cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), weight=[1.0, 2.0, 3.0])


def test_cpu_tensors_are_not_copied_and_not_modified():
    x = torch.randn(5, 4, requires_grad=True)
    y = torch.randint(0, 4, (5,))
    before = x.detach().clone()
    loss = nlt.cross_entropy(x, y, reduction="none")
    loss.sum().backward()
    assert torch.equal(x.detach(), before)
    (value,) = torch.ops.numbaloss.loss("cross_entropy", "input,target", [x.detach(), y], "{}", "none", False)
    assert torch.equal(value, loss.detach())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA build of torch and a GPU (benchmarks/gpu_check.sh)")
def test_cuda_tensors():  # pragma: no cover - runs in gpu_check.sh
    x = torch.randn(64, 10, device="cuda", requires_grad=True)
    y = torch.randint(0, 10, (64,), device="cuda")
    for reduction in REDUCTIONS:
        loss = nlt.cross_entropy(x, y, reduction=reduction)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        want = F.cross_entropy(x, y, reduction=reduction)
        (want_grad,) = torch.autograd.grad(want.sum(), x)
        assert loss.device == x.device and grad.device == x.device
        torch.testing.assert_close(loss, want)
        torch.testing.assert_close(grad, want_grad)


def test_a_retained_graph_gives_the_same_gradient_twice():
    """The fused path hands its gradient to autograd on the first backward; a second backward through
    the retained graph computes it again (gradients accumulate as torch's do)."""
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (6,))
    loss = nlt.cross_entropy(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    want = x.detach().requires_grad_(True)
    F.cross_entropy(want, y).backward()
    torch.testing.assert_close(first, want.grad, rtol=1e-12, atol=0)
    torch.testing.assert_close(x.grad, 2 * want.grad, rtol=1e-12, atol=0)


def test_without_a_gradient_the_loss_has_no_graph():
    """Inputs that need no gradient, or grad mode off: the loss alone (no autograd node), as torch's."""
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (6,))
    for reduction in REDUCTIONS:
        loss = nlt.cross_entropy(x, y, reduction=reduction)
        assert loss.grad_fn is None and not loss.requires_grad
        torch.testing.assert_close(loss, F.cross_entropy(x, y, reduction=reduction), rtol=1e-12, atol=0)
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        loss = nlt.cross_entropy(xg, y)
    assert loss.grad_fn is None and not loss.requires_grad
    assert loss.item() == nlt.cross_entropy(xg, y).item()
    assert nlt.cross_entropy(xg, y).requires_grad
