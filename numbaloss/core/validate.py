"""Argument checks shared by every loss and every backend.

Everything here looks only at shapes, dtypes and Python scalars, so the CPU and
CUDA backends raise the same errors with the same messages.  Checks that need
the data (target ranges, BCE input range) happen in the kernels' cheap target
pass or through a per-block error flag, never in an extra pass over the logits.
"""

import functools
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(dtype, name="input"):
    """Check that ``dtype`` is float32 or float64 and return it as ``np.dtype``."""
    dtype = np.dtype(dtype)
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype}")
    return dtype


def integer_dtype(dtype, name="target"):
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise TypeError(f"{name} with class indices must have an integer dtype, got {dtype}")
    return dtype


def check_same_shape(input_shape, target_shape, what="target"):
    if tuple(input_shape) != tuple(target_shape):
        raise ValueError(
            f"Using a {what} size {tuple(target_shape)} that is different to the input size "
            f"{tuple(input_shape)}; please ensure they have the same size"
        )


def broadcast_shape(param_shape, input_shape, name):
    """``param_shape`` must broadcast to ``input_shape`` without enlarging it."""
    try:
        out = np.broadcast_shapes(tuple(param_shape), tuple(input_shape))
    except ValueError:
        out = None
    if out != tuple(input_shape):
        raise ValueError(
            f"{name} of shape {tuple(param_shape)} is not broadcastable to the input's shape {tuple(input_shape)}"
        )


def check_label_smoothing(label_smoothing):
    if type(label_smoothing) is float and 0.0 <= label_smoothing <= 1.0:  # the common case, fast
        return label_smoothing
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    return float(label_smoothing)


def check_ignore_index(ignore_index):
    if type(ignore_index) is int:  # the common case, fast
        return ignore_index
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an integer, got {type(ignore_index).__name__}")
    return int(ignore_index)


def check_class_weight(weight_shape, n_classes):
    if tuple(weight_shape) != (n_classes,):
        raise ValueError(
            f"weight should be defined either for all {n_classes} classes or no classes, "
            f"but got weight of shape {tuple(weight_shape)}"
        )


def class_layout(input_shape, target_shape, target_dtype, loss="cross_entropy"):
    """Interpret ``(input, target)`` shapes for cross_entropy / nll_loss.

    Returns ``(N, C, S, loss_shape, probabilities)``: the logits are viewed as
    ``(N, C, S)`` with ``S = d1 * ... * dk``; ``probabilities`` is True when the
    target holds class probabilities (same shape as the input, float dtype).
    """
    input_shape = tuple(input_shape)
    target_shape = tuple(target_shape)
    if len(input_shape) == 0:
        raise ValueError(f"{loss}: input must have at least 1 dimension (C,), got a 0-d array")
    probabilities = loss == "cross_entropy" and input_shape == target_shape
    if probabilities:
        if np.dtype(target_dtype).kind != "f":
            raise TypeError(
                f"Expected floating point type for target with class probabilities, got {np.dtype(target_dtype)}"
            )
    else:
        integer_dtype(target_dtype)
    if len(input_shape) == 1:
        C = input_shape[0]
        expected = input_shape if probabilities else ()
        if target_shape != expected:
            raise ValueError(
                f"{loss}: for an unbatched input of shape {input_shape} the target must have shape "
                f"{expected}, got {target_shape}"
            )
        return 1, C, 1, (), probabilities
    N, C = input_shape[0], input_shape[1]
    spatial = input_shape[2:]
    loss_shape = (N,) + spatial
    if not probabilities:
        if len(target_shape) == 0 or target_shape[0] != N:
            raise ValueError(
                f"Expected input batch_size ({N}) to match target batch_size "
                f"({target_shape[0] if target_shape else 'none: target is 0-d'}); "
                f"input shape {input_shape}, target shape {target_shape}"
            )
        if target_shape != loss_shape:
            raise ValueError(f"Expected target size {loss_shape}, got {target_shape} (input shape {input_shape})")
    S = int(np.prod(spatial, dtype=np.int64)) if spatial else 1
    return N, C, S, loss_shape, probabilities


@functools.lru_cache(maxsize=None)
def int_range(dtype):
    """``(min, max)`` of an integer dtype, as Python ints."""
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


@functools.lru_cache(maxsize=None)
def empty(dtype, ndim=1):
    """A shared size-0 array standing for "absent" (kernels test ``.size``); never written."""
    return np.empty((0,) * ndim, np.dtype(dtype))


def or_empty(a, dtype):
    """``a``, or :func:`empty` of ``dtype`` when ``a`` is None."""
    return empty(np.dtype(dtype), 1) if a is None else a
