"""Input generators for the parity tests (also used by the CUDA tests)."""

import zlib

import numba
import numpy as np

CLASS_SHAPES = [(41, 1271), (5, 3), (37, 13), (1, 1), (0, 4), (7,), (4, 5, 3, 2), (3, 6, 0)]
BINARY_SHAPES = [(41, 1271), (5,), (1,), (0,), (3, 4, 5)]
REDUCTIONS = ["mean", "sum", "none"]
DTYPES = [np.float32, np.float64]

#: option sets per loss: name -> list of (id, kwargs-builder(rng, C or shape))
CLASS_OPTIONS = {
    "plain": lambda rng, C: {},
    "weight": lambda rng, C: {"weight": rng.uniform(0.2, 2.0, C)},
    "ignore": lambda rng, C: {"ignore_index": -100},
    "ignore_valid_class": lambda rng, C: {"ignore_index": 0},
    "smooth": lambda rng, C: {"label_smoothing": 0.15},
    "weight_ignore_smooth": lambda rng, C: {"weight": rng.uniform(0.2, 2.0, C), "ignore_index": 1, "label_smoothing": 0.3},
}
PROB_OPTIONS = {
    "prob": lambda rng, C: {},
    "prob_weight_smooth": lambda rng, C: {"weight": rng.uniform(0.2, 2.0, C), "label_smoothing": 0.2},
}
BINARY_OPTIONS = {
    "plain": lambda rng, shape, logits: {},
    "weight_full": lambda rng, shape, logits: {"weight": rng.uniform(0.2, 2.0, shape)},
    "weight_last": lambda rng, shape, logits: {"weight": rng.uniform(0.2, 2.0, shape[-1:])},
    "pos_weight": lambda rng, shape, logits: {"pos_weight": rng.uniform(0.2, 3.0, shape[-1:])} if logits else {},
    "both": lambda rng, shape, logits: (
        {"weight": rng.uniform(0.2, 2.0, shape), "pos_weight": rng.uniform(0.2, 3.0, shape[-1:])} if logits else
        {"weight": rng.uniform(0.2, 2.0, shape)}
    ),
}


def class_case(name, shape, dtype, option, rng):
    """(input, target, kwargs) for cross_entropy / nll_loss."""
    C = shape[0] if len(shape) == 1 else shape[1]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if name == "nll_loss":
        x = x - np.log(np.exp(x.astype(np.float64)).sum(axis=0 if len(shape) == 1 else 1, keepdims=True)).astype(dtype)
    if option in PROB_OPTIONS:
        kwargs = PROB_OPTIONS[option](rng, C)
        t = rng.random(shape)
        axis = 0 if len(shape) == 1 else 1
        t = (t / np.maximum(t.sum(axis=axis, keepdims=True), 1e-12)).astype(dtype)
        return x, t, kwargs
    kwargs = CLASS_OPTIONS[option](rng, C)
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, max(C, 1), tshape).astype(np.int64)
    if "ignore_index" in kwargs and t.size:
        flat = t.reshape(-1)
        flat[rng.random(flat.size) < 0.3] = kwargs["ignore_index"]
        t = flat.reshape(tshape)
    return x, t, kwargs


def binary_case(name, shape, dtype, option, rng):
    logits = name == "binary_cross_entropy_with_logits"
    if logits:
        x = (rng.standard_normal(shape) * 4).astype(dtype)
    else:
        x = rng.uniform(0.0, 1.0, shape).astype(dtype)
    t = rng.uniform(0.0, 1.0, shape).astype(dtype)
    if t.size:
        t.reshape(-1)[::3] = np.round(t.reshape(-1)[::3])
    return x, t, BINARY_OPTIONS[option](rng, shape, logits)


def _reals(rng, shape):
    return rng.standard_normal(shape) * 2


