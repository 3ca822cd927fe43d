"""Compile every CUDA kernel to PTX with the real numba-cuda compiler (NVVM), no GPU needed.

The simulator runs kernels as Python, so it cannot tell whether numba-cuda can
compile them: a NumPy function with no CUDA lowering, or a CPU-only helper, only
fails on a real device.  This script closes that gap on any machine that has
NVVM (the ``cuda-toolkit[nvvm,nvrtc]`` wheels of the test extras).

Run with the simulator off:  ``NUMBA_ENABLE_CUDASIM=0 python -m tests.cuda_compile``.
It prints one line per (kernel, signature) and exits non-zero if any compile
fails, or if a kernel has no signature listed here.  ``tests/test_cuda_compile.py``
runs it.  Where ``ptxas`` is on the PATH (a CUDA toolkit), the lines also show
registers per thread and spill bytes for sm_90.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import types as pytypes

from numba import config, cuda, types

CC = (9, 0)  # H100 / H200


def _patch_compute_capability():
    """Device functions ask the driver for the compute capability; with no GPU, answer ``CC``."""
    if cuda.is_available():
        return cuda.get_current_device().compute_capability
    import numba.cuda.dispatcher as dispatcher

    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=CC)
    return CC


def _arr(dtype, ndim=1, layout="C"):
    return types.Array(dtype, ndim, layout)


def signatures():
    """kernel name -> argument-type tuples, as the host code launches them (float32 and float64)."""
    from numbaloss import _binary_cuda, _classification_cuda, _cuda

    f64, i64, b1 = types.float64, types.int64, types.boolean
    F = _arr(f64)
    out = {}

    def add(module, name, sig):
        out.setdefault((module, name), []).append(sig)

    for dt in (types.float32, types.float64):
        D = _arr(dt)
        for lay in ("C", "A"):  # contiguous inputs, and strided views of CuPy/torch arrays
            X = _arr(dt, 1, lay)
            add(_binary_cuda, "_binary_cuda", (X, X, D, D, b1, F, f64, f64, b1, D, D, F, _arr(i64)))
        for nd in (2, 3):
            for lay in ("C", "A"):
                X = _arr(dt, nd, lay)
                G = _arr(dt, nd)
                for rows in ("_ce_rows_warp", "_ce_rows_block"):
                    # class targets (an empty stand-in for the probabilities), then probability targets
                    add(_classification_cuda, rows, (X, _arr(i64), G, D, f64, f64, F, f64, F, f64, b1, F, G, i64))
                    add(_classification_cuda, rows, (X, _arr(i64), X, D, f64, f64, F, f64, F, f64, b1, F, G, i64))
                add(_classification_cuda, "_nll_rows_cuda", (X, _arr(i64), D, F, f64, F, f64, b1, F, G, i64))
        add(_classification_cuda, "_cast", (F, D))
        add(_classification_cuda, "_zero", (D,))
        add(_cuda, "_sum_partials_kernel", (F, F, f64, b1, D))
    for it in (types.int8, types.uint8, types.int32, types.int64, types.uint64):
        add(_classification_cuda, "_targets_cuda", (_arr(it), it, b1, i64, _arr(types.float32), _arr(i64), F, _arr(i64)))
    add(_cuda, "block_partials", (F, F))
    return out


def kernels():
    """Every ``@cuda.jit`` kernel (not device function) defined in numbaloss."""
    from numba.cuda.dispatcher import CUDADispatcher

    from numbaloss import _binary_cuda, _classification_cuda, _cuda

    found = set()
    for module in (_cuda, _binary_cuda, _classification_cuda):
        for name, obj in vars(module).items():
            if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device") and obj.py_func.__module__ == module.__name__:
                found.add((module, name))
    return found


def _ptxas():
    """ptxas of the same CUDA release as NVVM (the nvidia-cuda-nvcc wheel), else one on the PATH."""
    import glob

    import nvidia

    for root in nvidia.__path__:
        found = sorted(glob.glob(os.path.join(root, "cu*", "bin", "ptxas")))
        if found:
            return found[-1]
    return shutil.which("ptxas")


def _ptxas_info(ptx):
    ptxas = _ptxas()
    if not ptxas:
        return ""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        r = subprocess.run([ptxas, f"-arch=sm_{CC[0]}{CC[1]}", "-v", src, "-o", os.path.join(d, "k.cubin")], capture_output=True, text=True)
    info = [ln.split("info    : ", 1)[-1] for ln in r.stderr.splitlines() if "registers" in ln or "spill" in ln]
    return "; ".join(info) if r.returncode == 0 else "ptxas failed: " + r.stderr.strip()[-300:]


def main():
    assert not config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=0: the simulator has no compiler"
    cc = _patch_compute_capability()
    table = signatures()
    failures = 0
    missing = sorted(f"{m.__name__}.{n}" for m, n in kernels() - set(table))
    for name in missing:
        print(f"MISSING {name}: no signature listed in tests/cuda_compile.py")
    for (module, name), sigs in table.items():
        py_func = getattr(module, name).py_func
        for sig in sigs:
            label = f"{module.__name__.split('.')[-1]}.{name}({', '.join(map(str, sig))})"
            try:
                ptx, _ = cuda.compile_ptx(py_func, sig, cc=cc)
            except Exception as e:  # report every failure, not just the first
                failures += 1
                print(f"FAIL {label}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
                continue
            print(f"ok   {label}: {len(ptx)} chars of PTX {_ptxas_info(ptx)}")
    sys.stdout.flush()
    return 1 if failures or missing else 0


if __name__ == "__main__":
    sys.exit(main())
