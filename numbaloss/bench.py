"""Side-by-side speed of numbaloss, torch (when installed) and NumPy, in one run.

    python -m numbaloss.bench                 # the table (progress bar on stderr)
    python -m numbaloss.bench --plot out.png  # and a chart
    python -m numbaloss.bench --quick         # smaller sizes, a smoke run
    python -m numbaloss.bench --only ctc_loss # the workloads whose label contains the text
    python -m numbaloss.bench --jit           # first-call cost, cold and warm cache (--only, --rounds N)
    python -m numbaloss.bench --ulp           # accuracy of numbaloss's exp/log/log1p
    python -m numbaloss.bench --crossover     # serial vs parallel kernels by size
    python -m numbaloss.bench --torch         # numbaloss.torch in training steps, against torch's losses

Every figure is the best of several repeats (this machine is shared and noisy),
measured in the same process with the same thread count for numbaloss and torch.
Speedup is torch's time over numbaloss's.  GB/s counts the bytes the loss must
touch (inputs read, gradient written); "% BW" compares that to this machine's
streaming read bandwidth, measured first.  The NumPy column is the float64
reference of ``tests/reference.py`` (run from the repository root), a
straightforward vectorized NumPy implementation.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import numbaloss
from numbaloss import roofline
from numbaloss.core import reduce, vmath
from numbaloss.core.jit import scalar
from numbaloss.core.elementwise import Elementwise, no_check
from numbaloss.core.rows import Rows

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - torch is optional here
    torch = None

try:
    from tests import reference
except ImportError:  # pragma: no cover - outside the repository
    reference = None


# ------------------------------------------------------------------ workloads
#: The elementwise losses of the regression/margin/divergence families, with inputs in their domain:
#: ``(input, target)``, or ``(input, target, {name: third array})`` (var; margin_ranking's target).
PAIRS = {
    "l1_loss": lambda rng, n: (rng.standard_normal(n), rng.standard_normal(n)),
    "mse_loss": lambda rng, n: (rng.standard_normal(n), rng.standard_normal(n)),
    "smooth_l1_loss": lambda rng, n: (rng.standard_normal(n), rng.standard_normal(n)),
    "huber_loss": lambda rng, n: (rng.standard_normal(n), rng.standard_normal(n)),
    "soft_margin_loss": lambda rng, n: (rng.standard_normal(n), np.sign(rng.standard_normal(n))),
    "kl_div": lambda rng, n: (np.log(rng.uniform(0.01, 1, n)), rng.random(n)),
    "poisson_nll_loss": lambda rng, n: (rng.standard_normal(n), np.floor(rng.uniform(0, 5, n))),
    "hinge_embedding_loss": lambda rng, n: (rng.standard_normal(n), np.sign(rng.standard_normal(n))),
    "margin_ranking_loss": lambda rng, n: (rng.standard_normal(n), rng.standard_normal(n),
                                           {"target": np.sign(rng.standard_normal(n))}),
    "gaussian_nll_loss": lambda rng, n: (rng.standard_normal(n), rng.standard_normal(n),
                                         {"var": rng.uniform(0.1, 2.0, n)}),
}


#: The row losses' workloads (the issue's sizes): name, rows, row length, input kind (``row_loss`` in
#: :func:`_workloads`), the module and block function whose loops are counted, a label note.
ROW_WORKLOADS = [
    ("multilabel_soft_margin_loss", 16384, 1000, "labels", "multilabel", "_mlsm_kernel", ""),
    ("cosine_embedding_loss", 65536, 512, "pairs", "embedding", "_cosine_kernel", ""),
    ("multi_margin_loss", 65536, 1000, "classes", "multiclass", "_multi_margin_kernel", ""),
    ("triplet_margin_loss", 65536, 512, "triplets", "embedding", "_triplet_kernel_l2", ""),
    ("multilabel_margin_loss", 16384, 1000, "label_lists", "multilabel", "_mlm_kernel", " (5 labels)"),
]


def uncounted(simd, fused):
    """The ``ops`` of a workload whose work is not per input element (ctc_loss: per state and time
    step): not counted (the roofline columns stay empty)."""
    return float("nan")


#: Losses whose float64 reference loops in Python (no NumPy column).
SLOW_REFERENCES = {"ctc_loss"}


@scalar
def _ce_grad_map(e, f):
    """The cross-entropy gradient loop's body, ``g (f e - b)`` (for the instruction count)."""
    return vmath.like(0.5, e) * (f * e - vmath.like(0.1, e))


