r"""Connectionist temporal classification: ``ctc_loss``.

Each sample's target ``l_1 .. l_S`` is extended with blanks to ``l' = (blank, l_1, blank, l_2,
..., l_S, blank)`` (length ``L = 2S + 1``); the forward variables ``alpha_t(s)`` (the log
probability of every path prefix ending in state ``s`` at time ``t``) and the backward ones
``beta_t(s)`` follow the recursions of Graves et al. (2006) in log space, with a stable
three-term log-add (:func:`log_add3`).  The variables and sums are float64; for float32 inputs the
log-add's bounded correction term is float32 (see :func:`_log_add_rows`).

The CPU kernel runs one sample per parallel task (samples taken longest first, dynamically
scheduled, so ragged lengths balance); each task writes only its own loss and its own
``grad[:, n, :]``, in a fixed order: no atomics, bitwise the same for any thread count.  Each time
step computes only the states that can be on a complete path (:func:`state_window`).  The
formulas below are shared with the CUDA kernel (:mod:`numbaloss.losses.ctc_cuda`), which runs
every state, as torch does.

**The gradient is the exact partial derivative with respect to** ``log_probs``:
``d loss / d lp[t, n, c] = -exp(log sum_{s: l'_s = c} alpha_t(s) beta_t(s) - lp[t, n, c] + loss)``,
zero for classes not in the target and for ``t >= input_length``.  torch returns this plus
``exp(lp)`` (it assumes ``lp`` came from ``log_softmax``; pytorch issue #52241): both give the
same gradient with respect to the logits through ``log_softmax``, but only this one is the
derivative for any other input.
"""

import numbers

import numba
import numpy as np

from ..core import reduce
from ..core import vmath as vm
from ..core.dispatch import host_array
from ..core.jit import blocked, internal, scalar
from ..core.registry import register, run
from ..core.validate import float_dtype

NEG_INF = -np.inf
U = np.uint64  # an index known to be >= 0: no wrap-around check, so the loops vectorize


# ------------------------------------------------------------------ formulas (CPU and CUDA)
@scalar
def log_add3_parts(a, b, c):
    """``(m, mid - m, lo - m)`` for ``log(e^a + e^b + e^c) = m + log(1 + e^(mid - m) + e^(lo - m))``, ``m``
    the largest term; ``m`` is NaN when any term is NaN or ``+inf`` (as torch's log-add, whose
    ``e^(m - m)`` is then NaN), and the differences are ``-inf`` (not NaN) when all three are ``-inf``."""
    hi = a if a > b else b
    lo = b if a > b else a
    m = hi if hi > c else c
    mid = c if hi > c else hi
    ms = m if m > NEG_INF else 0.0
    return (m if (a == a) & (b == b) & (c == c) & (m != np.inf) else np.nan), mid - ms, lo - ms


@scalar
def log_add_correction(d1, d2):
    """``log(1 + e^d1 + e^d2)`` for ``d1, d2 <= 0``, in their precision (in ``[0, log 3]``)."""
    return vm.log(vm.like(1.0, d1) + vm.exp_neg(d1) + vm.exp_neg(d2))


@scalar
def log_add3(a, b, c):
    """``log(e^a + e^b + e^c)``, stable: ``-inf`` when all three are ``-inf``, NaN when any is NaN."""
    m, d1, d2 = log_add3_parts(a, b, c)
    return m + log_add_correction(d1, d2)


@scalar
def occupancy_exponent(log_alpha, log_beta, lp, nll):
    """``log gamma_t(s) = alpha_t(s) + beta_t(s) - lp + nll``: ``gamma_t(s)``, the probability that a path is
    in state ``s`` at time ``t`` (both variables include ``y_t(s) = e^lp``), sums to 1 over the states,
    so this is at most 0 (up to rounding) and its exponential needs no scaling.  ``d nll / d lp[t, c]``
    is minus the sum of ``gamma_t(s)`` over the states of class ``c``.  A state no complete path
    passes (``alpha`` or ``beta`` ``-inf`` and the other not ``+inf`` or NaN; a ``-inf`` log-probability
    included) gets ``-inf``: its derivative is 0 (torch's is NaN there, from ``-inf + inf``)."""
    e = log_alpha + log_beta - lp + nll
    no_path = ((log_alpha == NEG_INF) & (log_beta < np.inf)) | ((log_beta == NEG_INF) & (log_alpha < np.inf))
    return NEG_INF if no_path else e  # (-inf + inf or NaN stays NaN, as torch's)


