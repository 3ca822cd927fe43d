"""Backend choice from the array type, and conversion of host inputs.

Arrays exposing ``__cuda_array_interface__`` (CuPy, Numba device arrays, PyTorch
CUDA tensors) belong to the CUDA backend; NumPy arrays and other array-likes
(anything with ``__array__``) run on the CPU and results come back as NumPy.
"""

import numpy as np


def is_device_array(a):
    return hasattr(a, "__cuda_array_interface__") or hasattr(a, "__cuda_ndarray__")


def backend_of(input, arrays=(), params=()):
    """``"cuda"`` if ``input`` lives on a GPU, else ``"cpu"``.

    ``arrays`` and ``params`` are ``(name, array)`` pairs.  The other data
    arrays (``target``...) must live where the input lives (TypeError naming
    both otherwise).  Parameters (``weight``, ``pos_weight``) of a GPU input may
    be host arrays, copied once; device parameters of a host input are an error.
    """
    on_device = is_device_array(input)
    for name, a, is_param in [(n, a, False) for n, a in arrays] + [(n, a, True) for n, a in params]:
        if a is None or not is_device_array(a) and not (hasattr(a, "__array__") or isinstance(a, np.ndarray)):
            continue
        if is_device_array(a) == on_device or (on_device and is_param):
            continue
        where = ("a CUDA device array", "a host array")
        raise TypeError(
            f"input is {where[not on_device]} ({type(input).__name__}) but {name} is "
            f"{where[on_device]} ({type(a).__name__}); move both to the same device"
        )
    return "cuda" if on_device else "cpu"


def host_array(a, name):
    """``a`` as a NumPy array (no copy when it already is one); TypeError for non-arrays."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "__array__") and not isinstance(a, (str, bytes)):
        return np.asarray(a)
    raise TypeError(
        f"{name} must be an array (numpy.ndarray, an array-like with __array__, or a CUDA array), "
        f"got {type(a).__name__}"
    )


def host_param(a, name, dtype):
    """An optional parameter (weight, pos_weight) as a contiguous host array of ``dtype``."""
    if a is None:
        return None
    if not (isinstance(a, np.ndarray) or hasattr(a, "__array__")):
        if isinstance(a, (list, tuple)):
            a = np.asarray(a)
        else:
            raise TypeError(f"{name} must be an array or None, got {type(a).__name__}")
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got {a.dtype}")
    return np.require(a, dtype, "C")  # keeps a 0-d array 0-d (ascontiguousarray would not)
