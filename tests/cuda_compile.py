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
    """(label, kernel) -> argument-type tuples, as the host code launches them (float32 and float64).

    Elementwise losses are enumerated from the registry: every loss registered on
    the elementwise template gets its kernel compiled, with no entry here.
    """
    import numbaloss
    from numbaloss.core import cuda_host, cuda_reduce, elementwise_cuda
    from numbaloss.losses import ctc_cuda, embedding_cuda, multiclass_cuda, multilabel_cuda
    from numbaloss.losses.classification import cuda as classification_cuda

    f64, i64, b1 = types.float64, types.int64, types.boolean
    F = _arr(f64)
    I = _arr(i64)
    out = {}

    def add(module, name, sig, kernel=None):
        key = (f"{module.__name__.split('.')[-1]}.{name}", kernel or getattr(module, name))
        out.setdefault(key, []).append(sig)

    template = [s for s in numbaloss.REGISTRY.values() if s.cuda == elementwise_cuda.__name__]
    for dt in (types.float32, types.float64):
        D = _arr(dt)
        for lay in ("C", "A"):  # contiguous inputs, and strided views of CuPy/torch arrays
            X = _arr(dt, 1, lay)
            for j, spec in enumerate(template):
                f = spec.family
                for key in f.variants or [()]:  # every formula pair (each is its own kernel)
                    kern = elementwise_cuda.kernel_of(spec, dict(zip(f.switches, key)))
                    name = f.kernel_name(spec.name, key)
                    # the layouts (strided inputs; a compact broadcast target) do not depend on the
                    # formulas: compiled for the first template loss only, which keeps this check short
                    if lay == "C" or j == 0:
                        add(elementwise_cuda, name, (X, X, I, D, I, D, I, f64, F, f64, f64, b1, D, D, D, F, I), kern)
                    if lay == "C" and j == 0:
                        add(elementwise_cuda, name, (X, D, I, D, I, D, I, f64, F, f64, f64, b1, D, D, D, F, I), kern)
        for nd in (2, 3):
            for lay in ("C", "A"):
                X = _arr(dt, nd, lay)
                G = _arr(dt, nd)
                for rows in ("_ce_rows_warp", "_ce_rows_block"):
                    # class targets (an empty stand-in for the probabilities), then probability targets
                    add(classification_cuda, rows, (X, I, G, D, f64, f64, F, f64, F, f64, b1, F, G, i64))
                    add(classification_cuda, rows, (X, I, X, D, f64, f64, F, f64, F, f64, b1, F, G, i64))
                add(classification_cuda, "_nll_rows_cuda", (X, I, D, F, f64, F, f64, b1, F, G, i64))
        M = _arr(dt, 2)  # the row losses' (rows, D) views: contiguous (the host code checks)
        add(multilabel_cuda, "_mlsm_rows", (M, M, M, F, f64, f64, b1, F, M))
        add(embedding_cuda, "_cosine_rows", (M, M, F, f64, F, f64, f64, b1, F, M, M))
        add(embedding_cuda, "_triplet_rows", (M, M, M, f64, f64, i64, dt, b1, F, f64, f64, b1, F, M, M, M))
        for it in (types.int64, types.int32):  # labels of any (signed) integer dtype
            add(multilabel_cuda, "_mlm_rows", (M, _arr(it, 2), F, f64, f64, b1, F, M, _arr(types.int8, 2), I))
        for it in (types.int64, types.int32, types.uint8):  # class indices of any integer dtype
            add(multiclass_cuda, "_multi_margin_rows", (M, _arr(it), D, b1, dt, F, f64, f64, b1, F, M, I))
        L3, F2 = _arr(dt, 3), _arr(f64, 2)
        # host targets arrive as int64; device targets keep their integer dtype (one more, in one precision)
        for it in (types.int64,) + ((types.int32,) if dt == types.float32 else ()):
            add(ctc_cuda, "_ctc_samples", (L3, _arr(it), I, I, I, i64, b1, b1, F, _arr(f64, 3), _arr(f64, 3), F2,
                                           _arr(types.int32, 3), F, L3, I))
        add(elementwise_cuda, "sum_to_param_kernel", (D, D, I))
        add(cuda_host, "cast_kernel", (F, D))
        add(cuda_host, "zero_kernel", (D,))
        add(cuda_reduce, "sum_partials_kernel", (F, F, f64, b1, D))
    for it in (types.int8, types.uint8, types.int32, types.int64, types.uint64):
        add(classification_cuda, "_targets_cuda", (_arr(it), it, b1, i64, _arr(types.float32), I, F, I))
    add(cuda_reduce, "block_partials", (F, F))
    return out


def kernels():
    """Every ``@cuda.jit`` kernel (not device function) defined at module level in numbaloss."""
    from numba.cuda.dispatcher import CUDADispatcher

    from numbaloss.core import cuda_host, cuda_reduce, elementwise_cuda
    from numbaloss.losses import ctc_cuda, embedding_cuda, multiclass_cuda, multilabel_cuda
    from numbaloss.losses.classification import cuda as classification_cuda

    found = set()
    for module in (cuda_host, cuda_reduce, elementwise_cuda, classification_cuda, multilabel_cuda, embedding_cuda,
                   multiclass_cuda, ctc_cuda):
        for name, obj in vars(module).items():
            if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device") and obj.py_func.__module__ == module.__name__:
                found.add(obj)
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
    listed = {kernel for _, kernel in table}
    missing = sorted(f"{k.py_func.__module__}.{k.py_func.__name__}" for k in kernels() - listed)
    for name in missing:
        print(f"MISSING {name}: no signature listed in tests/cuda_compile.py")
    for (name, kernel), sigs in table.items():
        py_func = kernel.py_func
        for sig in sigs:
            label = f"{name}({', '.join(map(str, sig))})"
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
