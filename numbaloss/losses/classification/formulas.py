"""Per-row scalar formulas of the classification family, written once and used by the CPU row
and tile kernels and by the CUDA kernels (which import this module, never the CPU kernels)."""

from ...core.jit import overload, scalar


def _row(a, n, s):
    """Row ``(n, s)`` of a 2-d ``(N, C)`` or 3-d ``(N, C, S)`` array as a 1-d view.

    Compiled code uses the overload below; this body serves interpreted callers
    (the CUDA simulator runs kernels as Python).
    """
    return a[n] if a.ndim == 2 else a[n, :, s]


@overload(_row, inline="always")
def _row_overload(a, n, s):
    if a.ndim == 2:
        return lambda a, n, s: a[n]  # contiguous row: lets LLVM vectorize
    return lambda a, n, s: a[n, :, s]



# ------------------------------------------------- per-row scalar formulas
# Written once, used by the row kernel, the tile kernel and the CUDA kernels.
@scalar
def class_row_loss(ls, target_gap, gap_sum, wy, eps, b, w_total):
    """Loss of a class-target row and its ``Q = sum_c q_c``.

    ``ls = log sum_c exp(x_c - m)``, ``target_gap = m - x_y``, ``gap_sum =
    sum_c w_c (m - x_c)`` (read only when ``eps > 0``: at 0 it would turn masked
    logits' ``0 * inf`` into NaN), ``b = eps / C``.  Torch's
    ``(1 - eps) nll + eps / C * smooth`` is ``(1 - eps) w_y (ls + m - x_y) +
    b (W ls + sum_c w_c (m - x_c))``.
    """
    loss = (1.0 - eps) * wy * (ls + target_gap)
    if eps > 0.0:
        loss += b * (w_total * ls + gap_sum)
    return loss, (1.0 - eps) * wy + b * w_total


@scalar
def class_target_grad(a, e_y, wy, eps, b):
    """``Q p_y - q_y`` at the target class with ``a = Q / s``, ``e_y = exp(x_y - m)``:
    the target's share ``q_y = (b + 1 - eps) w_y`` in one rounding (exact 0 when C == 1)."""
    return a * e_y - (b * wy + (1.0 - eps) * wy)


#: Logits per chunk of the streaming softmax pass: 8 KiB of float32 stay in L1
