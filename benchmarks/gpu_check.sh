#!/usr/bin/env bash
# The real-GPU check of the CUDA backend, as one command (each step capped at 4 minutes; never run yet):
#   1. the CUDA test suite on the device (no simulator),
#   2. values and gradients against torch CUDA, and timings against torch.nn.functional
#      (CUDA events, best of repeats) with GB/s and % of the measured copy bandwidth.
# Writes its results into ${OUT:-benchmarks/results}/ (gpu_*.txt, gpu_bench.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu_device.txt"
python3 -c "import numba, numba_cuda, torch; print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'torch', torch.__version__)" 2>&1 | tee -a "$OUT/gpu_device.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_cuda.py tests/test_ctc.py tests/test_torch_adapter.py 2>&1 | tail -40 | tee "$OUT/gpu_tests.txt"
timeout 240 python3 benchmarks/gpu_bench.py 2>&1 | tee "$OUT/gpu_bench.md"
