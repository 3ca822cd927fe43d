"""``python -m numbaloss``: a first run on built-in example data."""

import time

import numpy as np

import numbaloss


def main():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((8, 5)).astype(np.float32)
    labels = np.array([0, 3, 1, 4, 2, 2, -100, 1])  # -100 is ignored, as in torch
    probs = 1 / (1 + np.exp(-logits))
    multi = (rng.random((8, 5)) < 0.4).astype(np.float32)

    print(f"numbaloss {numbaloss.__version__}: torch.nn.functional losses on NumPy arrays\n")
    print("example: 8 samples, 5 classes, float32 (first call compiles; later processes load the cache)\n")
    calls = [
        ("cross_entropy", lambda: numbaloss.cross_entropy(logits, labels, label_smoothing=0.1, return_grad=True)),
        ("nll_loss", lambda: numbaloss.nll_loss(np.log(np.exp(logits) / np.exp(logits).sum(1, keepdims=True)), labels, return_grad=True)),
        ("binary_cross_entropy", lambda: numbaloss.binary_cross_entropy(probs, multi, return_grad=True)),
        ("binary_cross_entropy_with_logits", lambda: numbaloss.binary_cross_entropy_with_logits(logits, multi, return_grad=True)),
    ]
    for name, call in calls:
        t0 = time.perf_counter()
        loss, grad = call()
        ms = (time.perf_counter() - t0) * 1e3
        print(f"  {name:34s} loss = {float(loss):.6f}   grad {grad.shape} {grad.dtype}   ({ms:.0f} ms)")
    # the logits path and the probabilities path agree, as they must
    a = numbaloss.binary_cross_entropy_with_logits(logits, multi)
    b = numbaloss.binary_cross_entropy(probs, multi)
    print(f"\nBCE(sigmoid(x)) - BCEWithLogits(x) = {float(a) - float(b):.2e}")


if __name__ == "__main__":
    main()
