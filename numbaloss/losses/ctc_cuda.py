"""``ctc_loss`` on the GPU: one thread block per sample, the extended-label states across its threads.

Each time step is one pass of the block over the states (a barrier between steps); ``alpha`` lives
in a global workspace (every step when the gradient is wanted, two rows otherwise) and ``beta`` in
two rows.  The gradient of a class sums its states' occupancies in a fixed order (the blank's over
the block with :func:`~numbaloss.core.cuda_reduce.group_sum`, a label's along the chain of its
repeats), so it is deterministic, without atomics (torch's CUDA backward is not).  The formulas
are the CPU kernel's (:mod:`numbaloss.losses.ctc`); the recursion runs over every state, as torch's.
A label outside ``[0, C)`` or equal to ``blank`` is recorded in the error buffer before any
log-probability is read through it.  Imported by name only when a CUDA array arrives.
"""

import math

import numpy as np
from numba import config, cuda, float64, int32

from ..core import cuda_host
from ..core.cuda_host import HostTarget, finish_rows, shared
from ..core.cuda_reduce import TPB, group_sum
from ..core.dispatch import is_device_array
from ..core.validate import float_dtype
from .ctc import (NEG_INF, can_skip, check_labels, ctc_layout, extended_label, log_add3, occupancy_exponent,
                  raise_bad_label, sample_scale)

#: Threads per sample: a block on the GPU; one warp on the simulator (each of its threads is a Python
#: thread, and a one-warp group_sum needs no block barrier).
THREADS = 32 if config.ENABLE_CUDASIM else TPB

_label = shared(extended_label)  # (they read the labels array)
_skips = shared(can_skip)


