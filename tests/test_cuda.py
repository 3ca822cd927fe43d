"""The CUDA backend: the same cases as the CPU path, on Numba's simulator in CI or on a real GPU.

conftest.py turns the simulator on when no NVIDIA driver is present, so these run
everywhere.  Simulator shapes stay small: every simulated thread is a Python thread.
"""

import re

import numpy as np
import pytest
from numba import config

import numbaloss
from tests.cases import ELEMENTWISE, class_case
from tests.conftest import FACTS, LOSSES, assert_close, needs_torch, run_torch, torch_error_scale

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
# The simulator executes kernel arithmetic with NumPy scalars, which warn where a GPU silently
# produces IEEE inf/NaN (0/0 for an all-ignored mean, exp(NaN)); the values are still checked.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
SIM = bool(config.ENABLE_CUDASIM)
on_sim = pytest.mark.skipif(not SIM, reason="simulator-only check")


def to_dev(a):
    a = np.asarray(a)
    return cuda.to_device(a if a.flags.c_contiguous else a.copy())


def host(a):
    """A device result on the host; a tuple of gradients entry by entry (None stays None)."""
    if isinstance(a, tuple):
        return tuple(None if g is None else host(g) for g in a)
    return a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)


# Kept small: the simulator is slow.  Each option family and layout appears once.
CLASS_CASES = [
    (name, shape, option)
    for name in ("cross_entropy", "nll_loss")
    for shape in [(5, 7), (3,), (2, 4, 3), (0, 4)]
    for option in (["plain", "weight_ignore_smooth", "prob_weight_smooth"] if name == "cross_entropy" else ["plain", "weight", "ignore_valid_class"])
]
BINARY_CASES = [
    (name, shape, option)
    for name in ("binary_cross_entropy", "binary_cross_entropy_with_logits")
    for shape in [(37,), (3, 5)]
    for option in (["plain", "weight_full"] if name == "binary_cross_entropy" else ["plain", "both"])
]

# one case per elementwise loss (the template is shared: its options are covered in test_elementwise_options_on_device)
ELEMENTWISE_CASES = [
    (name, [(3, 5), (37,)][i % 2], list(options)[i % len(options)])
    for i, (name, (_, _, options)) in enumerate(ELEMENTWISE.items())
]


# the row losses: a few shapes and options each (3-d, 1-d, a one-row target, a full weight on the device),
# each in one dtype (a block per row of simulated threads is slow; both dtypes are covered per loss)
ROW_CASES = [
    ("multilabel_soft_margin_loss", (3, 5), "plain", np.float32),
    ("multilabel_soft_margin_loss", (2, 1, 3), "bcast", np.float64),
    ("multilabel_soft_margin_loss", (4,), "weight_full", np.float64),
    ("multilabel_soft_margin_loss", (0, 3), "weight", np.float32),
    ("cosine_embedding_loss", (2, 5), "margin", np.float32),
    ("cosine_embedding_loss", (4,), "neg_margin", np.float64),
    ("cosine_embedding_loss", (0, 3), "plain", np.float32),
    ("multi_margin_loss", (3, 5), "p2_margin_weight", np.float32),
    ("multi_margin_loss", (4,), "weight", np.float64),
    ("triplet_margin_loss", (2, 5), "p1.5_swap", np.float32),
    ("triplet_margin_loss", (2, 1, 4), "pinf_eps0", np.float64),
    ("triplet_margin_loss", (4,), "swap", np.float64),
    ("multilabel_margin_loss", (3, 5), "plain", np.float32),
    ("triplet_margin_with_distance_loss", (2, 5), "swap_margin", np.float64),
    ("multilabel_margin_loss", (4,), "plain", np.float64),
]