def _workloads(quick):
    """(label, loss name, maker, fused-with-gradient, ops) for the table; ``ops(simd_bits, fused)``
    counts the vector instructions per element of the loops that do the work (:mod:`numbaloss.roofline`),
    in a process that has just compiled them."""
    k = 8 if quick else 1

    def ce(n, c, weight=False):
        def make(rng):
            x = rng.standard_normal((n, c), dtype=np.float32)
            y = rng.integers(0, c, n)
            kw = {"weight": rng.random(c, dtype=np.float32) + 0.5} if weight else {}
            return x, y, kw

        return make

    def ce_prob(n, c):
        def make(rng):
            p = rng.random((n, c), dtype=np.float32)
            return rng.standard_normal((n, c), dtype=np.float32), p / p.sum(axis=1, keepdims=True), {}

        return make

    def binary(n, logits, pos_weight=0):
        def make(rng):
            x = rng.standard_normal(n, dtype=np.float32) if logits else rng.random(n, dtype=np.float32)
            t = rng.random(n, dtype=np.float32)
            if not pos_weight:
                return x, t, {}
            # a (C,) pos_weight, broadcast along the last dimension (read through its strides)
            shape = (n // pos_weight, pos_weight)
            return x.reshape(shape), t.reshape(shape), {"pos_weight": rng.random(pos_weight, dtype=np.float32) + 0.5}

        return make

    def pair(name, n):  # an elementwise loss of (input, target) in its usual domain
        def make(rng):
            x, t, *third = PAIRS[name](rng, n)
            kw = {k: v.astype(np.float32) for k, v in (third[0] if third else {}).items()}
            if name == "kl_div":
                kw["reduction"] = "batchmean"  # torch's recommended (and unwarned) one
            return x.astype(np.float32), t.astype(np.float32), kw

        return make

    # vector instructions per element, counted in the IR of the loops that run (numbaloss.roofline)
    def sum_ops(simd):  # the pairwise sum of a float32 block (the elementwise block inlines it: compiled here to count it)
        reduce.tree_sum(np.zeros(4, np.float32), np.empty(2))
        return roofline.loops_ops(reduce.tree_sum, simd)

    def ew(name):  # the elementwise template: the value formula, the pairwise sum, the gradient formula
        def ops(simd, fused):
            f = numbaloss.REGISTRY[name].family
            p = f.data_param
            sums = sum_ops(simd)
            if not fused:
                return roofline.formula_ops(f.value, simd, with_param=p) + sums
            # the fused loop (value and gradient: shared work counted once), then the param's gradient loop
            pgrad = roofline.formula_ops(f.param_grad, simd, with_param=p) if f.param_grad is not None else 0.0
            return roofline.formula_ops((f.value, f.grad), simd, with_param=p) + sums + pgrad

        return ops

    def rows_ce(simd, fused):  # row max, exponentials, their pairwise sum; the gradient g (f e - b)
        from .losses.classification import rows

        grad = roofline.formula_ops(_ce_grad_map, simd, n_args=2) if fused else 0.0
        return sum(roofline.loops_ops(k, simd) for k in (rows._row_max, rows._exp_shifted)) + sum_ops(simd) + grad

    def tiles_ce(simd, fused):  # per logit: max, exp, sum; per sample (over C logits): the loss
        from .losses.classification import tiles

        per_logit = roofline.loops_ops(tiles._tile_exp_sum, simd)
        return per_logit + (roofline.loops_ops(tiles._ce_tile, simd) - per_logit) / 10  # the workloads' C

    def gathers(simd, fused):  # nll_loss reads one logit per row: no vector loops
        return 0.0

    def row_loss(rows, cols, kind):  # a row loss: "labels" (0/1 of the input's shape), "pairs" (cosine), "classes", "triplets"
        def make(rng):
            x = rng.standard_normal((rows, cols), dtype=np.float32)
            if kind == "labels":
                return x, (rng.random((rows, cols)) < 0.3).astype(np.float32), {}
            if kind == "classes":
                return x, rng.integers(0, cols, rows), {}
            if kind == "label_lists":  # five labels per row, then -1
                return x, np.where(np.arange(cols) < 5, rng.integers(0, cols, (rows, cols)), -1), {}
            if kind == "triplets":
                return x, rng.standard_normal((rows, cols), dtype=np.float32), {"negative": rng.standard_normal((rows, cols), dtype=np.float32)}
            return x, rng.standard_normal((rows, cols), dtype=np.float32), {"target": np.sign(rng.random(rows) - 0.5)}

        return make

    def row_kernel(module, kernel):  # every vector loop of the loss's block function (the call's signature)
        def ops(simd, fused):
            import importlib

            return roofline.loops_ops(getattr(importlib.import_module(f"numbaloss.losses.{module}"), kernel), simd)

        return ops

    def ctc(T, N, C, S):  # the issue's sizes: log-softmax inputs, full lengths
        def make(rng):
            x = rng.standard_normal((T // k, N, C))
            lp = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)
            lengths = {"input_lengths": np.full(N, T // k), "target_lengths": np.full(N, S // k)}
            return lp, rng.integers(1, C, (N, S // k)), lengths

        return make

    big = (8192 // k, 32000)
    e = 24 - (3 if quick else 0)
    bce, bcel = "binary_cross_entropy", "binary_cross_entropy_with_logits"
    return [
        (f"cross_entropy fwd {big[0]}x{big[1]}", "cross_entropy", ce(*big), False, rows_ce),
        (f"cross_entropy fwd+grad {big[0]}x{big[1]}", "cross_entropy", ce(*big), True, rows_ce),
        (f"cross_entropy fwd {2**20 // k}x10 weight", "cross_entropy", ce(2**20 // k, 10, True), False, tiles_ce),
        (f"cross_entropy fwd {2**20 // k}x10 probabilities", "cross_entropy", ce_prob(2**20 // k, 10), False, tiles_ce),
        (f"binary_cross_entropy 2^{e}", bce, binary(2**24 // k, False), False, ew(bce)),
        (f"binary_cross_entropy fwd+grad 2^{e}", bce, binary(2**24 // k, False), True, ew(bce)),
        (f"binary_cross_entropy_with_logits 2^{e}", bcel, binary(2**24 // k, True), False, ew(bcel)),
        (f"binary_cross_entropy_with_logits fwd+grad 2^{e}", bcel, binary(2**24 // k, True), True, ew(bcel)),
        (f"binary_cross_entropy_with_logits 2^{e} pos_weight (1024,)", bcel, binary(2**24 // k, True, 1024), False, ew(bcel)),
        *[
            (f"{name}{' fwd+grad' if fused else ''} 2^{e}", name, pair(name, 2**24 // k), fused, ew(name))
            for name in PAIRS
            for fused in (False, True)
        ],
        *[
            (f"{name}{' fwd+grad' if fused else ''} {rows // k}x{cols}{note}", name, row_loss(rows // k, cols, kind), fused,
             row_kernel(module, kernel))
            for name, rows, cols, kind, module, kernel, note in ROW_WORKLOADS
            for fused in (False, True)
        ],
        *[
            (f"ctc_loss{' fwd+grad' if fused else ''} T={T // k} N={N} C={C} S={S // k}", "ctc_loss", ctc(T, N, C, S), fused,
             uncounted)
            for T, N, C, S in ((200, 32, 64, 40), (500, 64, 128, 100))
            for fused in (False, True)
        ],
        ("cross_entropy fwd 64x10 (per call)", "cross_entropy", ce(64, 10), False, tiles_ce),
        ("nll_loss fwd+grad 4096x1000", "nll_loss", ce(4096, 1000), True, gathers),
    ]


def workloads(quick=False):
    """``(label, loss name, maker, fused-with-gradient)`` of every workload of the table, in its order:
    ``maker(rng)`` returns ``(input, target, kwargs)`` and the call is
    ``getattr(numbaloss, name)(input, target, return_grad=fused, **kwargs)``.  The asv suite times the
    same list (``asv_benchmarks/benchmarks/losses.py``, ``BenchWorkloads``)."""
    return [w[:4] for w in _workloads(quick)]


def _bytes(name, x, y, kw, fused):
    """Bytes a call must touch: data arrays read (nll_loss reads one logit per row), gradients written."""
    spec = numbaloss.REGISTRY[name]
    rest = [np.asarray(kw[k]) for k in spec.arrays[2:] if isinstance(kw.get(k), np.ndarray)]
    read = np.asarray(y).nbytes + (x.nbytes if name != "nll_loss" else x.shape[0] * x.itemsize)
    read += sum(a.nbytes for a in rest)
    return read + (x.nbytes * len(spec.grads) if fused else 0)


def _elements(name, x):
    """Elements the kernel's loops walk (nll_loss: one per row)."""
    return x.shape[0] if name == "nll_loss" else x.size


def best_times(fns, repeats=7, min_time=0.05):
    """Best per-call seconds of each function over ``repeats`` rounds, each looping until ``min_time``.

    The functions take turns within every round, so a burst of load from other
    tenants of this shared machine hits all of them alike and their ratios hold.
    """
    inner = []
    for fn in fns:
        fn()
        t0 = time.perf_counter()
        fn()
        inner.append(max(1, int(min_time / max(time.perf_counter() - t0, 1e-7))))
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(inner[i]):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / inner[i])
    return best


def best_time(fn, repeats=7, min_time=0.05):
    """Best per-call seconds of one function (see :func:`best_times`)."""
    return best_times([fn], repeats, min_time)[0]


def _torch_call(name, x, y, kw, fused):
    """torch's forward (and backward, with every gradient numbaloss returns: input2's, var's)."""
    spec = numbaloss.REGISTRY[name]
    data = dict(zip(spec.arrays, [torch.from_numpy(x), torch.from_numpy(y)]))
    data.update({key: torch.from_numpy(v) for key, v in kw.items() if isinstance(v, np.ndarray)})
    options = {key: v for key, v in kw.items() if key not in data}
    fn = getattr(F, name)
    if not fused:
        return lambda: fn(**data, **options)

    def fwd_bwd():
        args = {key: (v.detach().requires_grad_() if key in spec.grads else v) for key, v in data.items()}
        fn(**args, **options).backward()

    return fwd_bwd


def run_table(quick=False, progress=True, count=True, only=None):
    """Every workload (or those whose label contains ``only``) side by side with torch, and its place on
    this machine's roofline."""
    rows = []
    rng = np.random.default_rng(0)
    items = [(i, w) for i, w in enumerate(_workloads(quick)) if only is None or only in w[0]]
    bar = _progress(len(items) + 2, progress)
    m = roofline.machine()
    bw = roofline.bandwidth()
    rate, per_cycle = roofline.vector_rate(m)
    bar.update(2)
    if torch is not None:
        import numba

        torch.set_num_threads(numba.get_num_threads())
    for index, (label, name, make, fused, kernels) in items:
        x, y, kw = make(rng)
        ours = getattr(numbaloss, name)
        if torch is not None:
            t_ours, t_torch = best_times([lambda: ours(x, y, return_grad=fused, **kw), _torch_call(name, x, y, kw, fused)])
        else:
            t_ours, t_torch = best_time(lambda: ours(x, y, return_grad=fused, **kw)), float("nan")
        if reference is not None and name not in SLOW_REFERENCES:
            ref = getattr(reference, name)
            t_np = best_time(lambda: ref(x, y, **kw), repeats=2)
        else:
            t_np = float("nan")
        n = _elements(name, x)
        nbytes = _bytes(name, x, y, kw, fused)
        ops = roofline.count_in_fresh_process(index, m["simd_bits"]) if count and kernels is not uncounted else float("nan")
        t_mem = nbytes / bw["read"]
        t_ops = ops * n / rate
        rows.append(dict(label=label, ours=t_ours, torch=t_torch, numpy=t_np, gbs=nbytes / t_ours / 1e9,
                         bw=nbytes / t_ours / bw["read"], bytes_el=nbytes / n, ops_el=ops, t_mem=t_mem, t_ops=t_ops,
                         roof=max(t_mem, t_ops) / t_ours, bound="memory" if t_mem >= t_ops else "compute"))
        bar.update(1)
    bar.close()
    return rows, dict(machine=m, bw=bw, rate=rate, per_cycle=per_cycle)


def format_table(rows, roof):
    import numba

    m, bw = roof["machine"], roof["bw"]
    probes = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in bw["probes"].items())
    head = (
        f"numbaloss {numbaloss.__version__}, numba {numba.__version__}, "
        f"torch {torch.__version__ if torch else 'not installed'}, {numba.get_num_threads()} threads\n"
        f"machine: {roofline.describe(m)}\n"
        f"read bandwidth {bw['read'] / 1e9:.1f} GB/s (best of: {probes} GB/s; copy read+write {bw['copy_rw'] / 1e9:.1f} GB/s)\n"
        f"vector rate {roof['rate'] / 1e9:.1f} G instructions/s, all threads ({roof['rate'] * m['f32_lanes'] / 1e9:.0f} G float32 lane-FMAs/s; "
        f"{roof['per_cycle']:.2f} per core per cycle at the nominal clock, i.e. a clock of "
        f"{roof['rate'] / m['cores'] / 2 / 1e9:.2f} GHz at the 2 FMAs per cycle of Zen 3 and Skylake-class cores)\n\n"
    )
    lines = [
        "| workload (float32) | numbaloss ms | torch ms | NumPy ms | speedup vs torch | GB/s | % of read BW "
        "| bytes/el | vector instr/el | memory bound ms | compute bound ms | % of roofline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['ours'] * 1e3:.3f} | {r['torch'] * 1e3:.3f} | {r['numpy'] * 1e3:.1f} | "
            f"{r['torch'] / r['ours']:.2f}x | {r['gbs']:.2f} | {100 * r['bw']:.0f}% | {r['bytes_el']:.1f} | "
            f"{r['ops_el']:.1f} | {r['t_mem'] * 1e3:.3f} | {r['t_ops'] * 1e3:.3f} | {100 * r['roof']:.0f}% ({r['bound']}) |"
        )
    return head + "\n".join(lines)


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in rows]
    speedup = [r["torch"] / r["ours"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    bars = ax.barh(labels[::-1], speedup[::-1], color="#3b7dd8")
    ax.axvline(1.0, color="k", lw=1)
    ax.bar_label(bars, fmt="%.2fx", padding=3)
    ax.set_xlabel("speedup over torch 2.13 CPU (higher is better; same threads, best of repeats)")
    ax.set_title("numbaloss vs torch.nn.functional, float32")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------ JIT and accuracy
def sample_inputs(spec, n, dtype, rng, classes=10):
    """Data arrays for any registered loss (all of ``spec.arrays``, in order), about ``n`` input
    elements: class targets for the classification family, else same-shape arrays (inputs in [0, 1]
    where the loss checks its input's domain; a third array positive, as a var must be)."""
    if hasattr(spec.family, "sample"):  # a family that makes its own (ctc_loss's sequences)
        return spec.family.sample(n, dtype, rng)
    if isinstance(spec.family, Rows):  # rows of 16; labels, signs or reals as the loss takes them
        rows, kinds = max(1, n // 16), dict(spec.family.values)
        make = {"labels": lambda s: (rng.random(s) < 0.5).astype(dtype), "reals": lambda s: rng.standard_normal(s).astype(dtype),
                "signs": lambda s: np.sign(rng.random(s) - 0.5).astype(dtype), "classes": lambda s: rng.integers(0, 16, s),
                "label_lists": lambda s: np.where(np.arange(s[-1]) < 3, rng.integers(0, s[-1], s), -1)}
        return tuple(make[kinds.get(a, "reals")]((rows,) if a in spec.family.per_row else (rows, 16)) for a in spec.arrays)
    if not isinstance(spec.family, Elementwise):
        rows = max(1, n // classes)
        return rng.standard_normal((rows, classes)).astype(dtype), rng.integers(0, classes, rows)
    x = rng.random(n) if spec.family.check_on == "input" and spec.family.check is not no_check else rng.standard_normal(n)
    rest = [rng.random(n) + 0.1 for _ in spec.arrays[2:]]
    return (x.astype(dtype), rng.random(n).astype(dtype), *(a.astype(dtype) for a in rest))


_FIRST_CALLS = r"""
import sys, time
t0 = time.perf_counter()
import numpy as np, numbaloss
print("import", time.perf_counter() - t0)
from numbaloss.bench import sample_inputs  # after the import is timed
names = sys.argv[1:] or list(numbaloss.REGISTRY)
for name in names:
    spec = numbaloss.REGISTRY[name]
    for label, n in (("small", 64), ("large", 1 << 18)):
        arrays = sample_inputs(spec, n, np.float32, np.random.default_rng(0))
        t0 = time.perf_counter()
        spec.fn(*arrays, return_grad=True)
        print(name, label, time.perf_counter() - t0)
"""


def _first_calls(env, names=()):
    out = subprocess.run([sys.executable, "-c", _FIRST_CALLS, *names], env=env, capture_output=True, text=True, check=True)
    return dict((" ".join(k), float(v)) for *k, v in (line.split() for line in out.stdout.splitlines()))


def jit_costs(rounds=1, only=None):
    """What a new user waits for: per loss, in a fresh process with an empty Numba cache, ``import
    numbaloss``, the first small call (serial kernels) and then the first large call (parallel
    kernels), float32 with gradient; then every loss's first calls in one process with the cache warm
    (with ``only``, the losses whose name contains it, and no warm row).

    With ``rounds > 1`` every loss is measured that many times, the losses alternating round by
    round, and each column shows its best (this machine is shared: single cold compiles move by
    20-30% between runs)."""
    lines = ["| loss (float32, with gradient) | import | first small call | first large call | import + small call | import + both |",
             "|---|---:|---:|---:|---:|---:|"]
    best = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        names = [name for name in numbaloss.REGISTRY if only is None or only in name]
        for _ in range(rounds):
            for name in names:
                with tempfile.TemporaryDirectory() as cold:
                    t = _first_calls(dict(env, NUMBA_CACHE_DIR=cold), [name])
                row = (t["import"], t[f"{name} small"], t[f"{name} large"])
                row += (row[0] + row[1], sum(row))
                best[name] = tuple(map(min, zip(best.get(name, row), row)))
        for name, (imp, small, large, first, both) in best.items():
            lines.append(f"| {name}, cold cache | {imp:.2f} s | {small:.2f} s | {large:.2f} s | {first:.2f} s | {both:.2f} s |")
        note = f"best of {rounds} alternating rounds" if rounds > 1 else "one round"
        if only is not None:
            return "\n".join(lines) + f"\n\n{note}; {roofline.describe(roofline.machine())}"
        _first_calls(env)  # fills the cache
        warm = min((_first_calls(env) for _ in range(rounds)), key=lambda w: sum(w.values()))
    total = sum(warm.values())
    lines.append(f"| every loss, warm cache | {warm['import']:.2f} s | | | | {total:.2f} s |")
    return "\n".join(lines) + f"\n\n{note}; {roofline.describe(roofline.machine())}"


def ulp_table():
    """Max and mean error in ulps of numbaloss's exp/log/log1p against correctly rounded float64 results."""
    from .core import vmath

    rng = np.random.default_rng(0)
    f32 = np.arange(0, 2**32, 97, dtype=np.uint64).astype(np.uint32).view(np.float32)
    f32 = f32[np.isfinite(f32)]
    lines = ["| function | dtype | inputs | max ulp | mean ulp | special values |", "|---|---|---:|---:|---:|---|"]
    funcs = (("exp", np.exp), ("log", np.log), ("log1p", np.log1p), ("exp_neg", np.exp), ("log1p_unit", np.log1p))
    for kind, (fn, ref) in enumerate(funcs):
        name = {3: "exp_neg (x <= 0)", 4: "log1p_unit (0 <= x <= 1)"}.get(kind, fn)
        for dtype in (np.float32, np.float64):
            if dtype == np.float32:
                x = f32
                if kind == 3:
                    x = x[(x <= 0) & (x >= -87)]
                if kind == 4:
                    x = x[(x >= 0) & (x <= 1)]
            elif kind == 4:
                x = rng.random(2_000_000)
            else:
                x = rng.standard_normal(2_000_000) * 300 if kind in (0, 3) else np.exp(rng.uniform(-700, 700, 2_000_000))
                if kind == 3:
                    x = -np.abs(x)
                    x = x[x >= -708]
            o = vmath.evaluate(fn, x)
            with np.errstate(all="ignore"):
                r = ref(x.astype(np.float64)).astype(dtype)
            ok = np.isfinite(r) & np.isfinite(o)
            u = vmath.ulp_distance(o[ok], r[ok])
            special = np.array([-np.inf, np.inf, np.nan, 0.0, -0.0, 1e-45 if dtype == np.float32 else 5e-324], dtype)
            so = vmath.evaluate(fn, special)
            with np.errstate(all="ignore"):
                sr = ref(special.astype(np.float64)).astype(dtype)
            if kind >= 3:  # the restricted domains
                keep = (special <= 0) if kind == 3 else np.isnan(special) | ((special >= 0) & (special <= 1))
                so, sr = so[keep], sr[keep]
            same = np.array_equal(so, sr, equal_nan=True)
            ref_name = "float64 rounded to float32" if dtype == np.float32 else "libm (itself <= 1 ulp)"
            lines.append(
                f"| {name} | {np.dtype(dtype).name} | {x.size:,} vs {ref_name} | {u.max()} | {u.mean():.4f} | "
                f"{'exact' if same else 'MISMATCH'} |"
            )
    return "\n".join(lines)


def crossover():
    """Serial vs parallel kernel time by input size: where PARALLEL_MIN_WORK should sit."""
    from .core import jit

    rng = np.random.default_rng(0)
    lines = ["| elements | serial us | parallel us |", "|---:|---:|---:|"]
    saved = jit.PARALLEL_MIN_WORK
    try:
        for n in (1 << 10, 1 << 12, 1 << 14, 1 << 15, 1 << 16, 1 << 18):
            x = rng.standard_normal(n, dtype=np.float32)
            t = rng.random(n, dtype=np.float32)
            jit.PARALLEL_MIN_WORK = 1 << 62
            ser = best_time(lambda: numbaloss.binary_cross_entropy_with_logits(x, t))
            jit.PARALLEL_MIN_WORK = 0
            par = best_time(lambda: numbaloss.binary_cross_entropy_with_logits(x, t))
            lines.append(f"| {n} | {ser * 1e6:.1f} | {par * 1e6:.1f} |")
    finally:
        jit.PARALLEL_MIN_WORK = saved
    return "\n".join(lines)


class _progress:
    def __init__(self, total, enabled):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc="benchmarking", file=sys.stderr)
            except ImportError:
                self.total, self.done = total, 0

    def update(self, n):
        if self.bar is not None:
            self.bar.update(n)
        elif hasattr(self, "done"):
            self.done += n
            print(f"\rbenchmarking {self.done}/{self.total}", end="", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif hasattr(self, "done"):
            print(file=sys.stderr)


def torch_adapter(quick=False, repeats=5):
    """numbaloss.torch against torch's own loss: a training step's loss (forward + backward, and the
    raw ``return_grad`` call the adapter wraps), the per-call cost at 64x10, and a whole training step
    of an MLP with a 32000-class output (float32, the same threads for both)."""
    import numbaloss.torch as nlt

    rng = np.random.default_rng(0)
    N, C = (1024, 4000) if quick else (8192, 32000)
    rows = []

    def loss_rows(label, x, y):
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def step(fn):
            def run():
                leaf = xt.detach().requires_grad_()
                fn(leaf, yt).backward()
            return run

        # in pairs: a large torch step leaves the allocator and the page cache to whatever runs next
        t_torch, t_ours = best_times([step(F.cross_entropy), step(nlt.cross_entropy)], repeats=repeats, min_time=0.02)
        t_adapter, t_raw = best_times([step(nlt.cross_entropy), lambda: numbaloss.cross_entropy(x, y, return_grad=True)],
                                      repeats=repeats, min_time=0.02)
        t_fwd_torch, t_fwd_ours = best_times([lambda: F.cross_entropy(xt, yt), lambda: nlt.cross_entropy(xt, yt)],
                                             repeats=repeats, min_time=0.02)
        rows.append(f"| cross_entropy {label}, forward | {t_fwd_torch * 1e6:,.1f} us | {t_fwd_ours * 1e6:,.1f} us "
                    f"| | {t_fwd_torch / t_fwd_ours:.2f}x |")
        rows.append(f"| cross_entropy {label}, forward + backward | {t_torch * 1e6:,.1f} us | {t_ours * 1e6:,.1f} us "
                    f"| {t_raw * 1e6:,.1f} us (adapter {t_adapter * 1e6:,.1f} us, {t_adapter / t_raw - 1:+.0%}) "
                    f"| {t_torch / t_ours:.2f}x |")

    loss_rows(f"{N}x{C}", rng.standard_normal((N, C), np.float32), rng.integers(0, C, N))
    loss_rows("64x10", rng.standard_normal((64, 10), np.float32), rng.integers(0, 10, 64))

    # a training step of a small MLP whose output layer has C classes, batch B
    B, H = (512, 64) if quick else (4096, 128)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, H), torch.nn.ReLU(), torch.nn.Linear(H, C))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    xb, yb = torch.randn(B, 64), torch.randint(0, C, (B,))

    def train(loss_fn):
        def run():
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        return run

    t_torch, t_ours = best_times([train(torch.nn.CrossEntropyLoss()), train(nlt.CrossEntropyLoss())],
                                 repeats=repeats, min_time=0.02)
    rows.append(f"| MLP training step, {B}x{C} output | {t_torch * 1e3:,.1f} ms | {t_ours * 1e3:,.1f} ms | "
                f"| {t_torch / t_ours:.2f}x |")
    head = ("| float32, CPU | torch | numbaloss.torch | raw `return_grad` call (adapter beside it) | speedup |\n"
            "|---|---:|---:|---:|---:|")
    return f"{head}\n" + "\n".join(rows) + f"\n\n{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m numbaloss.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the speedups as a chart")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, not for reporting)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--only", metavar="TEXT",
                        help="only the workloads (with --jit: the losses) whose label contains TEXT (e.g. ctc_loss)")
    parser.add_argument("--jit", action="store_true", help="first-call cost with a cold and a warm cache")
    parser.add_argument("--rounds", type=int, default=1, metavar="N", help="with --jit: best of N alternating rounds")
    parser.add_argument("--ulp", action="store_true", help="accuracy of the vectorized exp/log/log1p")
    parser.add_argument("--crossover", action="store_true", help="serial vs parallel kernel time by size")
    parser.add_argument("--torch", action="store_true", help="numbaloss.torch against torch's losses in training steps")
    args = parser.parse_args(argv)
    if args.torch:
        print(torch_adapter(quick=args.quick))
        return
    if args.jit:
        print(jit_costs(args.rounds, args.only))
        return
    if args.ulp:
        print(ulp_table())
        return
    if args.crossover:
        print(crossover())
        return
    rows, roof = run_table(quick=args.quick, progress=not args.no_progress, only=args.only)
    print(format_table(rows, roof))
    if args.plot:
        plot(rows, args.plot)
        print(f"\nchart written to {args.plot}")


if __name__ == "__main__":
    main()
