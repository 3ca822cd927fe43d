"""asv benchmarks: every loss x (forward, forward+gradient) x float32/float64 x small/medium/large.

Run offline in the current environment (nothing is built):

    cd asv_benchmarks && asv machine --yes && asv run --python=same

``setup`` calls each loss once, so JIT compilation (or the cache load) is never timed.
"""

import numpy as np

import numbaloss
from numbaloss.bench import sample_inputs, workloads

SIZES = {"small": 64, "medium": 1 << 16, "large": 1 << 22}  # elements of the input
CLASSES = {"small": 10, "medium": 1000, "large": 32000}


def _inputs(loss, size, dtype):
    return sample_inputs(numbaloss.REGISTRY[loss], SIZES[size], dtype, np.random.default_rng(0), CLASSES[size])


class Losses:
    params = (
        list(numbaloss.REGISTRY),  # every registered loss
        ["forward", "forward+gradient"],
        ["float32", "float64"],
        list(SIZES),
    )
    param_names = ["loss", "mode", "dtype", "size"]

    def setup(self, loss, mode, dtype, size):
        self.fn = getattr(numbaloss, loss)
        self.arrays = _inputs(loss, size, np.dtype(dtype))  # every data array of the loss, in order
        self.grad = mode == "forward+gradient"
        self.fn(*self.arrays, return_grad=self.grad)  # warm the JIT / cache

    def time_loss(self, loss, mode, dtype, size):
        self.fn(*self.arrays, return_grad=self.grad)


class BenchWorkloads:
    """The workloads of ``python -m numbaloss.bench`` (the README's roofline table), numbaloss's side:
    the same labels, inputs and calls, so the figures the table states for one day are followed over
    time (cross_entropy 1048576x10 with weight, the 2^24 elementwise rows, the row losses, ctc_loss)."""

    params = [[label for label, *_ in workloads()]]
    param_names = ["workload"]
    timeout = 600  # the 8192x32000 rows: a 1 GiB input, made in setup

    def setup(self, label):
        _, name, make, fused = next(w for w in workloads() if w[0] == label)
        x, y, kw = make(np.random.default_rng(0))
        fn = getattr(numbaloss, name)
        self.call = lambda: fn(x, y, return_grad=fused, **kw)
        self.call()  # warm the JIT / cache

    def time_workload(self, label):
        self.call()


class CrossEntropyOptions:
    """The options that change the kernel path: weights, smoothing, probabilities (long and short
    rows: row kernel and class-major tiles), K-dim."""

    params = [["weight", "label_smoothing", "probabilities", "probabilities_10_classes", "kdim"]]
    param_names = ["option"]

    def setup(self, option):
        rng = np.random.default_rng(0)
        self.kw = {}
        if option == "kdim":
            self.x = rng.standard_normal((8, 21, 128, 128)).astype(np.float32)
            self.t = rng.integers(0, 21, (8, 128, 128))
        elif option == "probabilities_10_classes":
            self.x = rng.standard_normal((1 << 18, 10)).astype(np.float32)
            p = rng.random(self.x.shape).astype(np.float32)
            self.t = p / p.sum(axis=1, keepdims=True)
        else:
            self.x = rng.standard_normal((4096, 1000)).astype(np.float32)
            self.t = rng.integers(0, 1000, 4096)
            if option == "weight":
                self.kw["weight"] = rng.random(1000).astype(np.float32)
            elif option == "label_smoothing":
                self.kw["label_smoothing"] = 0.1
            else:
                p = rng.random(self.x.shape).astype(np.float32)
                self.t = p / p.sum(axis=1, keepdims=True)
        numbaloss.cross_entropy(self.x, self.t, return_grad=True, **self.kw)

    def time_forward_and_gradient(self, option):
        numbaloss.cross_entropy(self.x, self.t, return_grad=True, **self.kw)


class CTC:
    """ctc_loss at the issue's sizes (T, N, C, S), log-softmax float32 inputs, full lengths."""

    params = [["200x32x64x40", "500x64x128x100"], ["forward", "forward+gradient"]]
    param_names = ["T x N x C x S", "mode"]

    def setup(self, shape, mode):
        T, N, C, S = map(int, shape.split("x"))
        rng = np.random.default_rng(0)
        x = rng.standard_normal((T, N, C))
        self.args = ((x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32), rng.integers(1, C, (N, S)),
                     np.full(N, T), np.full(N, S))
        self.grad = mode == "forward+gradient"
        numbaloss.ctc_loss(*self.args, return_grad=self.grad)

    def time_ctc(self, shape, mode):
        numbaloss.ctc_loss(*self.args, return_grad=self.grad)


class TorchTrainingStep:
    """numbaloss.torch's cross_entropy against torch's in a training step's loss (forward +
    backward on a leaf tensor), float32: the adapter's per-call cost (64x10) and a large vocabulary."""

    params = [["64x10", "2048x32000"], ["torch", "numbaloss.torch"]]
    param_names = ["N x C", "implementation"]

    def setup(self, shape, implementation):
        try:
            import torch
            import numbaloss.torch as nlt
        except ImportError:
            raise NotImplementedError("torch is not installed")  # asv skips the benchmark
        N, C = map(int, shape.split("x"))
        rng = np.random.default_rng(0)
        self.x = torch.from_numpy(rng.standard_normal((N, C), np.float32))
        self.y = torch.from_numpy(rng.integers(0, C, N))
        self.fn = torch.nn.functional.cross_entropy if implementation == "torch" else nlt.cross_entropy
        self.time_step(shape, implementation)

    def time_step(self, shape, implementation):
        leaf = self.x.detach().requires_grad_()
        self.fn(leaf, self.y).backward()