@scalar
def extended_label(labels, off, s, blank):
    """``l'_s``: the blank at even ``s``, target label ``(s - 1) / 2`` at odd ``s``."""
    return blank if s % 2 == 0 else labels[off + s // 2]


@scalar
def can_skip(labels, off, s):
    """Whether state ``s`` may be entered from ``s - 2``: a label different from the label before it."""
    return s % 2 == 1 and s >= 3 and labels[off + s // 2] != labels[off + s // 2 - 1]


@scalar
def state_window(t, Tn, L, windowed):
    """``[lo, hi)``: the states at time ``t`` both reachable from the start (``s < 2t + 2``) and able to
    reach the end by ``Tn - 1`` (``s >= L - 2 (Tn - t)``); every other state has ``alpha`` or ``beta``
    ``-inf`` and no part in the loss.  Not ``windowed``: all ``L`` states, as torch computes them
    (what a NaN outside the window needs to propagate exactly as in torch)."""
    if not windowed:
        return 0, L
    lo = L - 2 * (Tn - t)
    hi = 2 * t + 2
    return (lo if lo > 0 else 0), (hi if hi < L else L)  # (not max/min: each compiles an overload per caller)


# ------------------------------------------------------------------ CPU kernel
# The state loops index through ``U`` (uint64): a signed index is not known to be >= 0, and Numba's
# negative-index wrap-around then keeps LLVM from vectorizing the loop (3x slower).  (Slices indexed
# from 0 vectorize too, but each costs the cold first call more compile time than the loop it feeds.)
@scalar
def _gather(row, ext, lo, hi, y):
    """``y[s] = row[l'_s]`` for the window's states."""
    for s in range(lo, hi):
        y[s] = row[ext[s]]


@internal
def _log_add_rows(src, i0, i1, i2, skip, k0, y, yo, n, out, oo, work, corr):
    """``out[oo + k] = log(e^src[i0 + k] + e^src[i1 + k] + (e^src[i2 + k] if skip[k0 + k])) + y[yo + k]`` for
    ``k < n``, in three loops: the largest
    terms and differences (float64), the corrections in ``corr``'s precision (float32 for float32
    inputs: LLVM runs that loop twice as wide, and its error, about 1e-7 absolute per step, does not
    grow with the log-probabilities' magnitude as a float32 recursion's does), then the sums."""
    for k in range(n):
        m, d1, d2 = log_add3_parts(src[U(i0 + k)], src[U(i1 + k)], src[U(i2 + k)] if skip[U(k0 + k)] else NEG_INF)
        work[k] = m
        corr[k] = d1
        corr[n + k] = d2
    for k in range(n):
        corr[k] = log_add_correction(corr[k], corr[n + k])
    for k in range(n):
        out[U(oo + k)] = work[k] + np.float64(corr[k]) + y[U(yo + k)]


@internal
def _occupancies(alpha, beta, y, lo, hi, nll, out, corr):
    """``out[s] = gamma`` (:func:`occupancy_exponent`) for ``lo <= s < hi``, the exponential in ``corr``'s precision (the gradient's)."""
    for s in range(lo, hi):
        corr[s - lo] = occupancy_exponent(alpha[U(s + 2)], beta[U(s + 2)], y[U(s)], nll)
    for s in range(lo, hi):
        out[U(s)] = vm.exp_neg(corr[U(s - lo)])


@internal
def _recursion(lp, n, Tn, L, windowed, backward, ext, skip, rows, y, work, corr):
    """The forward (``rows[t] = alpha_t``, from ``t = 0``) or, with ``backward``, the backward recursion
    (``rows[t] = beta_t``, from ``t = Tn - 1``) over the window's states (at index ``s + 2``), each row's
    neighbours outside its window set to ``-inf`` (the next step reads them).  With two rows (no
    gradient wanted), step ``t`` writes row ``t & 1``."""
    keep = rows.shape[0] >= Tn  # every step's row (else two)
    for i in range(Tn):
        t = Tn - 1 - i if backward else i
        cur = rows[t if keep else t & 1]
        lo, hi = state_window(t, Tn, L, windowed)
        _gather(lp[t, n], ext, lo, hi, y)
        cur[lo] = cur[lo + 1] = NEG_INF
        cur[hi + 2] = cur[hi + 3] = NEG_INF
        if i == 0:  # the two first (forward) or the two last (backward) states
            for s in range(lo, hi):
                cur[s + 2] = y[s] if (s >= L - 2 if backward else s < 2) else NEG_INF
        else:
            # alpha_t(s) = log(alpha_{t-1}(s) + alpha_{t-1}(s - 1) + [skip] alpha_{t-1}(s - 2)) + y_t(s);
            # beta_t(s) = log(beta_{t+1}(s) + beta_{t+1}(s + 1) + [skip into s + 2] beta_{t+1}(s + 2)) + y_t(s)
            d = 1 if backward else -1
            p = t + d
            _log_add_rows(rows[p if keep else p & 1], lo + 2, lo + 2 + d, lo + 2 + 2 * d, skip, lo + 1 + d, y, lo, hi - lo,
                          cur, lo + 2, work, corr)


@blocked
def _ctc_kernel(i, order, lp, labels, offsets, in_len, tg_len, blank, zero_infinity, wscale, nll_out, grad):
    """Sample ``order[i]``: the forward recursion (every ``alpha_t`` kept when ``grad`` is wanted, two
    rows otherwise), ``nll_out[n] = -log p``, and with ``grad`` the backward recursion and the
    gradient, writing ``grad[:, n, :]`` (zeros, then the target classes for ``t < input_length``).  Each
    step computes only :func:`state_window`'s states, unless a log-probability of the sample is NaN or +inf."""
    n = order[i]
    C = lp.shape[2]
    Tn = in_len[n]
    S = tg_len[n]
    L = 2 * S + 1
    off = offsets[n]
    # (few array types and no slice assignments: each new one costs a cold first call compile time)
    ext = np.empty(L, np.int64)
    skip = np.empty(L + 2, np.int64)  # padded: skip[s + 2] is read for the last states
    repeats = 0
    for s in range(L):
        ext[s] = extended_label(labels, off, s, blank)
        skip[s] = can_skip(labels, off, s)
        repeats += s % 2 == 1 and s >= 3 and not skip[s]
    skip[L] = skip[L + 1] = 0
    # torch runs every state: a NaN or +inf log-probability of a state outside the window reaches its
    # loss (from above the window) or its gradient (below).  Rare: then (a NaN or +inf anywhere in the
    # sample's rows) every state is computed, as torch does.
    unbounded = 0
    for t in range(Tn):
        row = lp[t, n]
        for c in range(C):
            unbounded += not row[c] < np.inf
    windowed = unbounded == 0
    full = grad.size > 0  # (an empty gradient array, not None: one compiled kernel serves both calls)
    alpha = np.empty((Tn if full and Tn > 0 else 2, L + 4))  # two -inf pads before, two after
    # y (y[L]: 0 for the final log-add), the log-adds' work and the gradient's class sums: rows of one
    # array (np.empty of another shape type compiles again)
    scratch = np.empty((3, L + 1 if L + 1 > C else C))
    y, work, acc = scratch[0], scratch[1], scratch[2]
    corr = np.empty(2 * L, lp.dtype)
    if Tn == 0 or (windowed and Tn < S + repeats):  # too short: each repeat needs a blank between
        logp = 0.0 if S == 0 else NEG_INF  # (the windows of an impossible alignment are empty)
    else:
        # (np.bool_, np.int64: a constant argument would compile the callee once per value)
        _recursion(lp, n, Tn, L, windowed, np.bool_(False), ext, skip, alpha, y, work, corr)
        last = alpha[(Tn - 1) if full else (Tn - 1) & 1]
        # log(alpha(L - 1) + alpha(L - 2)) (state L: a -inf pad; skip[L] = 0: no third term)
        y[L] = 0.0
        _log_add_rows(last, L + 1, L, L + 2, skip, L, y, L, np.int64(1), work, np.int64(0), work, corr)
        logp = work[0]
    nll = -logp
    zeroed = zero_infinity and nll == np.inf
    nll_out[n] = 0.0 if zeroed else nll
    if not full:
        return
    # NaN for t < input_length after an impossible alignment or a NaN (as torch), else zeros to start from
    fill = np.nan if not (zeroed or nll < np.inf) else 0.0
    for t in range(grad.shape[0]):
        for c in range(C):
            grad[t, n, c] = fill if t < Tn else 0.0
    if zeroed or Tn == 0 or fill != 0.0:
        return
    w = wscale[n]
    beta = np.empty(alpha.shape)
    _recursion(lp, n, Tn, L, windowed, np.bool_(True), ext, skip, beta, y, work, corr)
    occ = corr[L:]  # (its second half is free during the occupancies)
    for t in range(Tn):
        lo, hi = state_window(t, Tn, L, windowed)
        if t == Tn - 1:  # torch's last step counts only the two final states (the others' beta is -inf)
            lo = lo if lo > L - 2 else L - 2
        _gather(lp[t, n], ext, lo, hi, y)
        _occupancies(alpha[t], beta[t], y, lo, hi, nll, occ, corr)
        # each class's gradient sums its states' occupancies, in state order (deterministic)
        for s in range(L):
            acc[ext[s]] = 0.0
        for s in range(lo, hi):
            acc[ext[s]] += occ[s]
        for s in range(L):
            grad[t, n, ext[s]] = -w * acc[ext[s]]


# ------------------------------------------------------------------ host
def _lengths(v, name, n, batched):
    """``input_lengths``/``target_lengths`` as int64 host values, ``n`` of them: an int, a list or tuple
    of ints, or an integer array (host or copied from a device by the caller) holding ``n`` values."""
    if isinstance(v, bool) or (isinstance(v, (list, tuple)) and any(isinstance(e, bool) for e in v)):
        raise TypeError(f"{name} must hold integers, got booleans")
    a = np.asarray(v, np.int64 if isinstance(v, (list, tuple)) and not v else None) \
        if isinstance(v, (numbers.Integral, list, tuple)) else host_array(v, name)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integral (an int, a list or tuple of ints, or an integer array), got dtype {a.dtype}")
    if a.size != n:
        raise ValueError(f"{name} must have one entry per sample: expected {n} value{'s' * (n != 1)}, got {a.size} "
                         f"(shape {a.shape})" + ("" if batched else " (unbatched log_probs: one sequence)"))
    a = a.reshape(n)
    if n and a.min() < 0:
        k = int(np.argmax(a < 0))
        raise ValueError(f"{name} must be non-negative, got {int(a[k])} at position {k}")
    if a.dtype == np.uint64 and n and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name}: {int(a.max())} is too large")
    return a.astype(np.int64)


def ctc_layout(lp_shape, t_shape, t_dtype, input_lengths, target_lengths, blank):
    """torch's rules for ``ctc_loss``'s shapes: ``(T, N, C, loss shape, il, tl, offsets, S)`` with the
    lengths as int64 host arrays and ``offsets[n]`` where sample ``n``'s labels start in the flat
    targets (padded ``(N, S)``: ``n * S``; concatenated: the running sum of the target lengths)."""
    lp_shape, t_shape = tuple(lp_shape), tuple(t_shape)
    if len(lp_shape) not in (2, 3):
        raise ValueError(f"log_probs must be (T, N, C) or unbatched (T, C), got shape {lp_shape}")
    batched = len(lp_shape) == 3
    T, C = lp_shape[0], lp_shape[-1]
    N = lp_shape[1] if batched else 1
    if not (isinstance(blank, numbers.Integral) and not isinstance(blank, bool) and 0 <= blank < C):
        raise ValueError(f"blank must be in label range [0, {C}), got {blank!r}")
    if np.dtype(t_dtype).kind not in "iu":
        raise TypeError(f"targets must hold integer class labels, got dtype {np.dtype(t_dtype)}")
    il = _lengths(input_lengths, "input_lengths", N, batched)
    tl = _lengths(target_lengths, "target_lengths", N, batched)
    if N and il.max() > T:
        k = int(np.argmax(il > T))
        raise ValueError(f"input_lengths must be at most the number of time steps T = {T}, got {int(il[k])} at position {k}")
    if len(t_shape) == 2 and t_shape[0] == N:  # padded (N, S)
        S = t_shape[1]
        if N and tl.max() > S:
            k = int(np.argmax(tl > S))
            raise ValueError(f"target_lengths must be at most the padded targets' length S = {S}, got {int(tl[k])} at "
                             f"position {k}")
        offsets = np.arange(N, dtype=np.int64) * S
    elif len(t_shape) == 1:  # concatenated (sum of target_lengths,)
        total = int(tl.sum())
        if t_shape[0] != total:
            raise ValueError(f"concatenated targets must hold sum(target_lengths) = {total} labels, got {t_shape[0]}")
        offsets = np.concatenate(([0], np.cumsum(tl)[:-1])).astype(np.int64) if N else tl
    else:
        raise ValueError(f"targets must be padded (N, S) = ({N}, S) or concatenated 1-d, got shape {t_shape} for "
                         f"log_probs of shape {lp_shape}")
    return T, N, C, ((N,) if batched else ()), il, tl, offsets


def check_labels(targets, tl, blank, n_classes):
    """The first label (in flat order) outside ``[0, C)`` or equal to ``blank`` raises
    (:func:`raise_bad_label`); only the first ``target_lengths[n]`` labels of a padded row are read (as torch)."""
    t = targets
    used = (np.arange(t.shape[1]) < tl[:, None]) if t.ndim == 2 else np.ones(t.shape, bool)
    bad = used & ((t < 0) | (t >= n_classes) | (t == blank))
    if bad.any():
        pos = int(np.argmax(bad.reshape(-1)))
        raise_bad_label(int(t.reshape(-1)[pos]), pos, t.shape, blank, n_classes)


def raise_bad_label(value, pos, shape, blank, n_classes):
    """IndexError for a label outside ``[0, C)``, ValueError for one equal to ``blank``, naming the value
    and its position (``pos`` flat in the targets of ``shape``)."""
    where = tuple(int(i) for i in np.unravel_index(pos, shape))
    if value == blank:
        raise ValueError(f"target label {value} at targets index {where} equals blank = {blank}: the blank cannot be a "
                         f"target label")
    raise IndexError(f"target label {value} is out of range (at targets index {where}; valid labels are 0..{n_classes - 1} "
                     f"except blank = {blank})")


def sample_scale(reduction, grad_output, tl, loss_shape, wanted):
    """Per-sample gradient weights: ``grad_output`` (one per sample for ``"none"``), divided for
    ``"mean"`` by the sample's target length (at least 1) and the batch size."""
    N = tl.size
    scale, stride = reduce.grad_scale(reduction, grad_output, N, loss_shape, wanted)
    w = scale[np.arange(N) * stride] if wanted else np.zeros(N)
    return w / np.maximum(tl, 1) if reduction == "mean" else w


def finish(reduction, nll, tl, dtype, loss_shape):
    """The loss from the per-sample float64 losses: as is (``none``), their pairwise sum, or the mean of
    each divided by its target length (at least 1)."""
    if reduction == "none":
        return nll.astype(dtype).reshape(loss_shape)
    per = nll / np.maximum(tl, 1) if reduction == "mean" else nll
    return reduce.finish(reduction, None, reduce.tree_sum_host(per), nll.size, dtype, loss_shape)


def _ctc_cpu(spec, log_probs, targets, input_lengths, target_lengths, *, reduction, return_grad, grad_output, blank=0,
             zero_infinity=False):
    x = host_array(log_probs, "log_probs")
    dtype = float_dtype(x.dtype, "log_probs")
    t = host_array(targets, "targets")
    T, N, C, loss_shape, il, tl, offsets = ctc_layout(x.shape, t.shape, t.dtype, input_lengths, target_lengths, blank)
    check_labels(t if t.ndim == 2 else t.reshape(-1), tl, blank, C)
    lp = np.ascontiguousarray(x).reshape(T, N, C)
    labels = np.ascontiguousarray(t, np.int64).reshape(-1)
    w = sample_scale(reduction, grad_output, tl, loss_shape, return_grad)
    nll = np.empty(N)
    grad = np.empty((T, N, C) if return_grad else (0, 0, 0), dtype)
    cost = il * (2 * tl + 1)
    order = np.argsort(-cost, kind="stable")  # longest first: the dynamic schedule then balances
    with numba.parallel_chunksize(1):
        _ctc_kernel(N, order, lp, labels, offsets, il, tl, int(blank), bool(zero_infinity), w, nll, grad,
                    work=int(cost.sum()) * 4 if N > 1 else 0)
    value = finish(reduction, nll, tl, dtype, loss_shape)
    return (value, (grad.reshape(x.shape),)) if return_grad else (value, ())


class Sequences:
    """The registry's ``family`` of ``ctc_loss``: makes sample inputs for the tools (benchmarks, asv)."""

    @staticmethod
    def sample(n, dtype, rng, C=16):
        """``(log_probs, targets, input_lengths, target_lengths)`` of about ``n`` log-probabilities:
        ``(T, N, C)`` log-softmax values, padded targets of ``S = T / 4``, ragged lengths."""
        N = max(1, int(np.sqrt(n / C / 4)))
        T = max(4, n // (N * C))
        S = max(1, T // 4)
        x = rng.standard_normal((T, N, C))
        lp = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(dtype)
        il = rng.integers(T // 2 + S // 2 + 1, T + 1, N) if T > 2 else np.full(N, T)
        tl = rng.integers(1, S + 1, N)
        return lp, rng.integers(1, C, (N, S)), il, tl


@register(module="CTCLoss", cpu=_ctc_cpu, cuda="numbaloss.losses.ctc_cuda",
          arrays=("log_probs", "targets", "input_lengths", "target_lengths"), host_ok=("targets", "input_lengths", "target_lengths"),
          grads=("log_probs",),
          mean="each sample's loss divided by its target length (at least 1), averaged over the batch",
          family=Sequences())
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False, *,
             return_grad=False, grad_output=None):
    r"""Connectionist temporal classification loss, as ``torch.nn.functional.ctc_loss``.

    .. math::
        \ell_n = -\log \sum_{\pi \in \mathcal{B}^{-1}(l_n)} \prod_{t < T_n} e^{\mathrm{lp}_{t, n, \pi_t}}
        = -\log\bigl(e^{\alpha_{T_n - 1}(L - 1)} + e^{\alpha_{T_n - 1}(L - 2)}\bigr), \qquad
        \frac{\partial \ell_n}{\partial \mathrm{lp}_{t n c}} = -\exp\Bigl(\log \sum_{s:\, l'_s = c}
        e^{\alpha_t(s) + \beta_t(s)} - \mathrm{lp}_{t n c} + \ell_n\Bigr)

    over the paths :math:`\pi` that collapse (repeats merged, blanks dropped) to the target, with the
    log-space forward/backward variables :math:`\alpha, \beta` over the blank-extended target
    :math:`l'` (length :math:`L = 2 S_n + 1`).  The gradient is the exact derivative (0 for
    classes outside the target and for :math:`t \ge T_n`); torch's is this plus
    :math:`w_n e^{\mathrm{lp}}` for :math:`t < T_n`, :math:`w_n` the sample's weight in the
    reduction (it assumes ``log_softmax`` inputs; for ``"sum"``, add ``np.exp(log_probs)`` there to
    get torch's convention).

    ``log_probs`` is ``(T, N, C)`` (or unbatched ``(T, C)``), float32 or float64; ``targets`` padded
    ``(N, S)`` or concatenated 1-d (``sum(target_lengths)`` labels), any integer dtype, never
    ``blank``; ``input_lengths``/``target_lengths`` ints, lists, tuples or integer arrays.  ``"mean"``
    divides each sample's loss by its target length (at least 1), then averages over the batch;
    ``"none"`` gives ``(N,)``.  An impossible alignment gives ``inf`` (its gradient NaN for
    :math:`t < T_n`, as torch); ``zero_infinity=True`` makes it 0 with a zero gradient.

    Example:
        >>> import numpy as np, numbaloss
        >>> lp = np.log(np.full((3, 1, 2), 0.5))  # T = 3 steps, 2 classes (blank 0), uniform
        >>> float(numbaloss.ctc_loss(lp, np.array([[1]]), [3], [1], reduction="sum"))  # 6 of 8 paths give "1"
        0.2876820724517809
    """
    return run(ctc_loss.spec, (log_probs, targets, input_lengths, target_lengths),
               {"blank": blank, "zero_infinity": zero_infinity}, reduction, return_grad, grad_output)