def _make(name, shape, option, dtype, rng):
    return FACTS[name][1](name, shape, dtype, option, rng)  # the loss's case maker, from the test table


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case", CLASS_CASES + BINARY_CASES + ELEMENTWISE_CASES, ids=lambda c: f"{c[0]}-{'x'.join(map(str, c[1]))}-{c[2]}")
def test_device_matches_cpu(case, reduction, dtype):
    name, shape, option = case
    rng = np.random.default_rng(len(shape) * 7 + len(option))
    x, t, kwargs = _make(name, shape, option, dtype, rng)
    fn = LOSSES[name][0]
    want, want_grad = fn(x, t, reduction=reduction, return_grad=True, **kwargs)
    # a full-shape weight travels as a device array (of the input's dtype); other parameters stay on the host;
    # a third data array (var, margin_ranking's target) is data: on the device
    data = numbaloss.REGISTRY[name].arrays
    dev_kwargs = {k: (to_dev(v.astype(dtype)) if (k == "weight" and option.endswith("full")) or (k in data and
                  isinstance(v, np.ndarray)) else v) for k, v in kwargs.items()}
    loss, grad = fn(to_dev(x), to_dev(t), reduction=reduction, return_grad=True, **dev_kwargs)
    grads = [g for g in (grad if isinstance(grad, tuple) else (grad,)) if g is not None]
    assert hasattr(loss, "copy_to_host") and all(hasattr(g, "copy_to_host") for g in grads)  # device in, device out
    assert host(loss).dtype == dtype and all(host(g).dtype == dtype for g in grads)
    assert_close(host(loss), want, dtype)
    assert_close(host(grad), want_grad, dtype)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("case", ROW_CASES, ids=lambda c: f"{c[0]}-{'x'.join(map(str, c[1]))}-{c[2]}")
def test_row_loss_device_matches_cpu(case, reduction):
    test_device_matches_cpu(case[:3], reduction, case[3])