@cuda.jit
def _ctc_samples(lp, labels, offsets, il, tl, blank, zero_infinity, divide, wscale, alpha, beta, occ, links, loss_rows,
                 grad, err):
    """Sample ``blockIdx.x``: its labels checked, the forward recursion, ``loss_rows[n]`` (divided by the
    target length for the mean) and, with ``grad``, the backward recursion writing ``grad[:, n, :]``."""
    sm = cuda.shared.array(TPB, float64)
    bad = cuda.shared.array(1, int32)
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    T = lp.shape[0]
    C = lp.shape[2]
    Tn = il[n]
    S = tl[n]
    L = 2 * S + 1
    off = offsets[n]
    if tid == 0:
        bad[0] = 0
    cuda.syncthreads()
    for j in range(tid, S, THREADS):
        v = labels[off + j]
        if v < 0 or v >= C or v == blank:
            cuda.atomic.min(err, 0, off + j)
            bad[0] = 1
    cuda.syncthreads()
    if bad[0] != 0:  # the same for every thread: none reads a log-probability through a bad label
        if tid == 0:
            loss_rows[n] = 0.0
        return
    full = grad.size > 0
    a = alpha[n]
    for s in range(tid, L, THREADS):
        a[0, s] = lp[0, n, _label(labels, off, s, blank)] if s < 2 and Tn > 0 else NEG_INF
    cuda.syncthreads()
    for t in range(1, Tn):
        rp = (t - 1) if full else (t - 1) & 1
        rc = t if full else t & 1
        for s in range(tid, L, THREADS):
            x1 = a[rp, s - 1] if s >= 1 else NEG_INF
            x2 = a[rp, s - 2] if _skips(labels, off, s) else NEG_INF
            a[rc, s] = log_add3(a[rp, s], x1, x2) + lp[t, n, _label(labels, off, s, blank)]
        cuda.syncthreads()
    if tid == 0:
        if Tn == 0:
            logp = 0.0 if S == 0 else NEG_INF
        else:
            last = (Tn - 1) if full else (Tn - 1) & 1
            logp = log_add3(a[last, L - 1], a[last, L - 2] if L > 1 else NEG_INF, NEG_INF)
        nll = -logp
        value = 0.0 if zero_infinity and nll == math.inf else nll
        loss_rows[n] = value / max(S, 1) if divide else value
        sm[0] = nll
    cuda.syncthreads()
    nll = sm[0]
    cuda.syncthreads()
    if not full:
        return
    for k in range(tid, T * C, THREADS):
        grad[k // C, n, k % C] = 0.0
    if (zero_infinity and nll == math.inf) or Tn == 0:
        return
    if not nll < math.inf:  # NaN or an impossible alignment: NaN for t < input_length, as torch
        cuda.syncthreads()
        for k in range(tid, Tn * C, THREADS):
            grad[k // C, n, k % C] = math.nan
        return
    w = wscale[n]
    lk = links[n]
    o = occ[n]
    b = beta[n]
    for s in range(tid, L, THREADS):  # per label state: the next state of its class, and whether it is the first
        nxt = -1
        first = 1
        if s % 2 == 1:
            v = labels[off + s // 2]
            for j in range(s // 2 + 1, S):
                if nxt < 0 and labels[off + j] == v:
                    nxt = 2 * j + 1
            for j in range(s // 2):
                if labels[off + j] == v:
                    first = 0
        lk[0, s] = nxt
        lk[1, s] = first
    cuda.syncthreads()
    for t in range(Tn - 1, -1, -1):
        rc = t & 1
        rn = (t + 1) & 1
        for s in range(tid, L, THREADS):
            y = float64(lp[t, n, _label(labels, off, s, blank)])
            if t == Tn - 1:
                bv = y if s >= L - 2 else NEG_INF
            else:
                x1 = b[rn, s + 1] if s + 1 < L else NEG_INF
                x2 = b[rn, s + 2] if s + 2 < L and _skips(labels, off, s + 2) else NEG_INF
                bv = log_add3(b[rn, s], x1, x2) + y
            b[rc, s] = bv
            # (torch's last step counts only the two final states)
            o[s] = math.exp(occupancy_exponent(a[t, s], bv, y, nll)) if t < Tn - 1 or s >= L - 2 else 0.0
        cuda.syncthreads()
        acc = 0.0
        for s in range(2 * tid, L, 2 * THREADS):  # the blank's states, each thread's in a fixed order
            acc += o[s]
        total = group_sum(acc, sm, tid, THREADS)
        if tid == 0:
            grad[t, n, blank] = -w * total
        for s in range(tid, L, THREADS):
            if s % 2 == 1 and lk[1, s] == 1:  # a label's first state sums its class along the chain
                acc = 0.0
                k = s
                while k >= 0:
                    acc += o[k]
                    k = lk[0, k]
                grad[t, n, labels[off + s // 2]] = -w * acc
        cuda.syncthreads()


def run(spec, log_probs, targets, input_lengths, target_lengths, *, reduction, return_grad, grad_output, blank=0,
        zero_infinity=False):
    """The device path of ``ctc_loss`` (see :class:`numbaloss.core.registry.Loss`): ``targets`` and the
    lengths may be host or device arrays (lengths are read on the host, as torch does)."""
    call = cuda_host.Call(log_probs)
    x = call.input(log_probs, "log_probs")
    dtype = float_dtype(x.dtype, "log_probs")
    on_device = is_device_array(targets)
    t = call.view(targets, "targets") if on_device else np.asarray(targets)
    # the lengths are read on the host (N integers: validated there, as torch does)
    T, N, C, loss_shape, il, tl, offsets = ctc_layout(x.shape, t.shape, t.dtype, call.host(input_lengths, "input_lengths"),
                                                      call.host(target_lengths, "target_lengths"), blank)
    if not x.is_c_contiguous():
        raise ValueError("log_probs: non-contiguous Numba device arrays are not supported here; pass a contiguous array")
    if on_device:
        if not t.is_c_contiguous():
            raise ValueError("targets: non-contiguous Numba device arrays are not supported here; pass a contiguous array")
        labels = t.reshape(t.size) if t.size else call.nothing(np.int64)
    else:
        check_labels(t if t.ndim == 2 else t.reshape(-1), tl, blank, C)
        labels = call.to_device(np.ascontiguousarray(t, np.int64).reshape(-1)) if t.size else call.nothing(np.int64)
    lp = x.reshape(T, N, C)
    w = sample_scale(reduction, call.host(grad_output, "grad_output"), tl, loss_shape, return_grad)
    w = call.to_device(w) if N else call.nothing(np.float64)
    Lmax = 2 * int(tl.max(initial=0)) + 1
    grad = call.empty((T, N, C), dtype) if return_grad else call.nothing(dtype, 3)
    alpha = call.empty((N, max(T, 1) if return_grad else 2, Lmax), np.float64) if N else call.nothing(np.float64, 3)
    beta = call.empty((N, 2, Lmax), np.float64) if return_grad else call.nothing(np.float64, 3)
    occ = call.empty((N, Lmax), np.float64) if return_grad else call.nothing(np.float64, 2)
    links = call.empty((N, 2, Lmax), np.int32) if return_grad else call.nothing(np.int32, 3)
    loss_rows = call.empty(N, np.float64)
    err = call.error_buffer()
    if N:
        _ctc_samples[N, THREADS, call.stream](lp, labels, call.to_device(offsets), call.to_device(il), call.to_device(tl),
                                              int(blank), bool(zero_infinity), reduction == "mean", w, alpha, beta, occ,
                                              links, loss_rows, grad, err)
    value = finish_rows(call, reduction, loss_rows, (call.nothing(np.float64), float(N)), dtype, loss_shape)
    pos = call.first_error(err)
    if pos >= 0:  # (only device targets are checked on the device)
        raise_bad_label(int(HostTarget(t)[pos]), pos, tuple(t.shape), blank, C)
    return value, ((call.result(grad.reshape(x.shape)),) if return_grad else ())
