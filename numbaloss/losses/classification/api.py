r"""Multi-class losses: ``cross_entropy`` and ``nll_loss`` (CPU kernels and public functions).

Layout: logits of shape ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)`` are viewed
as ``(N, C, S)`` with ``S = d1 * ... * dk``; a *row* is the ``C`` logits of one
sample ``(n, s)``, ``M = N * S`` rows in all.  ``(N, C)`` inputs keep a 2-d view so
that each row is contiguous.

Class-index targets go through one cheap pass (:func:`.targets.target_pass`) that
validates every index, maps ignored ones to ``-1`` and sums the weights of the
kept targets (the ``mean`` denominator).  Only then does the row kernel run, so
it can never read out of bounds and can fuse the reduction's scale into the
gradient.
"""

import numpy as np

from ...core import reduce
from ...core.dispatch import host_array, host_param
from ...core import jit
from ...core.registry import register, run
from ...core.validate import check_class_weight, check_ignore_index, check_label_smoothing, class_layout, empty, float_dtype, or_empty
from .rows import _ce_kernel, _nll_kernel
from .targets import _class_targets, _flat_targets, _raise_out_of_bounds
from .tiles import PLAIN_COUNT, PLAIN_LOSS, PLAIN_MEAN, PLAIN_SUM, SMALL_C, _ce_columns, _ce_plain, _ce_small, _tile_size

#: The family's CUDA module, imported by the registry only when a device array arrives.
CUDA = "numbaloss.losses.classification.cuda"


def _plain_small(x, t, weight, grad_output):
    """True for a small C-contiguous ``(N, C)`` float NumPy input with few classes, int64 ``(N,)``
    NumPy targets, no weight and no ``grad_output``: the case :func:`_ce_small` serves directly."""
    return (
        type(x) is np.ndarray
        and type(t) is np.ndarray
        and weight is None
        and grad_output is None
        and x.ndim == 2
        and t.ndim == 1
        and x.dtype.char in "fd"
        and t.dtype.char in "lq"
        and t.itemsize == 8
        and 0 < x.shape[1] <= SMALL_C
        and 0 < x.size < jit.PARALLEL_MIN_WORK
        and t.shape[0] == x.shape[0]
        and x.flags.c_contiguous
        and t.flags.c_contiguous
    )



# ------------------------------------------------------------------ public API
def _prepare(input, target, weight, reduction, loss):
    """Shared front half of cross_entropy / nll_loss on the CPU: checks, layout, host arrays."""
    x = host_array(input, "input")
    t = host_array(target, "target")
    dtype = float_dtype(x.dtype)
    N, C, S, loss_shape, probs = class_layout(x.shape, t.shape, t.dtype, loss)
    w = host_param(weight, "weight", dtype)
    if w is not None:
        check_class_weight(w.shape, C)
    shape = (N, C) if S == 1 else (N, C, S)
    x = np.ascontiguousarray(x).reshape(shape)
    return x, t, w, N, C, S, loss_shape, probs, dtype


def _outputs(x, M, reduction, return_grad, n_parts):
    out = np.empty(M, x.dtype) if reduction == "none" else empty(x.dtype, 1)
    if return_grad:
        grad = np.empty_like(x)
    else:
        grad = empty(x.dtype, x.ndim)
    return out, grad, np.empty(n_parts)