def _signs(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def _weight(rng, shape):
    return {"weight": rng.uniform(0.2, 2.0, shape)}


#: The elementwise losses: name -> (input maker, target maker, {option id: kwargs maker(rng, shape)}).
#: Option "bcast" gives the target the input's last dimension only (broadcast, as torch allows).
ELEMENTWISE = {
    "l1_loss": (_reals, _reals, {"plain": lambda r, s: {}, "weight": _weight, "bcast": lambda r, s: {}}),
    "mse_loss": (_reals, _reals, {"plain": lambda r, s: {}, "weight": _weight}),
    "smooth_l1_loss": (_reals, _reals, {"plain": lambda r, s: {}, "beta0": lambda r, s: {"beta": 0.0},
                                        "beta": lambda r, s: {"beta": 0.7}}),
    "huber_loss": (_reals, _reals, {"plain": lambda r, s: {}, "delta_weight": lambda r, s: dict(_weight(r, s), delta=0.6)}),
    "soft_margin_loss": (_reals, _signs, {"plain": lambda r, s: {}, "bcast": lambda r, s: {}}),
    "kl_div": (
        lambda r, s: np.log(r.uniform(0.05, 1.0, s)),
        lambda r, s: np.where(r.random(s) < 0.2, 0.0, r.random(s)),
        {"plain": lambda r, s: {}, "log_target": lambda r, s: {"log_target": True}, "bcast": lambda r, s: {}},
    ),
    "poisson_nll_loss": (
        _reals,
        lambda r, s: np.floor(r.uniform(0, 5, s)),
        {"plain": lambda r, s: {}, "full": lambda r, s: {"full": True},
         "rates_full": lambda r, s: {"log_input": False, "full": True, "eps": 1e-3}},
    ),
    "hinge_embedding_loss": (_reals, _signs, {"plain": lambda r, s: {}, "margin": lambda r, s: {"margin": 0.5},
                                               "bcast": lambda r, s: {}}),
    # three data arrays: the third is made by THIRD, its options may replace it
    "margin_ranking_loss": (_reals, _reals, {"plain": lambda r, s: {}, "margin": lambda r, s: {"margin": 0.4}}),
    "gaussian_nll_loss": (
        _reals,
        _reals,
        {
            "plain": lambda r, s: {},
            "full_clamped": lambda r, s: {"full": True, "eps": 0.05},  # some var below eps: clamped
            "var_row": lambda r, s: {"var": r.uniform(0.1, 2.0, s[:-1])},  # one variance per row
            "var_float": lambda r, s: {"var": 0.7},
        },
    ),
}
def _labels(rng, shape):
    return (rng.random(shape) < 0.4).astype(np.float64)


def _pair_labels(rng, shape):
    """cosine_embedding_loss's target: one 1 / -1 per row (some 0: no loss), 0-d for a 1-d input."""
    return rng.choice([-1.0, 1.0, 0.0], size=shape[:-1], p=[0.45, 0.45, 0.1])


#: The row losses (reduced over the last dimension first), as :data:`ELEMENTWISE`: name -> (input
#: maker, maker of the second data array (target; cosine's input2), {option id: kwargs maker}).
#: Option "bcast" gives the second array one row (the input's last dimension only; (1, D) for cosine).
ROWS = {
    "multilabel_soft_margin_loss": (
        _reals,
        _labels,
        {"plain": lambda r, s: {}, "weight": lambda r, s: _weight(r, s[-1:]), "weight_full": _weight,
         "bcast": lambda r, s: {}},
    ),
    "cosine_embedding_loss": (
        _reals,
        _reals,
        {"plain": lambda r, s: {}, "margin": lambda r, s: {"margin": 0.3}, "neg_margin": lambda r, s: {"margin": -0.4},
         "bcast": lambda r, s: {}},
    ),
    "multi_margin_loss": (
        _reals,
        lambda r, s: r.integers(0, s[-1], s[:-1]),  # one class index per row
        {"plain": lambda r, s: {}, "p2": lambda r, s: {"p": 2}, "weight": lambda r, s: _weight(r, s[-1:]),
         "p2_margin_weight": lambda r, s: dict(_weight(r, s[-1:]), p=2, margin=0.6)},
    ),
}
ROWS["triplet_margin_loss"] = (
    _reals,
    _reals,
    {"plain": lambda r, s: {}, "swap": lambda r, s: {"swap": True}, "p1": lambda r, s: {"p": 1},
     "p1.5_swap": lambda r, s: {"p": 1.5, "swap": True}, "p3_margin": lambda r, s: {"p": 3, "margin": 0.4},
     "pinf_eps0": lambda r, s: {"p": float("inf"), "eps": 0.0}, "bcast": lambda r, s: {}},
)
def _label_lists(rng, shape):
    """multilabel_margin_loss's target: per row some classes (duplicates possible), a -1, then any
    entries in [-1, C) (ignored, but range-checked)."""
    C = shape[-1]
    y = rng.integers(-1, C, shape)
    flat = y.reshape(-1, C) if C else y.reshape(0, 0)
    for row in flat:
        k = rng.integers(0, C + 1)
        row[:k] = rng.integers(0, C, k)
        if k < C:
            row[k] = -1
    return y


@numba.njit
def l1_distance(x, y):
    """A user's distance for triplet_margin_with_distance_loss: ``sum |x - y|`` of two rows."""
    return np.abs(x - y).sum()


@numba.njit
def l1_distance_grad(x, y, gx, gy):
    """Its gradient: ``sign(x - y)`` and ``-sign(x - y)`` (0 at a tie)."""
    for i in range(x.size):
        s = 1.0 if x[i] > y[i] else (-1.0 if x[i] < y[i] else 0.0)
        gx[i] = s
        gy[i] = -s


#: The torch twin of each test distance (run_torch passes it to torch).
TORCH_DISTANCES = {l1_distance: lambda x, y: (x - y).abs().sum(-1)}
L1 = (l1_distance, l1_distance_grad)

ROWS["triplet_margin_with_distance_loss"] = (
    _reals,
    _reals,
    {"plain": lambda r, s: {}, "swap_margin": lambda r, s: {"swap": True, "margin": 0.5},
     "l1": lambda r, s: {"distance_function": L1, "margin": 2.0}, "l1_swap": lambda r, s: {"distance_function": L1, "swap": True}},
)
ROWS["multilabel_margin_loss"] = (_reals, _label_lists, {"plain": lambda r, s: {}})
#: (shape, option) pairs a row loss does not take (torch raises; tests/test_errors.py checks ours):
#: cosine's inputs are 1-d or 2-d; multi_margin's too, with at least one class; no inf norm of empty rows.
ROW_SKIP = {"cosine_embedding_loss": lambda s, o: len(s) > 2,
            "multi_margin_loss": lambda s, o: len(s) > 2 or s[-1] == 0,
            "triplet_margin_loss": lambda s, o: s[-1] == 0 and o.startswith("pinf"),
            "multilabel_margin_loss": lambda s, o: len(s) > 2 or s[-1] == 0}
ROW_SHAPES = [(300, 260), (37, 129), (5,), (1, 1), (0, 4), (3, 0), (3, 4, 5)]

#: The third data array of the losses that have one: name -> (its argument name, its maker).
THIRD = {
    "margin_ranking_loss": ("target", _signs),
    "gaussian_nll_loss": ("var", lambda r, s: r.uniform(0.01, 2.0, s)),
    "cosine_embedding_loss": ("target", _pair_labels),
    "triplet_margin_loss": ("negative", _reals),
    "triplet_margin_with_distance_loss": ("negative", _reals),
}
ELEMENTWISE_SHAPES = [(41, 1271), (5,), (1,), (0,), (3, 4, 5)]


def third(name, rng, shape, dtype):
    """``{name: array}``: the third data array of a loss that has one (:data:`THIRD`), else ``{}``."""
    if name not in THIRD:
        return {}
    arg, maker = THIRD[name]
    return {arg: maker(rng, shape).astype(dtype)}


def elementwise_case(name, shape, dtype, option, rng):
    """(input, target, kwargs) for an elementwise loss of :data:`ELEMENTWISE`; a third data array
    travels in ``kwargs`` by its name (``var``; margin_ranking_loss's ``target``, its ``t`` being
    ``input2``)."""
    make_x, make_t, options = ELEMENTWISE[name]
    x = make_x(rng, shape)
    if options is not None and option in ("rates_full",):
        x = rng.uniform(0.0, 3.0, shape)  # rates, not log-rates
    tshape = shape[-1:] if option == "bcast" else shape
    t = make_t(rng, tshape).astype(dtype)
    kwargs = dict(third(name, rng, shape, dtype), **options[option](rng, shape))
    kwargs = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and k in ("var",) else v) for k, v in kwargs.items()}
    if name == "kl_div" and option == "log_target":
        t = np.log(np.maximum(t, 1e-3)).astype(dtype)
    return x.astype(dtype), t, kwargs