def test_elementwise_options_on_device():
    """Formula variants (kl_div's log_target, poisson's log_input/full), a broadcast target, kl_div's
    batchmean and a weighted mean, against the CPU path; a target that broadcasts the input is refused."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 6))
    t = rng.random((4, 6))
    calls = [
        ("kl_div", x, t, dict(log_target=True, reduction="batchmean")),
        ("kl_div", x, t[0], dict(reduction="sum")),
        ("poisson_nll_loss", np.abs(x), 3 * t, dict(log_input=False, full=True, reduction="none")),
        ("l1_loss", x, t, dict(weight=rng.random((4, 6)), reduction="mean")),
        ("huber_loss", x, t, dict(weight=rng.random((4, 6)), delta=0.5, reduction="mean")),
    ]
    for name, a, b, kw in calls:
        fn = getattr(numbaloss, name)
        want, want_grad = fn(a, b, return_grad=True, **kw)
        loss, grad = fn(to_dev(a), to_dev(b), return_grad=True, **kw)
        assert_close(host(loss), want, np.float64)
        assert_close(host(grad), want_grad, np.float64)
    with pytest.raises(ValueError, match="on the device, broadcast the input to the loss's shape first"):
        numbaloss.kl_div(to_dev(x[:, :1]), to_dev(t), reduction="sum")


def test_row_losses_refuse_what_they_cannot_read_on_device():
    """A broadcast input (or input2) and a weight that is neither the input's shape nor one row are
    clear errors on the device (the CPU path takes them); the target's dtype must be the input's."""
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((4, 6)), np.sign(rng.standard_normal(4))
    with pytest.raises(ValueError, match=re.escape("on the device input1 and input2 must have the same shape (4, 6)")):
        numbaloss.cosine_embedding_loss(to_dev(x), to_dev(x[:1]), to_dev(y))
    with pytest.raises(ValueError, match="on the device, broadcast the input to the loss's shape first"):
        numbaloss.multilabel_soft_margin_loss(to_dev(x[:1]), to_dev(np.ones((4, 6))))
    with pytest.raises(ValueError, match=re.escape("weight of shape (4, 1): on the device it must have the input's shape")):
        numbaloss.multilabel_soft_margin_loss(to_dev(x), to_dev(np.ones((4, 6))), weight=np.ones((4, 1)))
    with pytest.raises(TypeError, match="target on the device must have the input's dtype float64, got float32"):
        numbaloss.multilabel_soft_margin_loss(to_dev(x), to_dev(np.ones((4, 6), np.float32)))


def test_multi_margin_target_out_of_bounds_on_device():
    """The device error buffer: a bad class index is never read through, and raises on the host."""
    x = np.random.default_rng(13).standard_normal((4, 5))
    for bad in (5, -1):
        with pytest.raises(IndexError, match=re.escape(f"Target {bad} is out of bounds. (at target index (2,); valid classes are 0..4)")):
            numbaloss.multi_margin_loss(to_dev(x), to_dev(np.array([0, 1, bad, 3])), return_grad=True)


def test_triplet_distance_function_is_cpu_only():
    from tests.cases import L1

    x = to_dev(np.ones((2, 3)))
    with pytest.raises(TypeError, match="distance_function: a Numba CPU function cannot run on CUDA arrays"):
        numbaloss.triplet_margin_with_distance_loss(x, x, x, distance_function=L1)


def test_multilabel_margin_label_out_of_range_on_device():
    x = np.random.default_rng(14).standard_normal((2, 4))
    with pytest.raises(IndexError, match=re.escape("Target 7 is out of bounds. (at target index (1, 2);")):
        numbaloss.multilabel_margin_loss(to_dev(x), to_dev(np.array([[0, -1, 0, 0], [3, -1, 7, 1]])), return_grad=True)


def test_third_array_and_its_gradient_on_device():
    """A data param (gaussian_nll's var, margin_ranking's input2) on the device: broadcast var shapes
    (its gradient summed back on the device, in a fixed order), a float var (no gradient), a
    broadcast input2, and the negative-var error from the device error buffer."""
    rng = np.random.default_rng(10)
    x, t = rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    calls = [
        ("gaussian_nll_loss", x, t, {"var": rng.uniform(0.1, 2, (4,))}, dict(reduction="mean")),
        ("gaussian_nll_loss", x, t, {"var": rng.uniform(0.1, 2, (1, 6))}, dict(reduction="none", full=True)),
        ("gaussian_nll_loss", x, t, {"var": 0.7}, dict(reduction="sum")),
        ("margin_ranking_loss", x, rng.standard_normal((1, 6)), {"target": np.sign(t)}, dict(margin=0.2)),
    ]
    for name, a, b, third, kw in calls:
        fn = getattr(numbaloss, name)
        want, want_grad = fn(a, b, return_grad=True, **third, **kw)
        dev = {k: (to_dev(v) if isinstance(v, np.ndarray) else v) for k, v in third.items()}
        loss, grad = fn(to_dev(a), to_dev(b), return_grad=True, **dev, **kw)
        assert_close(host(loss), want, np.float64)
        assert_close(host(grad), want_grad, np.float64)
    var = np.ones((4, 6))
    var[2, 3] = -0.5
    with pytest.raises(ValueError, match=re.escape("var has negative entry/entries; var[2, 3] = -0.5")):
        numbaloss.gaussian_nll_loss(to_dev(x), to_dev(t), to_dev(var))


@pytest.mark.parametrize("rows", ["block", "warp"])
@pytest.mark.parametrize("option", ["weight_ignore_smooth", "prob_weight_smooth"])
@pytest.mark.parametrize("shape", [(3, 1100), (2, 4, 3)], ids=lambda s: "x".join(map(str, s)))
def test_block_and_warp_rows_match_cpu(shape, option, rows, monkeypatch):
    """Both cross-entropy row kernels (a warp per row, a block per row) on long and short rows."""
    from numbaloss.losses.classification import cuda as classification_cuda

    monkeypatch.setattr(classification_cuda, "WARP_ROW_MAX_C", 10**9 if rows == "warp" else 0)
    rng = np.random.default_rng(shape[1])
    x, t, kwargs = class_case("cross_entropy", shape, np.float32, option, rng)
    want, want_grad = numbaloss.cross_entropy(x, t, reduction="none", return_grad=True, **kwargs)
    loss, grad = numbaloss.cross_entropy(to_dev(x), to_dev(t), reduction="none", return_grad=True, **kwargs)
    assert_close(host(loss), want, np.float32)
    assert_close(host(grad), want_grad, np.float32)


@needs_torch
@pytest.mark.parametrize("rows", ["block", "warp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_device_matches_torch_edge_values(dtype, rows, monkeypatch):
    from numbaloss.losses.classification import cuda as classification_cuda

    monkeypatch.setattr(classification_cuda, "WARP_ROW_MAX_C", 10**9 if rows == "warp" else 0)
    inf, nan = np.inf, np.nan
    x = np.array([[0.0, -inf, 1.0, 2.0], [nan, 1.0, 2.0, 0.0], [-inf, -inf, -inf, -inf], [1e4, -1e4, 0.0, 3.0]], dtype)
    t = np.array([0, 1, 2, 3])
    for kw in ({}, {"label_smoothing": 0.1}):
        loss, grad = numbaloss.cross_entropy(to_dev(x), to_dev(t), reduction="none", return_grad=True, **kw)
        tl, tg = run_torch("cross_entropy", x, t, dict(kw, reduction="none"))
        assert_close(host(loss), tl, dtype)
        assert_close(host(grad), tg, dtype)
    xb = np.array([1e4, -1e4, 0.5, nan], dtype)
    tb = np.array([0.0, 1.0, 0.3, 1.0], dtype)
    loss, grad = numbaloss.binary_cross_entropy_with_logits(to_dev(xb), to_dev(tb), reduction="none", return_grad=True)
    tl, tg = run_torch("binary_cross_entropy_with_logits", xb, tb, {"reduction": "none"})
    ls, gs = torch_error_scale("binary_cross_entropy_with_logits", xb, {"reduction": "none"})
    assert_close(host(loss), tl, dtype, scale=ls)
    assert_close(host(grad), tg, dtype, scale=gs)


@needs_torch
@pytest.mark.parametrize("rows", ["block", "warp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_long_rows_with_edge_values_match_torch(dtype, rows, monkeypatch):
    """Rows long enough for the kernels' unrolled loops (eight logits folded per step), with -inf masks,
    NaN and +inf among them: the batched max/rescale must treat them as the one-at-a-time fold does."""
    from numbaloss.losses.classification import cuda as classification_cuda

    monkeypatch.setattr(classification_cuda, "WARP_ROW_MAX_C", 10**9 if rows == "warp" else 0)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 520)).astype(dtype) * 3
    x[0, rng.random(520) < 0.5] = -np.inf  # half masked
    x[0, 7] = 1.0
    x[1, 300] = np.nan
    x[2, :] = -np.inf
    x[3, 129] = np.inf
    x[4, :8] = -np.inf  # the first folds see nothing but -inf
    x[4, 8:] *= 3000
    t = np.array([7, 2, 5, 0, 400])
    for kw in ({}, {"label_smoothing": 0.1}):
        loss, grad = numbaloss.cross_entropy(to_dev(x), to_dev(t), reduction="none", return_grad=True, **kw)
        tl, tg = run_torch("cross_entropy", x, t, dict(kw, reduction="none"))
        assert_close(host(loss), tl, dtype)
        assert_close(host(grad), tg, dtype)


def test_out_of_bounds_target_uses_the_error_buffer():
    x = to_dev(np.zeros((4, 3)))
    for bad in (3, -2, 100):
        t = np.array([0, 1, bad, 2])
        with pytest.raises(IndexError, match=rf"^Target {bad} is out of bounds\. \(at target index \(2,\)"):
            numbaloss.cross_entropy(x, to_dev(t))
        with pytest.raises(IndexError, match=rf"^Target {bad} is out of bounds\."):
            numbaloss.nll_loss(x, to_dev(t), return_grad=True)


@pytest.mark.parametrize("name", ["binary_cross_entropy", "binary_cross_entropy_with_logits"])
def test_binary_over_several_chunks_matches_cpu(name):
    """Enough elements for the unrolled loop (four per thread per step), two blocks and a partial chunk."""
    rng = np.random.default_rng(12)
    n = 1500
    x = rng.random(n) if name == "binary_cross_entropy" else rng.standard_normal(n) * 4
    t = rng.random(n)
    kw = {"weight": rng.random(n)}
    if name == "binary_cross_entropy_with_logits":
        kw["pos_weight"] = rng.random(n) + 0.5
    fn = getattr(numbaloss, name)
    go = rng.standard_normal(n)
    for reduction, grad_output in (("mean", None), ("none", go)):
        want, want_grad = fn(x, t, reduction=reduction, return_grad=True, grad_output=grad_output, **kw)
        loss, grad = fn(to_dev(x), to_dev(t), reduction=reduction, return_grad=True, grad_output=grad_output, **kw)
        assert_close(host(loss), want, np.float64)
        assert_close(host(grad), want_grad, np.float64)
    if name == "binary_cross_entropy":
        x[[700, 1400]] = [1.25, -0.5]  # the first bad element is reported, from any block
        with pytest.raises(ValueError, match=r"input\[700\] = 1.25"):
            fn(to_dev(x), to_dev(t))


def test_bce_range_error_on_device():
    p = np.array([0.2, 1.5, 0.3])
    with pytest.raises(ValueError, match=r"all elements of input should be between 0 and 1; input\[1\] = 1.5"):
        numbaloss.binary_cross_entropy(to_dev(p), to_dev(np.zeros(3)))


def test_mixed_host_and_device_is_a_type_error():
    with pytest.raises(TypeError, match="input is a CUDA device array .* but target is a host array"):
        numbaloss.cross_entropy(to_dev(np.zeros((2, 3))), np.array([0, 1]))
    with pytest.raises(TypeError, match="input is a host array .* but target is a CUDA device array"):
        numbaloss.binary_cross_entropy(np.zeros(3), to_dev(np.zeros(3)))
    with pytest.raises(TypeError, match="but weight is a CUDA device array"):
        numbaloss.cross_entropy(np.zeros((2, 3)), np.array([0, 1]), weight=to_dev(np.ones(3)))


def test_host_weight_with_device_input_is_copied_once():
    x = np.random.default_rng(0).standard_normal((4, 3))
    t = np.array([0, 2, 1, 1])
    w = np.array([1.0, 2.0, 0.5])
    got = host(numbaloss.cross_entropy(to_dev(x), to_dev(t), weight=w))
    assert_close(got, numbaloss.cross_entropy(x, t, weight=w), np.float64)


def test_inputs_are_not_modified_and_results_are_deterministic():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 40)).astype(np.float32)
    t = rng.integers(0, 40, 6)
    dx, dt = to_dev(x), to_dev(t)
    a = numbaloss.cross_entropy(dx, dt, return_grad=True, label_smoothing=0.1)
    b = numbaloss.cross_entropy(dx, dt, return_grad=True, label_smoothing=0.1)
    np.testing.assert_array_equal(host(dx), x)
    np.testing.assert_array_equal(host(dt), t)
    for u, v in zip(a, b):
        assert host(u).tobytes() == host(v).tobytes()


def test_device_validation_matches_cpu():
    x = to_dev(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        numbaloss.cross_entropy(x, to_dev(np.array([0, 1])), reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing must be between 0.0 and 1.0"):
        numbaloss.cross_entropy(x, to_dev(np.array([0, 1])), label_smoothing=2.0)
    with pytest.raises(TypeError, match="input must be float32 or float64, got int64"):
        numbaloss.cross_entropy(to_dev(np.zeros((2, 3), np.int64)), to_dev(np.array([0, 1])))
    with pytest.raises(ValueError, match="weight should be defined either for all 3 classes"):
        numbaloss.cross_entropy(x, to_dev(np.array([0, 1])), weight=np.ones(4))
    with pytest.raises(TypeError, match="weight on the device must have the input's dtype float32, got float64"):
        numbaloss.cross_entropy(x, to_dev(np.array([0, 1])), weight=to_dev(np.ones(3)))


def test_device_arrays_are_recognised():
    from numbaloss.core.dispatch import is_device_array

    assert is_device_array(to_dev(np.zeros(1))) and not is_device_array(np.zeros(1))


# ------------------------------------------------------------------ streams and families
class _Producer:
    """A third-party CUDA array: the interface declares a stream; the data is a (simulator) device array."""

    def __init__(self, host_array, stream):
        self.dev = to_dev(host_array)
        self.__cuda_array_interface__ = {
            "shape": host_array.shape, "typestr": host_array.dtype.str, "data": (0, False), "version": 3, "stream": stream,
        }


@pytest.mark.parametrize(("declared", "handle"), [(None, 0), (1, 0), (2, 2), (0x7F00_1234, 0x7F00_1234)])
def test_declared_stream_reads_the_interface(declared, handle):
    from numbaloss.core import cuda_host

    assert cuda_host.declared_stream(_Producer(np.zeros(2), declared)) == handle
    assert cuda_host.declared_stream(np.zeros(2)) == 0  # nothing declared: the legacy default stream


@on_sim
def test_kernels_run_on_the_input_stream_and_other_streams_are_waited_for(monkeypatch):
    """Every launch goes to the stream the input declares; a target on another stream is synchronized first."""
    from numbaloss.core import cuda_host

    made, synced, launched = [], [], []

    class Stream:
        def __init__(self, handle):
            self.handle = handle
            made.append(handle)

        def synchronize(self):
            synced.append(self.handle)

    monkeypatch.setattr(cuda_host, "_stream", Stream)
    monkeypatch.setattr(cuda, "as_cuda_array", lambda a, sync=True: (launched.append(("sync", sync)), a.dev)[1], raising=False)
    original = cuda_host.Call.launch
    monkeypatch.setattr(cuda_host.Call, "launch", lambda self, *a: (launched.append(self.stream.handle), original(self, *a))[1])
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5))
    t = np.array([0, 4, 2, 1])
    for target_stream, waits in ((77, []), (99, [99])):
        made.clear(), synced.clear(), launched.clear()
        loss, grad = numbaloss.cross_entropy(_Producer(x, 77), _Producer(t, target_stream), return_grad=True)
        want, want_grad = numbaloss.cross_entropy(x, t, return_grad=True)
        assert_close(host(loss), want, np.float64)
        assert_close(host(grad), want_grad, np.float64)
        # the call's stream; a foreign stream is waited for first, the call's own once, for the error buffer
        assert made[0] == 77 and synced == waits + [77]
        assert [s for s in launched if isinstance(s, int)] and all(s == 77 for s in launched if isinstance(s, int))
        assert ("sync", True) not in launched  # imports never block on the whole stream


@on_sim
def test_input_on_another_device_is_a_clear_error(monkeypatch):
    from types import SimpleNamespace

    from numbaloss.core import cuda_host

    monkeypatch.setattr(cuda, "get_current_device", lambda: SimpleNamespace(id=0))
    with pytest.raises(ValueError, match=r"input is on CUDA device 1 but Numba's current device in this thread is 0"):
        cuda_host.Call._check_device(1)
    cuda_host.Call._check_device(0)


# The rest needs a real GPU (and the family's library): run by benchmarks/gpu_check.sh.
on_gpu = pytest.mark.skipif(SIM, reason="needs a real GPU")
FAMILY_CASES = [
    ("cross_entropy", {"label_smoothing": 0.1}),
    ("nll_loss", {"ignore_index": 1}),
    ("binary_cross_entropy", {}),
    ("binary_cross_entropy_with_logits", {"pos_weight": np.full(6, 2.0, np.float32)}),
]


def _family_inputs(name, rng):
    if name in ("cross_entropy", "nll_loss"):
        return rng.standard_normal((9, 6)).astype(np.float32), rng.integers(0, 6, 9)
    x = rng.random((9, 6)).astype(np.float32) if name == "binary_cross_entropy" else rng.standard_normal((9, 6)).astype(np.float32)
    return x, rng.random((9, 6)).astype(np.float32)


@on_gpu
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize(("name", "kwargs"), FAMILY_CASES, ids=[c[0] for c in FAMILY_CASES])
@pytest.mark.parametrize("lib", ["torch", "cupy"])
def test_families_round_trip_on_gpu(lib, name, kwargs, reduction):
    """torch CUDA in -> torch CUDA out, CuPy in -> CuPy out; values as on the CPU; inputs untouched."""
    mod = pytest.importorskip(lib)
    if lib == "torch" and not mod.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    rng = np.random.default_rng(5)
    x, t = _family_inputs(name, rng)
    to = (lambda a: mod.as_tensor(a, device="cuda")) if lib == "torch" else mod.asarray
    back = (lambda a: a.cpu().numpy()) if lib == "torch" else mod.asnumpy
    dx, dt = to(x), to(t)
    fn = LOSSES[name][0]
    want, want_grad = fn(x, t, reduction=reduction, return_grad=True, **kwargs)
    loss, grad = fn(dx, dt, reduction=reduction, return_grad=True, **kwargs)
    for got, ref in ((loss, want), (grad, want_grad)):
        assert type(got) is type(dx) and got.dtype == dx.dtype and tuple(got.shape) == np.shape(ref)
        assert_close(back(got), ref, np.float32)
    np.testing.assert_array_equal(back(dx), x)
    np.testing.assert_array_equal(back(dt), t)


@on_gpu
def test_torch_side_stream_is_respected():
    """On a non-default torch stream, numbaloss waits for the producing work queued there (no host sync)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4096, 1000)).astype(np.float32)
    t = rng.integers(0, 1000, 4096)
    want, want_grad = numbaloss.cross_entropy(x, t, return_grad=True)
    src, dt = torch.as_tensor(x, device="cuda"), torch.as_tensor(t, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        late = torch.zeros_like(src)
        torch.cuda._sleep(200_000_000)  # the producer is still busy when numbaloss is called
        late.copy_(src)
        loss, grad = numbaloss.cross_entropy(late, dt, return_grad=True)
        got, got_grad = loss.cpu().numpy(), grad.cpu().numpy()
    assert_close(got, want, np.float32)
    assert_close(got_grad, want_grad, np.float32)


@on_gpu
def test_numba_array_bound_to_a_stream():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((33, 70))
    t = rng.integers(0, 70, 33)
    s = cuda.stream()
    loss, grad = numbaloss.cross_entropy(cuda.to_device(x, stream=s), cuda.to_device(t, stream=s), return_grad=True)
    s.synchronize()
    want, want_grad = numbaloss.cross_entropy(x, t, return_grad=True)
    assert_close(host(loss), want, np.float64)
    assert_close(host(grad), want_grad, np.float64)


@on_sim
def test_simulator_shared_array_is_one_per_block_under_thread_switches():
    """The block sums rely on every thread of a block seeing one shared array; the simulator's own
    lookup races under the short switch interval conftest.py sets (see there), so conftest.py replaces it.
    A block of threads reaching the same ``cuda.shared.array`` line at once must get one array, and a
    block sum over it must count every thread, launch after launch."""
    from numba import float64
    from numba.cuda.simulator.kernelapi import FakeCUDAShared

    from numbaloss.core.cuda_reduce import TPB, store_block_sum

    @cuda.jit
    def count(part):
        sm = cuda.shared.array(TPB, float64)
        store_block_sum(1.0, sm, cuda.threadIdx.x, part)

    for _ in range(20):
        part = cuda.to_device(np.zeros(3))
        count[3, TPB](part)
        assert part.copy_to_host().tolist() == [TPB] * 3

    import threading

    def take(shared, barrier, got):
        barrier.wait()
        got.append(shared.array(8, np.float64))

    for _ in range(50):  # the original lookup gave two arrays in about 1 round in 10 here
        shared, barrier, got = FakeCUDAShared(0), threading.Barrier(32), []
        threads = [threading.Thread(target=take, args=(shared, barrier, got)) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 32 and all(a is got[0] for a in got)