def _small_cross_entropy(x, t, flat, ignore, has_ignore, w, eps, gscale, gstride, ignore_index, reduction, return_grad, loss_shape, input_shape):
    """Run :func:`.tiles._ce_plain` (the default options) or :func:`.tiles._ce_small` on a small 2-d
    few-class input (``flat``: its targets, flat) in one compiled call and finish the loss; ``t`` is
    the caller's target array, for the out-of-bounds message."""
    if w.size == 0 and eps == 0.0:  # the default options: the kernel that compiles fastest
        # scratch for the tiles' sums, counts and first bad positions: tiles have at least 8 rows (a bound
        # costs nothing here; _tile_size from Python costs 0.8 us, a tenth of a 64x10 call)
        out, grad, scratch = _outputs(x, flat.size, reduction, return_grad, 3 * (x.shape[0] // 8 + 1))
        mode = PLAIN_MEAN if reduction == "mean" else PLAIN_SUM
        denominator, pos, n = _ce_plain.block(0, 1 << 62, mode, x, flat, ignore, has_ignore, gscale, gstride, out, grad,
                                              scratch)  # one call over every tile
        total = float(scratch[0]) if n == 1 else reduce.total(scratch[:n])
    else:
        out, grad, _ = _outputs(x, flat.size, reduction, return_grad, 0)
        total, denominator, pos = _ce_small(x, flat, ignore, has_ignore, w, eps, gscale, gstride, reduction == "mean", out, grad)
    if pos >= 0:
        _raise_out_of_bounds(t, pos, x.shape[1], ignore_index)
    loss = reduce.finish(reduction, out, total, denominator, x.dtype, loss_shape)
    return loss, ((grad.reshape(input_shape),) if return_grad else ())


def _plain_cross_entropy(x, t, ignore_index, reduction, return_grad, grad_output, loss_shape, input_shape):
    """A large 2-d few-class input with the default options: :func:`.tiles._ce_plain` as a parallel
    kernel, once to validate and count the targets, once for the loss (the mean's scale known)."""
    flat, ignore, has_ignore = _flat_targets(t, ignore_index)
    n = max(1, -(-x.shape[0] // _tile_size.py_func(x.shape[1])))  # tiles (plain Python: a compiled call costs a dispatch)
    out, grad, scratch = _outputs(x, flat.size, reduction, return_grad, 3 * n)
    args = (x, flat, ignore, has_ignore)
    _ce_plain(n, 1, PLAIN_COUNT, *args, reduce.ONE, 0, out, grad, scratch, work=x.size)
    pos = reduce.first_flag(scratch[2 * n:])
    if pos >= 0:
        _raise_out_of_bounds(t, int(pos), x.shape[1], ignore_index)
    denominator = reduce.total(scratch[n : 2 * n])  # a sum of whole numbers: exact
    gscale, gstride = reduce.grad_scale(reduction, grad_output, denominator, loss_shape, return_grad)
    _ce_plain(n, 1, PLAIN_LOSS, *args, gscale, gstride, out, grad, scratch, work=x.size)
    loss = reduce.finish(reduction, out, reduce.total(scratch[:n]), denominator, x.dtype, loss_shape)
    return loss, ((grad.reshape(input_shape),) if return_grad else ())


def _tiling(N, C, S):
    """``(tile, span, n_tiles)`` of :func:`.tiles._ce_columns`: samples per tile, tiles per block (a 2-d
    input's block is one of the target pass's blocks) and tiles in all."""
    tile = _tile_size.py_func(C)  # plain Python: a compiled call from here costs a dispatch
    per = S if S > 1 else N
    return tile, max(1, reduce.BLOCK // tile), (N if S > 1 else 1) * max(1, -(-per // tile))


def _cross_entropy_cpu(spec, input, target, *, weight, ignore_index, reduction, label_smoothing, return_grad, grad_output):
    """The host path of :func:`cross_entropy` (see :class:`numbaloss.core.registry.Loss`)."""
    x, t, w, N, C, S, loss_shape, probs, dtype = _prepare(input, target, weight, reduction, "cross_entropy")
    eps = check_label_smoothing(label_smoothing)
    ignore_index = check_ignore_index(ignore_index)
    M = N * S
    if not probs and S == 1 and C <= SMALL_C and x.size < jit.PARALLEL_MIN_WORK:
        flat, ignore, has_ignore = _flat_targets(t, ignore_index)
        gscale, gstride = reduce.grad_scale(reduction, grad_output, 1.0, loss_shape, return_grad)
        return _small_cross_entropy(
            x, t, flat, ignore, has_ignore, or_empty(w, dtype), eps, gscale, gstride,
            ignore_index, reduction, return_grad, loss_shape, np.shape(input),
        )
    if not probs and S == 1 and C <= SMALL_C and w is None and eps == 0.0:
        return _plain_cross_entropy(x, t, ignore_index, reduction, return_grad, grad_output, loss_shape, np.shape(input))
    fused = False
    if probs:
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for floating point target")
        tgt = np.ascontiguousarray(t, dtype=dtype).reshape(x.shape)
        cls = empty(np.dtype(np.int64), 1)
        targets = (cls, np.int64(-1), True)  # never read
        denominator = M
    elif S == 1 and C <= SMALL_C and not (reduction == "mean" and return_grad):
        # the tile kernel validates and counts the targets itself (its blocks are the target pass's):
        # one pass over them, since no gradient scale waits for the count
        fused = True
        targets = _flat_targets(t, ignore_index)
        denominator = 1.0  # read by no gradient scale; a mean's comes from the kernel
    else:
        cls, denominator = _class_targets(t, ignore_index, C, w, dtype)
        targets = (cls, np.int64(-1), True)  # validated: ignored ones -1
        tgt = empty(dtype, x.ndim)
    gscale, gstride = reduce.grad_scale(reduction, grad_output, denominator, loss_shape, return_grad)
    if S > 1 or C <= SMALL_C:
        tile, span, n_tiles = _tiling(N, C, S)
        out, grad, partials = _outputs(x, M, reduction, return_grad, n_tiles)
        checks = reduce.n_blocks(n_tiles, span)
        wsum, bad = np.empty(checks), np.empty(checks, np.int64)
        _ce_columns(checks, x, *targets, tgt if probs else None, or_empty(w, dtype), eps, gscale, gstride, out, grad,
                    partials, wsum, bad, tile, span, S, work=x.size)
        if fused:
            pos = reduce.first_flag(bad)
            if pos >= 0:
                _raise_out_of_bounds(t, pos, C, ignore_index)
            denominator = reduce.total(wsum)
        total = reduce.total(partials)
    else:
        rows = reduce.rows_per_block(C)
        out, grad, partials = _outputs(x, M, reduction, return_grad, reduce.n_blocks(M, rows))
        total = _ce_kernel(x, cls, tgt, or_empty(w, dtype), eps, gscale, gstride, out, grad, partials, rows, S, work=x.size)
    loss = reduce.finish(reduction, out, total, denominator, dtype, loss_shape)
    return loss, ((grad.reshape(np.shape(input)),) if return_grad else ())


def _nll_loss_cpu(spec, input, target, *, weight, ignore_index, reduction, return_grad, grad_output):
    """The host path of :func:`nll_loss`."""
    x, t, w, N, C, S, loss_shape, _, dtype = _prepare(input, target, weight, reduction, "nll_loss")
    ignore_index = check_ignore_index(ignore_index)
    M = N * S
    cls, denominator = _class_targets(t, ignore_index, C, w, dtype)
    rows = reduce.BLOCK
    out, grad, partials = _outputs(x, M, reduction, return_grad, reduce.n_blocks(M, rows))
    gscale, gstride = reduce.grad_scale(reduction, grad_output, denominator, loss_shape, return_grad)
    total = _nll_kernel(x, cls, or_empty(w, dtype), gscale, gstride, out, grad, partials, rows, S, work=x.size if return_grad else M)
    loss = reduce.finish(reduction, out, total, denominator, dtype, loss_shape)
    return loss, ((grad.reshape(np.shape(input)),) if return_grad else ())


@register(
    module="CrossEntropyLoss",
    cpu=_cross_entropy_cpu,
    cuda=CUDA,
    params=("weight",),
    mean="the kept targets' class weights (class indices); the samples (probabilities)",
)
def cross_entropy(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    label_smoothing=0.0,
    *,
    return_grad=False,
    grad_output=None,
):
    r"""Cross-entropy between logits and class indices or class probabilities.

    Same semantics as ``torch.nn.functional.cross_entropy`` (torch 2.13).  With
    :math:`\log p_c = x_c - \log\sum_k e^{x_k}`, smoothing :math:`\varepsilon` and the
    smoothed target :math:`t'_c = (1-\varepsilon) t_c + \varepsilon / C` (``t`` one-hot
    for class indices), the per-sample loss is

    .. math::
        \ell = -\sum_c w_c\, t'_c \log p_c

    (for class indices torch weights the one-hot part by :math:`w_y` and the
    smoothing part by :math:`w_c`, which is the same formula).  ``mean`` divides by
    :math:`\sum w_{y_i}` over non-ignored samples for class indices and by the
    number of samples for probabilities.  Gradient:

    .. math::
        \frac{\partial \ell}{\partial x_j} = p_j \sum_c w_c t'_c - w_j t'_j

    computed in the same pass over the logits as the loss (fused, no softmax array).

    Args:
        input: logits, ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``; float32/float64.
        target: class indices of any integer dtype with shape ``()``, ``(N,)`` or
            ``(N, d1, ..., dk)``, or probabilities with the input's shape.
        weight: optional per-class weights ``(C,)``.
        ignore_index: class index whose samples are skipped (class targets only;
            must be negative with probability targets, as in torch).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        label_smoothing: in ``[0, 1]``.
        return_grad: also return ``d sum(grad_output * loss) / d input``.
        grad_output: upstream gradient; scalar, or loss-shaped for ``"none"``.

    Returns:
        ``loss``, or ``(loss, grad_input)`` with ``return_grad=True``.  ``loss`` is a
        NumPy scalar of the input's dtype for ``mean``/``sum`` and an array of shape
        ``(N, d1, ..., dk)`` for ``none``.

    Example:
        >>> import numpy as np, numbaloss
        >>> logits = np.array([[2.0, 0.5, -1.0]], dtype=np.float32)
        >>> loss, grad = numbaloss.cross_entropy(logits, np.array([0]), return_grad=True)
        >>> round(float(loss), 4)
        0.2413
        >>> grad.round(4)
        array([[-0.2144,  0.1753,  0.0391]], dtype=float32)
    """
    if reduction in reduce.REDUCTIONS:  # (run() checks it otherwise)
        if _plain_small(input, target, weight, grad_output):
            # The most common small call, recognised in a few attribute reads: every check of the
            # general path holds for it, so it goes straight to the one compiled call.
            eps = check_label_smoothing(label_smoothing)
            ignore_index = check_ignore_index(ignore_index)
            if -(2**63) <= ignore_index < 2**63:  # int64 targets can equal it: _ignore_value's answer
                value, grads = _small_cross_entropy(
                    input, target, target, np.int64(ignore_index), True, empty(input.dtype, 1), eps, reduce.ONE, 0,
                    ignore_index, reduction, return_grad, input.shape[:1], input.shape,
                )
                return (value, grads[0]) if return_grad else value
    options = {"weight": weight, "ignore_index": ignore_index, "label_smoothing": label_smoothing}
    return run(cross_entropy.spec, (input, target), options, reduction, return_grad, grad_output)


@register(module="NLLLoss", cpu=_nll_loss_cpu, cuda=CUDA, params=("weight",), mean="the kept targets' class weights")
def nll_loss(
    input,
    target,
    weight=None,
    ignore_index=-100,
    reduction="mean",
    *,
    return_grad=False,
    grad_output=None,
):
    r"""Negative log-likelihood of class indices given log-probabilities.

    Same semantics as ``torch.nn.functional.nll_loss``: per sample (0 where
    ``y == ignore_index``)

    .. math::
        \ell = -w_y\, x_y,
        \qquad
        \frac{\partial \ell}{\partial x_j} = -w_y\,[j = y]

    ``mean`` divides by :math:`\sum w_{y_i}` over non-ignored samples.

    Args:
        input: log-probabilities ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dk)``.
        target: class indices of any integer dtype, ``()``, ``(N,)`` or ``(N, d1, ..., dk)``.
        weight, ignore_index, reduction, return_grad, grad_output: as in :func:`cross_entropy`.

    Example:
        >>> import numpy as np, numbaloss
        >>> logp = np.log(np.array([[0.7, 0.2, 0.1]]))
        >>> round(float(numbaloss.nll_loss(logp, np.array([1]))), 4)
        1.6094
    """
    options = {"weight": weight, "ignore_index": ignore_index}
    return run(nll_loss.spec, (input, target), options, reduction, return_grad, grad_output)