def row_case(name, shape, dtype, option, rng):
    """(input, second data array, kwargs) for a row loss of :data:`ROWS` (cosine_embedding_loss's
    label target travels in ``kwargs``, as a third data array)."""
    make_x, make_t, options = ROWS[name]
    x = make_x(rng, shape).astype(dtype)
    # "bcast": one row, with the input's number of dimensions where the loss needs it (cosine, triplet)
    tshape = shape if option != "bcast" else ((1,) * (len(shape) - 1) + shape[-1:] if name in THIRD else shape[-1:])
    t = make_t(rng, tshape)
    t = t.astype(dtype) if t.dtype.kind == "f" else t  # class indices stay integers
    kwargs = dict(third(name, rng, shape, dtype), **options[option](rng, shape))
    return x, t, kwargs


def loss_shape(name, x, t):
    """The unreduced loss's shape for a case's input ``x`` and second data array ``t``."""
    if name in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        return x.shape
    if name in ELEMENTWISE:
        return np.broadcast_shapes(x.shape, t.shape)  # margin_ranking's target and var have the loss's shape
    if name in ROWS:
        return x.shape[:-1]
    return () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]


def grad_output_for(reduction, loss_shape, rng):
    if reduction == "none":
        return rng.uniform(-2.0, 2.0, loss_shape)
    return 2.5


