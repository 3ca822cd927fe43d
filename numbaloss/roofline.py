"""The roofline of this machine: what bounds a loss kernel's time, measured rather than assumed.

A loss kernel is bounded by memory (the bytes it must read and write, over the
streaming bandwidth) and by compute (its vector instructions per element, over
the rate the cores retire them).  This module measures both limits on the
machine at hand and counts a kernel's instructions from the code LLVM made:

- :func:`machine`: the CPU model, the CPU LLVM targets and its SIMD width
  (llvmlite's host CPU name and features: AVX-512 -> 512 bits, AVX/AVX2 -> 256,
  else 128), the cores Numba uses and the nominal clock (``/proc/cpuinfo``).
- :func:`bandwidth`: streaming read bandwidth, the best of three probes that
  vectorize (a ``prange`` sum over 32 explicit lanes, which LLVM vectorizes
  without reassociation; NumPy's ``sum``; a parallel copy, counting the bytes
  read) over 1 GiB, and the copy's read+write rate beside it.
- :func:`vector_rate`: vector instructions retired per second, all cores: a
  ``prange`` of independent fused multiply-adds on 64 lanes per core, enough
  chains in flight to hide FMA latency.  On Zen 3 and Skylake-class cores this
  is 2 per cycle per core; divided by the clock it says so.
- :func:`vector_ops`: vector instructions per element of a compiled kernel,
  read from its optimized LLVM IR: every vectorized loop (``vector.body``)
  contributes its vector instructions (loads, stores, address arithmetic and
  shuffles excluded; a value wider than the SIMD registers counts once per
  register) divided by the elements one iteration handles.  Loops over fewer
  elements than the input (the pairwise sums' upper levels) count as if they
  ran over every element: an upper estimate by a few instructions.

The compute bound of a workload is its instructions per element times its
elements over :func:`vector_rate`: the time it would take if every instruction
were an FMA issued at full rate.  It is a floor, not a prediction: divisions
and some shuffles issue at lower rates.
"""

import os
import re
import subprocess
import sys
import tempfile

import numba
import numpy as np
from numba import prange

from .core.jit import FASTMATH, Blocked, Kernel


# ------------------------------------------------------------------ machine
def machine():
    """What the figures depend on: ``dict(model, llvm_cpu, simd_bits, f32_lanes, cores, mhz)``."""
    import llvmlite.binding as ll

    features = ll.get_host_cpu_features()
    simd = 512 if features.get("avx512f") else 256 if features.get("avx") else 128
    model, mhz = "unknown", float("nan")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name" and model == "unknown":
                    model = val.strip()
                elif key.strip() == "cpu MHz" and mhz != mhz:
                    mhz = float(val)
    except OSError:  # pragma: no cover - not Linux
        import platform

        model = platform.processor() or model
    return dict(model=model, llvm_cpu=ll.get_host_cpu_name(), simd_bits=simd, f32_lanes=simd // 32,
                cores=numba.get_num_threads(), mhz=mhz)


def describe(m):
    """One line naming the machine, for every table that states a figure."""
    return (f"{m['model']} (LLVM target {m['llvm_cpu']}, {m['simd_bits']}-bit SIMD = {m['f32_lanes']} float32 lanes), "
            f"{m['cores']} threads, {m['mhz']:.0f} MHz nominal")


# ------------------------------------------------------------------ probes
def _best(fn, repeats=5):
    import time

    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


@numba.njit(parallel=True, cache=True)
def _lane_sum(a):
    """Sum of ``a`` over 32 explicit float32 lanes per block: each lane loop is a map, which LLVM
    vectorizes without reassociating anything, so the probe runs at memory speed."""
    nb = 256
    lanes = 32
    n = a.size // nb // lanes * lanes
    out = np.zeros(nb, np.float32)
    for b in prange(nb):
        acc = np.zeros(lanes, np.float32)
        x = a[b * n : b * n + n]
        for j in range(0, n, lanes):
            for k in range(lanes):
                acc[k] += x[j + k]
        out[b] = acc.sum()
    return out.sum()


@numba.njit(parallel=True, cache=True)
def _copy(a, out):
    for i in prange(a.size):
        out[i] = a[i]


def _fma_chains(lanes):
    """A probe running ``lanes`` independent chains ``acc = acc * a + b`` per thread: the map over
    the lanes vectorizes into FMAs, and 8 registers' worth of chains cover the FMA latency.
    ``lanes`` is a compile-time constant, so the chains stay in registers."""

    def chains(n_iter, a, b):
        threads = numba.get_num_threads()
        out = np.zeros(threads)
        for c in prange(threads):
            acc = np.empty(lanes, np.float32)
            for k in range(lanes):
                acc[k] = k
            for _ in range(n_iter):
                for k in range(lanes):
                    acc[k] = acc[k] * a + b
            out[c] = acc.sum()
        return out.sum()

    return numba.njit(parallel=True, fastmath={"contract"})(chains)


