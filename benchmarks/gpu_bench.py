"""numbaloss vs torch.nn.functional on a CUDA device: correctness and speed (run by gpu_check.sh).

Times with CUDA events, best of repeats, inputs as torch CUDA tensors (zero-copy
into numbaloss).  Bandwidth figures count the bytes each call must move; the
reference is a measured device-to-device copy.
"""

import time

import numpy as np
import torch
import torch.nn.functional as F

import numbaloss
from numbaloss.bench import PAIRS

dev = torch.device("cuda")
#: The issue's workloads (float32): cross-entropy (rows, classes) and the BCE element count.
CE_SHAPES = ((8192, 32000), (4096, 128000))
BCE_N = 1 << 26
#: The row losses' workloads (rows, row length), as in the CPU issue.
ROW_SHAPES = {"multilabel_soft_margin_loss": (16384, 1000), "cosine_embedding_loss": (65536, 512),
              "multi_margin_loss": (65536, 1000), "triplet_margin_loss": (65536, 512),
              "multilabel_margin_loss": (16384, 1000)}
#: ctc_loss's workloads (T, N, C, S), as in the issue: log-softmax inputs, full lengths.
CTC_SHAPES = ((200, 32, 64, 40), (1000, 64, 512, 200))
COPY_N = 1 << 28
#: Timed repeats per measurement (the best is kept).
REPEATS = 20


def count(n):
    return f"2^{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n)


def cuda_time(fn, repeats=None):
    repeats = repeats or REPEATS
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        best = min(best, a.elapsed_time(b) / 1e3)
    return best


def copy_bandwidth():
    x = torch.empty(COPY_N, dtype=torch.float32, device=dev)
    y = torch.empty_like(x)
    return 2 * x.numel() * 4 / cuda_time(lambda: y.copy_(x))


def check(name, ours, theirs, rtol=2e-5):
    ours = torch.as_tensor(ours, device=dev).double()
    theirs = theirs.double()
    scale = theirs.abs().max().clamp_min(1e-30)
    err = ((ours - theirs).abs() / (theirs.abs() * rtol + 2e-6 * scale)).max().item()
    status = "ok" if err <= 1 else "MISMATCH"
    print(f"| {name} | {status} | {err:.3f} |")
    return status == "ok"


