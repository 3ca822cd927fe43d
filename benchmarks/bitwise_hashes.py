"""Hashes of every registered loss's values and gradients over many cases, one line per case.

Run it before and after a refactor that must not change results, then diff the two outputs
(this is how the move to the registry and templates was checked):

    python benchmarks/bitwise_hashes.py > before.txt      # on the old commit
    python benchmarks/bitwise_hashes.py > after.txt       # on the new one
    diff before.txt after.txt

With ``NUMBA_ENABLE_CUDASIM=1`` it runs the CUDA kernels on Numba's simulator (smaller shapes).
"""

import hashlib
import os

import numpy as np

import numbaloss

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _digest(result):
    m = hashlib.sha256()
    for r in result if isinstance(result, tuple) else (result,):
        r = np.asarray(r.copy_to_host() if hasattr(r, "copy_to_host") else r)
        m.update(r.tobytes())
        m.update(str(r.shape).encode())
    return m.hexdigest()[:16]


def _dev(a):
    if not SIM or not isinstance(a, np.ndarray):
        return a
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


def _binary_cases(rng, dt):
    shapes = [(5,), (37, 13), (2, 3, 700)] if SIM else [(5,), (37, 13), (3, 4, 1000), (200000,), (64, 4096)]
    for shape in shapes:
        x = rng.standard_normal(shape).astype(dt) * 4
        p = rng.uniform(0, 1, shape).astype(dt)
        p.reshape(-1)[::7] = 0
        p.reshape(-1)[::11] = 1
        t = rng.uniform(0, 1, shape).astype(dt)
        t.reshape(-1)[::3] = np.round(t.reshape(-1)[::3])
        options = {
            "plain": {},
            "w": {"weight": rng.uniform(0.2, 2, shape[-1:]).astype(dt)},
            "wf": {"weight": rng.uniform(0.2, 2, shape).astype(dt)},
            "pw": {"pos_weight": rng.uniform(0.2, 3, shape[-1:]).astype(dt)},
        }
        for opt, kw in options.items():
            yield "binary_cross_entropy_with_logits", shape, opt, (x, t), kw
            if opt != "pw":
                yield "binary_cross_entropy", shape, opt, (p, t), kw


def _class_cases(rng, dt):
    shapes = [(5, 7), (3,), (2, 4, 3)] if SIM else [(64, 10), (37, 13), (300, 5), (5000, 10), (7, 3000), (3, 5, 40), (9,)]
    for shape in shapes:
        C = shape[0] if len(shape) == 1 else shape[1]
        x = (rng.standard_normal(shape) * 3).astype(dt)
        y = rng.integers(0, C, () if len(shape) == 1 else (shape[0],) + shape[2:])
        if y.ndim:
            y.reshape(-1)[::5] = -100
        probs = rng.random(shape).astype(dt)
        w = rng.uniform(0.2, 2, C).astype(dt)
        for opt, kw in {"plain": {}, "w": {"weight": w}, "smooth": {"label_smoothing": 0.2}}.items():
            yield "cross_entropy", shape, opt, (x, y), kw
            yield "cross_entropy", shape, opt + "+probs", (x, probs), kw
            if opt != "smooth":
                yield "nll_loss", shape, opt, (x, y), kw


def main():
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        for name, shape, opt, arrays, kw in list(_binary_cases(rng, dt)) + list(_class_cases(rng, dt)):
            fn = getattr(numbaloss, name)  # (not the registry: the script also runs on older commits)
            for reduction in ("none", "mean", "sum"):
                for grad in (False, True):
                    go = None
                    if grad:
                        go = rng.uniform(-2, 2, fn(*arrays, reduction="none", **kw).shape) if reduction == "none" else 2.5
                    out = fn(*map(_dev, arrays), reduction=reduction, return_grad=grad, grad_output=_dev(go),
                             **{k: _dev(v) for k, v in kw.items()})
                    print(name, np.dtype(dt).name, shape, opt, reduction, grad, _digest(out))


if __name__ == "__main__":
    main()