def all_cases():
    """Every (loss, shape, dtype, option, reduction, use_grad_output) parity case, as pytest ids + args."""
    out = []
    for name in ("cross_entropy", "nll_loss"):
        if name == "cross_entropy":
            options = list(CLASS_OPTIONS) + list(PROB_OPTIONS)
        else:  # nll_loss has no label_smoothing
            options = [o for o in CLASS_OPTIONS if "smooth" not in o]
        for shape in CLASS_SHAPES:
            for option in options:
                for reduction in REDUCTIONS:
                    out.append((name, shape, option, reduction))
    for name in ("binary_cross_entropy", "binary_cross_entropy_with_logits"):
        for shape in BINARY_SHAPES:
            for option in BINARY_OPTIONS:
                if option == "pos_weight" and name == "binary_cross_entropy":
                    continue
                for reduction in REDUCTIONS:
                    out.append((name, shape, option, reduction))
    for name, (_, _, options) in ELEMENTWISE.items():
        for shape in ELEMENTWISE_SHAPES:
            # the large shape (the parallel kernel) with the loss's first options only: each compiles its own
            for option in list(options)[: 1 if shape == ELEMENTWISE_SHAPES[0] else None]:
                for reduction in REDUCTIONS + (["batchmean"] if name == "kl_div" else []):
                    out.append((name, shape, option, reduction))
    for name, (_, _, options) in ROWS.items():
        for shape in ROW_SHAPES:
            for option in list(options)[: 1 if shape == ROW_SHAPES[0] else None]:
                if name in ROW_SKIP and ROW_SKIP[name](shape, option):
                    continue
                for reduction in REDUCTIONS:
                    out.append((name, shape, option, reduction))
    return out


def make(name, shape, dtype, option, seed=0):
    # crc32, not hash(): str hashes change from process to process
    rng = np.random.default_rng(zlib.crc32(repr((name, shape, option, np.dtype(dtype).str, seed)).encode()))
    if name in ("cross_entropy", "nll_loss"):
        return class_case(name, shape, dtype, option, rng), rng
    if name in ELEMENTWISE:
        return elementwise_case(name, shape, dtype, option, rng), rng
    if name in ROWS:
        return row_case(name, shape, dtype, option, rng), rng
    return binary_case(name, shape, dtype, option, rng), rng
