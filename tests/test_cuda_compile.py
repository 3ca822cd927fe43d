"""Every CUDA kernel compiles with the real numba-cuda compiler (NVVM), on this GPU-less machine.

The simulator (tests/test_cuda.py) checks what the kernels compute; only the real
compiler can say whether they build for a GPU at all (a NumPy function without a
CUDA lowering, a CPU-only overload).  The compile runs in a subprocess because
this process has the simulator switched on.
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")


def test_every_kernel_compiles_to_ptx():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "tests.cuda_compile"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    report = r.stdout + r.stderr[-3000:]
    assert r.returncode == 0, report
    compiled = [ln for ln in r.stdout.splitlines() if ln.startswith("ok ")]
    # float32 and float64, contiguous and strided, 2-d and 3-d rows, five target dtypes
    assert len(compiled) >= 40, report
    import numbaloss

    kernels = ["_ce_rows_warp", "_ce_rows_block", "_nll_rows_cuda", "_targets_cuda", "sum_partials_kernel", "_mlsm_rows",
               "_cosine_rows", "_multi_margin_rows", "_triplet_rows", "_mlm_rows", "_ctc_samples"]
    template = [s for s in numbaloss.REGISTRY.values() if s.cuda == "numbaloss.core.elementwise_cuda"]
    kernels += [s.family.kernel_name(s.name, key) for s in template for key in (s.family.variants or [()])]
    for kernel in kernels:
        assert any(f".{kernel}(" in ln for ln in compiled), kernel