def main():
    print(f"# numbaloss on {torch.cuda.get_device_name()}\n")
    bw = copy_bandwidth()
    print(f"measured device-to-device copy bandwidth: {bw / 1e9:.0f} GB/s (bytes read + written)\n")
    torch.manual_seed(0)
    print("| correctness check | status | max error / tolerance |\n|---|---|---:|")
    ok = True
    for (n, c) in CE_SHAPES:
        x = torch.randn(n, c, device=dev)
        y = torch.randint(0, c, (n,), device=dev)
        xx = x.clone().requires_grad_()
        tl = F.cross_entropy(xx, y)
        tl.backward()
        loss, grad = numbaloss.cross_entropy(x, y, return_grad=True)
        ok &= check(f"cross_entropy {n}x{c} loss", loss, tl.detach())
        ok &= check(f"cross_entropy {n}x{c} grad", grad, xx.grad)
    for name in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        n = BCE_N
        x = torch.rand(n, device=dev) if name == "binary_cross_entropy" else torch.randn(n, device=dev)
        t = torch.rand(n, device=dev)
        xx = x.clone().requires_grad_()
        tl = getattr(F, name)(xx, t)
        tl.backward()
        loss, grad = getattr(numbaloss, name)(x, t, return_grad=True)
        ok &= check(f"{name} {count(n)} loss", loss, tl.detach())
        ok &= check(f"{name} {count(n)} grad", grad, xx.grad)
    for name in ELEMENTWISE:
        data, options = elementwise_inputs(name, BCE_N // 4)
        loss, grads = getattr(numbaloss, name)(**data, **options, return_grad=True)
        want, want_grads = torch_fwd_bwd(name, data, options)
        ok &= check(f"{name} {count(BCE_N // 4)} loss", loss, want)
        for g, arg, w in zip(grads if isinstance(grads, tuple) else (grads,), numbaloss.REGISTRY[name].grads, want_grads):
            ok &= check(f"{name} {count(BCE_N // 4)} grad {arg}", g, w)
    for name, (rows, cols) in ROW_SHAPES.items():
        data = row_inputs(name, rows, cols)
        loss, grads = getattr(numbaloss, name)(**data, return_grad=True)
        want, want_grads = torch_fwd_bwd(name, data, {})
        ok &= check(f"{name} {rows}x{cols} loss", loss, want)
        for g, arg, w in zip(grads if isinstance(grads, tuple) else (grads,), numbaloss.REGISTRY[name].grads, want_grads):
            ok &= check(f"{name} {rows}x{cols} grad {arg}", g, w)
    for shape in CTC_SHAPES:
        x, data = ctc_inputs(*shape)
        loss, grad = numbaloss.ctc_loss(x.log_softmax(-1), **data, return_grad=True)
        grad = torch.as_tensor(grad, device=dev)
        want, want_logits = ctc_torch(x, data)
        # torch's gradient convention differs (exact + exp(log_probs)): compare through log_softmax
        logits = grad - torch.softmax(x, -1) * grad.sum(-1, keepdim=True)
        ok &= check(f"ctc_loss T={shape[0]} N={shape[1]} C={shape[2]} S={shape[3]} loss", loss, want)
        ok &= check(f"ctc_loss T={shape[0]} N={shape[1]} C={shape[2]} S={shape[3]} grad (logits)", logits, want_logits,
                    rtol=1e-3)
        again = torch.as_tensor(numbaloss.ctc_loss(x.log_softmax(-1), **data, return_grad=True)[1], device=dev)
        same = bool(torch.equal(again, grad))
        print(f"| ctc_loss T={shape[0]} gradient bitwise equal on a second call | {'ok' if same else 'MISMATCH'} | |")
        ok &= same
    print(f"\nall correct: {ok}\n")

    print("| workload (float32) | numbaloss ms | torch ms | speedup | GB/s | % of copy BW |\n|---|---:|---:|---:|---:|---:|")
    for (n, c) in CE_SHAPES:
        x = torch.randn(n, c, device=dev)
        y = torch.randint(0, c, (n,), device=dev)
        t_ours = cuda_time(lambda: numbaloss.cross_entropy(x, y))
        t_torch = cuda_time(lambda: F.cross_entropy(x, y))
        nbytes = x.numel() * 4
        print(f"| cross_entropy fwd {n}x{c} | {t_ours * 1e3:.3f} | {t_torch * 1e3:.3f} | {t_torch / t_ours:.2f}x | {nbytes / t_ours / 1e9:.0f} | {100 * nbytes / t_ours / bw:.0f}% |")

        def torch_fb():
            xx = x.detach().requires_grad_()
            F.cross_entropy(xx, y).backward()

        t_ours = cuda_time(lambda: numbaloss.cross_entropy(x, y, return_grad=True))
        t_torch = cuda_time(torch_fb)
        nbytes = 3 * x.numel() * 4
        print(f"| cross_entropy fwd+grad {n}x{c} | {t_ours * 1e3:.3f} | {t_torch * 1e3:.3f} | {t_torch / t_ours:.2f}x | {nbytes / t_ours / 1e9:.0f} | {100 * nbytes / t_ours / bw:.0f}% |")
    for name in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        n = BCE_N
        x = torch.rand(n, device=dev) if name == "binary_cross_entropy" else torch.randn(n, device=dev)
        t = torch.rand(n, device=dev)
        fn = getattr(numbaloss, name)
        tf = getattr(F, name)
        t_ours = cuda_time(lambda: fn(x, t))
        t_torch = cuda_time(lambda: tf(x, t))
        nbytes = 2 * n * 4
        print(f"| {name} {count(n)} | {t_ours * 1e3:.3f} | {t_torch * 1e3:.3f} | {t_torch / t_ours:.2f}x | {nbytes / t_ours / 1e9:.0f} | {100 * nbytes / t_ours / bw:.0f}% |")
    for name in ELEMENTWISE:  # the rest of the elementwise template's losses: forward, forward+gradient
        n = BCE_N
        data, options = elementwise_inputs(name, n)
        spec = numbaloss.REGISTRY[name]
        fn = getattr(numbaloss, name)
        read = sum(a.numel() * 4 for a in data.values())
        for fused in (False, True):
            t_ours = cuda_time(lambda: fn(**data, **options, return_grad=fused))
            t_torch = cuda_time(lambda: torch_fwd_bwd(name, data, options) if fused else getattr(F, name)(**data, **options))
            nbytes = read + (len(spec.grads) * n * 4 if fused else 0)
            label = f"{name}{' fwd+grad' if fused else ''} {count(n)}"
            print(f"| {label} | {t_ours * 1e3:.3f} | {t_torch * 1e3:.3f} | {t_torch / t_ours:.2f}x | {nbytes / t_ours / 1e9:.0f} | {100 * nbytes / t_ours / bw:.0f}% |")
        del data
    for name, (rows, cols) in ROW_SHAPES.items():  # the row losses: forward, forward+gradient
        data = row_inputs(name, rows, cols)
        spec = numbaloss.REGISTRY[name]
        fn = getattr(numbaloss, name)
        read = sum(a.numel() * a.element_size() for a in data.values())
        for fused in (False, True):
            t_ours = cuda_time(lambda: fn(**data, return_grad=fused))
            t_torch = cuda_time(lambda: torch_fwd_bwd(name, data, {}) if fused else getattr(F, name)(**data))
            nbytes = read + (len(spec.grads) * rows * cols * 4 if fused else 0)
            label = f"{name}{' fwd+grad' if fused else ''} {rows}x{cols}"
            print(f"| {label} | {t_ours * 1e3:.3f} | {t_torch * 1e3:.3f} | {t_torch / t_ours:.2f}x | {nbytes / t_ours / 1e9:.0f} | {100 * nbytes / t_ours / bw:.0f}% |")
        del data
    for shape in CTC_SHAPES:  # ctc_loss: forward, forward+gradient (torch: log-softmax outputs as leaves)
        x, data = ctc_inputs(*shape)
        lp = x.log_softmax(-1).detach()
        read = lp.numel() * 4
        for fused in (False, True):
            t_ours = cuda_time(lambda: numbaloss.ctc_loss(lp, **data, return_grad=fused))
            t_torch = cuda_time(lambda: ctc_torch(lp, data, leaf=True) if fused else F.ctc_loss(lp, **data))
            nbytes = read * (2 if fused else 1)
            label = f"ctc_loss{' fwd+grad' if fused else ''} T={shape[0]} N={shape[1]} C={shape[2]} S={shape[3]}"
            print(f"| {label} | {t_ours * 1e3:.3f} | {t_torch * 1e3:.3f} | {t_torch / t_ours:.2f}x | {nbytes / t_ours / 1e9:.0f} | {100 * nbytes / t_ours / bw:.0f}% |")
    print("\nThe cross-entropy row kernel alone (its own bandwidth, without the call's host work and small kernels):\n")
    print("| kernel (float32) | ms | GB/s | % of copy BW |\n|---|---:|---:|---:|")
    for (n, c) in CE_SHAPES:
        for fused in (False, True):
            t_k, nbytes = row_kernel_time(n, c, fused)
            label = f"rows {n}x{c} {'fwd+grad' if fused else 'fwd'}"
            print(f"| {label} | {t_k * 1e3:.3f} | {nbytes / t_k / 1e9:.0f} | {100 * nbytes / t_k / bw:.0f}% |")

    print("\nBack to back (10 calls between two events, per call): the host may queue ahead of the GPU")
    print("except where a call reads its error buffer (cross_entropy's targets, BCE's range check).\n")
    print("| workload (float32) | numbaloss ms/call | torch ms/call | speedup |\n|---|---:|---:|---:|")
    (n, c) = CE_SHAPES[0]
    x = torch.randn(n, c, device=dev)
    y = torch.randint(0, c, (n,), device=dev)
    xb, tb = torch.randn(BCE_N, device=dev), torch.rand(BCE_N, device=dev)
    for label, ours, theirs in (
        (f"cross_entropy fwd {n}x{c}", lambda: numbaloss.cross_entropy(x, y), lambda: F.cross_entropy(x, y)),
        (f"binary_cross_entropy_with_logits {count(BCE_N)}", lambda: numbaloss.binary_cross_entropy_with_logits(xb, tb),
         lambda: F.binary_cross_entropy_with_logits(xb, tb)),
    ):
        t_ours = cuda_time(lambda: [ours() for _ in range(10)], repeats=min(5, REPEATS)) / 10
        t_torch = cuda_time(lambda: [theirs() for _ in range(10)], repeats=min(5, REPEATS)) / 10
        print(f"| {label} | {t_ours * 1e3:.3f} | {t_torch * 1e3:.3f} | {t_torch / t_ours:.2f}x |")
    del x, xb, tb

    small = torch.randn(64, 10, device=dev)
    ys = torch.randint(0, 10, (64,), device=dev)
    sb, st = torch.randn(64, device=dev), torch.rand(64, device=dev)
    print("\nPer-call overhead at 64x10 / 64 elements (host wall clock, synchronized, best of 200):\n")
    print("| call | numbaloss us | torch us |\n|---|---:|---:|")
    for label, ours, theirs in (
        ("cross_entropy 64x10", lambda: numbaloss.cross_entropy(small, ys), lambda: F.cross_entropy(small, ys)),
        ("binary_cross_entropy_with_logits 64", lambda: numbaloss.binary_cross_entropy_with_logits(sb, st),
         lambda: F.binary_cross_entropy_with_logits(sb, st)),
    ):
        print(f"| {label} | {wall_time(ours) * 1e6:.0f} | {wall_time(theirs) * 1e6:.0f} |")


#: The other losses of the elementwise template, with inputs in their domain (numbaloss.bench's makers).
ELEMENTWISE = list(PAIRS)


def elementwise_inputs(name, n):
    """``({argument name: float32 CUDA tensor}, options)`` for one loss of :data:`ELEMENTWISE`."""
    x, t, *third = PAIRS[name](np.random.default_rng(0), n)
    spec = numbaloss.REGISTRY[name]
    arrays = dict(zip(spec.arrays, (x, t)), **(third[0] if third else {}))
    data = {k: torch.from_numpy(np.asarray(v, np.float32)).to(dev) for k, v in arrays.items()}
    return data, ({"reduction": "batchmean"} if name == "kl_div" else {})


def row_inputs(name, rows, cols):
    """``{argument name: CUDA tensor}`` for a row loss: reals, 0/1 labels, one 1/-1 label or class per row
    (the registry's ``family`` says which)."""
    spec = numbaloss.REGISTRY[name]
    kinds = dict(spec.family.values)
    data = {}
    for a in spec.arrays:
        shape = (rows,) if a in spec.family.per_row else (rows, cols)
        kind = kinds.get(a, "reals")
        v = torch.randn(shape, device=dev)
        data[a] = (v > 0.5).float() if kind == "labels" else (torch.sign(v) if kind == "signs" else v)
        if kind == "classes":
            data[a] = torch.randint(0, cols, shape, device=dev)
        if kind == "label_lists":  # five labels per row, then -1
            lab = torch.randint(0, cols, shape, device=dev)
            data[a] = torch.where(torch.arange(cols, device=dev) < 5, lab, torch.full_like(lab, -1))
    return data


def ctc_inputs(T, N, C, S):
    """``(logits, {targets, input_lengths, target_lengths})``: CUDA logits, padded targets, lengths on the host."""
    x = torch.randn(T, N, C, device=dev)
    targets = torch.randint(1, C, (N, S), device=dev)
    return x, {"targets": targets, "input_lengths": torch.full((N,), T), "target_lengths": torch.full((N,), S)}


def ctc_torch(x, data, leaf=False):
    """torch's ``ctc_loss`` and its gradient with respect to ``x`` (logits through log_softmax, or, with
    ``leaf``, the log-probabilities themselves)."""
    xx = x.detach().requires_grad_()
    loss = F.ctc_loss(xx if leaf else xx.log_softmax(-1), **data)
    loss.backward()
    return loss.detach(), xx.grad


def torch_fwd_bwd(name, data, options):
    """torch's loss and its gradients with respect to the arrays numbaloss returns gradients for."""
    spec = numbaloss.REGISTRY[name]
    args = {k: (v.detach().requires_grad_() if k in spec.grads else v) for k, v in data.items()}
    loss = getattr(F, name)(**args, **options)
    loss.backward()
    return loss.detach(), [args[k].grad for k in spec.grads]


def row_kernel_time(n, c, fused):
    """Time one launch of the cross-entropy row kernel on prepared Numba arrays (mean, valid class targets).

    Bytes counted: the logits read once, plus the gradient written when ``fused``.
    """
    from numba import cuda

    from numbaloss.core import cuda_host, cuda_reduce
    from numbaloss.losses.classification import cuda as cc

    rng = np.random.default_rng(0)
    x = cuda.to_device(rng.standard_normal((n, c), dtype=np.float32))
    cls = cuda.to_device(rng.integers(0, c, n))
    call = cuda_host.Call(x)
    loss_rows = call.empty(n, np.float64)
    grad = call.empty((n, c), np.float32) if fused else call.nothing(np.float32, 2)
    denom = call.to_device(np.array([float(n)]))
    kern, grid = (cc._ce_rows_warp, -(-n // (cuda_reduce.TPB // cuda_reduce.WARP))) if c <= cc.WARP_ROW_MAX_C else (cc._ce_rows_block, n)
    args = (x, cls, call.nothing(np.float32, 2), call.nothing(np.float32), 0.0, float(c), call.nothing(np.float64), 1.0,
            denom, 0.0, True, loss_rows, grad, 1)
    t = cuda_time(lambda: call.launch(kern, grid, *args))
    return t, n * c * 4 * (2 if fused else 1)


def wall_time(fn, repeats=None):
    repeats = repeats or 10 * REPEATS
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    main()