def bandwidth(n_bytes=1 << 30):
    """``dict(read=best streaming read bytes/s, probes={name: bytes/s}, copy_rw=copy read+write bytes/s)``."""
    a = np.ones(n_bytes // 4, np.float32)
    out = np.empty_like(a)
    probes = {
        "32-lane prange sum": a.nbytes / _best(lambda: _lane_sum(a)),
        "numpy sum": a.nbytes / _best(lambda: a.sum()),
        "prange copy (read)": a.nbytes / _best(lambda: _copy(a, out)),
    }
    return dict(read=max(probes.values()), probes=probes, copy_rw=2 * probes["prange copy (read)"])


def vector_rate(m=None):
    """Vector instructions per second over all threads (FMAs at the SIMD width), and per core per cycle."""
    m = m or machine()
    lanes_per_reg = m["f32_lanes"]
    chains = 8 * lanes_per_reg
    n_iter = 400_000
    probe = _fma_chains(chains)
    t = _best(lambda: probe(n_iter, np.float32(0.999), np.float32(1e-3)), repeats=9)
    rate = numba.get_num_threads() * n_iter * chains / lanes_per_reg / t
    per_cycle = rate / m["cores"] / (m["mhz"] * 1e6) if m["mhz"] == m["mhz"] else float("nan")
    return rate, per_cycle


# ------------------------------------------------------------------ counting
_SKIP = {"load", "phi", "bitcast", "getelementptr", "shufflevector", "insertelement", "extractelement", "freeze"}
_VEC = re.compile(r"^\s*%\S+ = (?:tail |notail )?(\w+)[^<]*?<(\d+) x (\w+)>", re.M)
_STEP = re.compile(r"%index\.next\S* = add (?:nuw )?(?:nsw )?i64 %index\S*, (\d+)")


def loop_ops(ir, simd_bits):
    """``[(elements per iteration, vector instructions)]`` of every vectorized loop in ``ir``
    (one entry per ``vector.body``; epilogue loops, which run on the remainders, are left out)."""
    loops = []
    for block in re.split(r"\n(?=[\w.]+:)", ir):
        label = block.split(":", 1)[0]
        if not label.startswith("vector.body"):
            continue
        step = _STEP.search(block)
        if not step:
            continue
        count = 0
        for line in block.splitlines():
            mm = _VEC.match(line)
            if not mm:
                continue
            op, n, ty = mm.groups()
            if op in _SKIP or (op == "call" and "masked.load" in line) or "masked.store" in line:
                continue
            bits = int(n) * (int(ty[1:]) if ty[0] == "i" else {"float": 32, "double": 64, "half": 16}.get(ty, 32))
            count += max(1, -(-bits // simd_bits))
        loops.append((int(step.group(1)), count))
    return loops


def _dispatchers(kernel):
    """The compiled functions whose IR holds a kernel's loops (once: a parallel twin repeats the serial)."""
    if isinstance(kernel, Blocked):
        return [kernel.block]
    if isinstance(kernel, Kernel):
        return [kernel.serial]
    return [kernel]


def loops_ops(kernel, simd_bits):
    """Vector instructions per element of every vectorized loop of ``kernel`` (one compiled in
    this process; the largest over its signatures), each loop counted as if it ran over every
    element.  For functions whose loops all run once per element (a row max, a map)."""
    total = 0.0
    for d in _dispatchers(kernel):
        per_sig = [sum(c / s for s, c in loop_ops(ir, simd_bits)) for ir in d.inspect_llvm().values()]
        total += max(per_sig, default=0.0)
    return total


def formula_ops(formula, simd_bits, dtype=np.float32, n_args=4, with_param=False):
    """Vector instructions per element of ``formula(a[i], b[i], p, k)`` (``(x, t, p, k)``, as the
    elementwise template's loops run it; ``k`` a run-time value, ``p`` read from an array with
    ``with_param`` (a data param: var, input2) or the constant 1 as for a loss without one).  A
    tuple of formulas (value, gradient...) runs in one loop, each to its own output, as the
    template's fused loop: what they share is counted once.  A function with several loop
    variants, of which one runs, cannot be counted whole: this counts the formulas on their own."""
    fs = formula if isinstance(formula, tuple) else (formula,)
    one = dtype(1.0)
    if n_args != 4:
        f0 = fs[0]

        def probe(a, b, c, k, o0, o1, o2):
            for i in range(a.size):
                o0[i] = f0(a[i], b[i])
    else:
        f0, f1, f2 = (fs + (fs[0],) * 2)[:3]
        n = len(fs)

        def probe(a, b, c, k, o0, o1, o2):
            for i in range(a.size):
                p = c[i] if with_param else one
                o0[i] = f0(a[i], b[i], p, k)
                if n > 1:
                    o1[i] = f1(a[i], b[i], p, k)
                if n > 2:
                    o2[i] = f2(a[i], b[i], p, k)
    fn = numba.njit(fastmath=set(FASTMATH), error_model="numpy")(probe)
    a = np.full(64, 0.5, dtype)
    fn(a, a, a, 0.5, np.empty_like(a), np.empty_like(a), np.empty_like(a))
    return loops_ops(fn, simd_bits)


_COUNT = r"""
import sys, numpy as np
from numbaloss import bench, roofline
i = int(sys.argv[1])
label, name, make, fused, ops = bench._workloads(quick=True)[i]
x, y, kw = make(np.random.default_rng(0))
import numbaloss
getattr(numbaloss, name)(x, y, return_grad=fused, **kw)
print(ops(int(sys.argv[2]), fused))
"""


def count_in_fresh_process(index, simd_bits):
    """Vector instructions per element of bench workload ``index`` (its ``ops`` function), compiled in a new process with an empty cache
    (a kernel loaded from the cache has no IR to read)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", _COUNT, str(index), str(simd_bits)], env=env,
                             capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])
