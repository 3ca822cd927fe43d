r"""The elementwise template: a loss's scalar formulas in, its CPU kernels and host path out.

An elementwise loss is ``loss_i = w_i * value(x_i, t_i, p_i, k)`` over arrays of
one shape, with ``d loss_i / d x_i = w_i * grad(x_i, t_i, p_i, k)``.  ``w`` is an
optional multiplying parameter (``weight``), ``p`` an optional parameter the
formulas read (``pos_weight``; 1 when absent), both broadcast to the input, and
``k`` a scalar option (``beta``, ``delta``, ``margin``; 0.0 when the loss has
none).  ``p`` may also be a data array of the loss (``margin_ranking_loss``'s
``input2``, ``gaussian_nll_loss``'s ``var``: the family's ``roles``) with a
gradient of its own, ``w_i * param_grad(x_i, t_i, p_i, k)``, summed back to
its shape.  An optional ``check(x, t, p, k)`` marks elements out of the loss's
domain (BCE's input in [0, 1], a negative ``var``); the first one is raised as
ValueError.

Given these formulas (``@scalar`` functions, shared with the CUDA template),
:func:`register` makes the loss's CPU kernel (a block function, run block by
block for small inputs and in a parallel loop for large ones,
:class:`~numbaloss.core.jit.Blocked`) and registers it.  It walks fixed blocks of :data:`~numbaloss.core.reduce.BLOCK`
elements: the losses (to the output, or to a scratch block summed pairwise in
float64), the first bad input, and the gradient with the reduction's scale
fused in.  Results are bitwise the same for any thread count.

Broadcast parameters are never materialised at the input's size: a kernel reads
the parameter through its broadcast strides and expands one block at a time
into a scratch buffer that stays in L1 (:func:`_param_block`).

With a gradient, value and gradient come from one loop: one pass over the
block's data instead of two.  (LLVM does not merge the calls both formulas make,
an ``exp(-|z|)`` say: ``roofline.formula_ops`` counts two.)  A value must be the
same bits with and without the gradient (a test checks it for every loss):
write a divisor that both formulas use as an explicit reciprocal
(``gaussian_nll_loss``), since the ``arcp`` flag lets LLVM turn divisions by one
divisor into one reciprocal only where both formulas are in the loop.

Each loss gets its own copy of the block function, with its own qualname,
its formulas in the copy's globals, and its code's file set to the loss's
module: a real function, so Numba's on-disk cache finds it in a new process
(closures miss it, Numba issue #6264), cached beside the loss's module, and
recompiled when that module (its formulas) changes.
"""

import dataclasses
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from . import reduce, vmath
from .dispatch import host_array, host_param, is_device_array
from . import jit
from .jit import internal, scalar
from .registry import register as _register
from .validate import broadcast_shape, check_same_shape, empty, float_dtype


@scalar
def no_check(x, t, p, k):
    """The default input check: every input is in the loss's domain."""
    return True


@dataclass(frozen=True, eq=False)
class Elementwise:
    """The formulas and parameter roles of one elementwise loss (see the module docstring)."""

    value: object
    grad: object
    check: object = no_check
    check_error: str = ""  #: ValueError text for an element that fails ``check``
    check_on: str = "input"  #: the role whose value the error reports: ``"input"`` or ``"param"``
    scale: str = None  #: name of the multiplying parameter (``"weight"``) or None
    param: str = None  #: name of the parameter the formulas read (``"pos_weight"``) or None
    option: str = None  #: name of the scalar option passed as ``k``, or None
    #: how ``target`` may differ from ``input`` in shape: ``"same"`` (not at all), ``"target"``
    #: (it broadcasts to the input's shape) or ``"both"`` (torch's ``broadcast_tensors``: the loss
    #: has the broadcast shape, and the input's gradient is summed back to the input's shape)
    broadcast: str = "same"
    warn_broadcast: bool = False  #: torch's UserWarning when target's size differs from input's
    #: ``"broadcast"``: the scale broadcasts to the input; ``"input"``: it must have the input's shape
    scale_shape: str = "broadcast"
    weighted_mean: bool = False  #: ``"mean"`` with a scale divides by the scale's sum (l1, mse)
    switches: tuple = ()  #: boolean options that pick a formula pair from ``variants``
    variants: dict = None  #: ``{(switch values...): (value, grad)}``
    precheck: object = None  #: ``precheck(options, reduction)``: option errors and torch's warnings
    #: the data arrays' roles in argument order: ``("input", "target")``, or with ``"param"`` when the
    #: formula parameter is a data array of the loss (``margin_ranking_loss``: input1, input2, target)
    roles: tuple = ("input", "target")
    param_grad: object = None  #: ``d value / d p`` when the param is a data array with a gradient
    #: ``param_shape(input_shape, target_shape, p_shape)``: the shape a data param broadcasts as,
    #: raising for the shapes torch rejects (gaussian_nll's ``var``); None: its own shape
    param_shape: object = None
    param_float: bool = False  #: a Python float is accepted for a data param (no gradient then)
    param_kinds: str = "biuf"  #: NumPy dtype kinds accepted for a data param (cast to the input's dtype)

    @property
    def data_param(self):
        """Whether the formula parameter is one of the loss's data arrays (not an option)."""
        return "param" in self.roles

    def options_of(self, options):
        """``(scale parameter or None, formula parameter or None, k)`` from a call's options."""
        w = options.get(self.scale) if self.scale else None
        p = options.get(self.param) if self.param else None
        return w, p, (float(options[self.option]) if self.option else 0.0)

    def formulas(self, options):
        """``(key, value, grad, param_grad)``: the formulas the call's boolean options select (key
        ``()`` without switches); each key compiles its own kernels, on first use.  A variant is
        ``(value, grad)`` or ``(value, grad, param_grad)``."""
        if not self.switches:
            return (), self.value, self.grad, self.param_grad
        key = tuple(bool(options[s]) for s in self.switches)
        value, grad, *pgrad = self.variants[key]
        return key, value, grad, (pgrad[0] if pgrad else self.param_grad)

    def kernel_name(self, name, key):
        """The name of one formula pair's kernels: the loss's name, with the switches' values
        (``kl_div_log_target1``)."""
        return name + "".join(f"_{s}{int(v)}" for s, v in zip(self.switches, key))

    def check_error_at(self, pos, shape, x, p, p_shape, p_own_shape):
        """The ValueError for the first element (flat position ``pos`` of the loss's ``shape``) that
        fails ``check``, naming the failing value: the input's (``x``, flat, of the loss's shape) or
        the param's (``p``, flat, broadcast to the loss's shape as ``p_shape``; its index reported
        in its own shape ``p_own_shape``)."""
        where = [int(i) for i in np.unravel_index(pos, shape)]
        if self.check_on == "input":
            return ValueError(f"{self.check_error}; input{where} = {x[pos]}")
        # the param's own index: broadcast dimensions at 0
        where = [0 if n == 1 else i for i, n in zip(where[len(shape) - len(p_shape):], p_shape)]
        flat = int(np.ravel_multi_index(where, p_shape)) if where else 0
        where = [int(i) for i in np.unravel_index(flat, p_own_shape)]
        return ValueError(f"{self.check_error}; {self.param}{where} = {p[flat]}")

    def shapes(self, input_shape, target_shape, param_shape=None):
        """The loss's shape, checking ``target``'s (and a data param's) shape against the input's as
        torch does."""
        input_shape, target_shape = tuple(input_shape), tuple(target_shape)
        if param_shape is not None:  # a data param: all three broadcast together
            try:
                return tuple(np.broadcast_shapes(input_shape, target_shape, tuple(param_shape)))
            except ValueError:
                raise ValueError(f"input of shape {input_shape}, target of shape {target_shape} and {self.param} "
                                 f"of shape {tuple(param_shape)} do not broadcast") from None
        if self.broadcast == "same" or input_shape == target_shape:
            check_same_shape(input_shape, target_shape)
            return input_shape
        if self.warn_broadcast:
            warnings.warn(
                f"Using a target size ({target_shape}) that is different to the input size ({input_shape}). "
                "This will likely lead to incorrect results due to broadcasting. "
                "Please ensure they have the same size.",
                UserWarning,
                stacklevel=5,  # shapes < run_cpu < registry.run < the loss < its caller
            )
        if self.broadcast == "target":
            broadcast_shape(target_shape, input_shape, "target")
            return input_shape
        try:
            return tuple(np.broadcast_shapes(input_shape, target_shape))
        except ValueError:
            raise ValueError(f"input of shape {input_shape} and target of shape {target_shape} do not broadcast") from None

    def check_scale(self, w_shape, input_shape):
        if self.scale_shape == "input" and tuple(w_shape) != tuple(input_shape):
            raise ValueError(f"Weights and input must have the same size: {self.scale} of shape {tuple(w_shape)}, "
                             f"input of shape {tuple(input_shape)}")

    def denominator(self, reduction, w, shape):
        """What ``"mean"`` (or ``"batchmean"``) divides by: the element count, the scale's sum
        (``weighted_mean``), or the first dimension (1 for a 0-d input)."""
        if reduction == "batchmean":
            return shape[0] if shape else 1
        if self.weighted_mean and w is not None:
            return reduce.total(np.ascontiguousarray(w, np.float64).reshape(-1))
        return int(np.prod(shape, dtype=np.int64))


def sum_to_shape(g, shape):
    """``g`` (of a broadcast shape) summed back to ``shape``: the gradient of a broadcast input."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape) if axes else g.reshape(shape)


# ----------------------------------------------------------------- kernels
@internal
def _param_block(p, pmap, lo, hi):
    """A broadcast parameter's values at flat input positions ``lo..hi``, expanded into a
    block-sized scratch.

    ``pmap = [nd, shape..., strides...]`` (element strides into ``p``, 0 along broadcast
    dimensions, dimensions already merged on the host, :func:`broadcast_map`).  One division
    per dimension at the block's start, then runs along the last dimension with a carry: a
    few cycles per element, on data that stays in L1.

    A compiled call, not inlined: once per block it costs nothing, and an allocation inlined
    into a ``prange`` body can be hoisted out of its branch by Numba.
    """
    n = hi - lo
    dst = np.empty(n, p.dtype)
    if n == 0:
        return dst
    nd = pmap[0]
    shape = pmap[1 : 1 + nd]
    strides = pmap[1 + nd : 1 + 2 * nd]
    idx = np.empty(nd, np.int64)
    rem = lo
    off = 0
    for d in range(nd - 1, -1, -1):
        idx[d] = rem % shape[d]
        rem //= shape[d]
        off += idx[d] * strides[d]
    last = nd - 1
    i = 0
    while i < n:
        run_ = min(shape[last] - idx[last], n - i)
        s = strides[last]
        seg = dst[i : i + run_]  # slices, not dst[i + j]: a sum Numba cannot prove >= 0 keeps a loop scalar
        if s == 1:
            src = p[off : off + run_]
            for j in range(run_):
                seg[j] = src[j]
        elif s == 0:
            v = p[off]
            for j in range(run_):
                seg[j] = v
        else:
            for j in range(run_):
                seg[j] = p[off + j * s]
        i += run_
        off += run_ * s
        idx[last] += run_
        d = last
        while d > 0 and idx[d] == shape[d]:
            off -= shape[d] * strides[d]
            idx[d] = 0
            d -= 1
            idx[d] += 1
            off += strides[d]
    return dst


@scalar
def _grad_scale_block(gscale, gstride, lo, n, x):
    """The gradient scale of elements ``lo..lo+n`` in ``x``'s dtype, contiguous: the block of a
    per-element ``gscale`` (float64, or ``x``'s dtype), or ``n`` copies of a uniform one.  Tiny
    loops with no formulas in them; the gradient loop then reads one contiguous array of its own
    width."""
    gs = np.empty(n, x.dtype)
    if gstride:
        src = gscale[lo : lo + n]  # a slice: src[i], not gscale[lo + i], whose wrap-around check keeps the loop scalar
        for i in range(n):
            gs[i] = vmath.like(src[i], x)
    else:
        g = vmath.like(gscale[0], x)
        for i in range(n):
            gs[i] = g
    return gs


def _block(b, x, t, tmap, w, wmap, p, pmap, k, gscale, gstride, out, grad, pgrad, partials, bad):
    """Block ``b`` of one elementwise loss (``VALUE``, ``GRAD``, ``PGRAD``, ``CHECK``: its formulas,
    bound per loss).

    The losses (into ``out`` for ``none``, else a scratch block summed pairwise
    into ``partials[b]``), ``bad[b]`` = the block's first element failing ``CHECK``
    (or -1), the gradient ``GRAD * w * g`` and the param's ``PGRAD * w * g``.

    ``tmap``/``wmap``/``pmap`` are None unless the target or parameter is broadcast, and ``grad``
    (``pgrad``) is None when no (param) gradient is asked for: Numba prunes ``is None`` branches
    on arguments while compiling, so a call compiles only the parts it uses.
    """
    block = reduce.BLOCK
    lo = b * block
    hi = min(lo + block, x.size)
    n = hi - lo
    one = vmath.like(1.0, x)
    has_w = w.size > 0
    has_p = p.size > 0
    xs = x[lo:hi]
    ts = t[lo:hi] if tmap is None else _param_block(t, tmap, lo, hi)
    if wmap is None:
        ws = w[lo:hi] if has_w else w
    else:
        ws = _param_block(w, wmap, lo, hi)
    if pmap is None:
        ps = p[lo:hi] if has_p else p
    else:
        ps = _param_block(p, pmap, lo, hi)
    want_out = out.size > 0
    dst = out[lo:hi] if want_out else np.empty(n, x.dtype)
    ok = True
    # Pure maps: LLVM vectorizes them with the branch-free math.  With a gradient, the value and
    # the gradient come from one loop (one pass over the block's data; the exp two formulas
    # both compute is still computed twice).  The gradient scale is read from a contiguous block of
    # the input's dtype in both cases (a uniform scale expanded into L1 scratch): one gradient
    # loop to compile, not two, and never gscale[i * gstride], a gather to LLVM, left scalar.
    if grad is None:
        for i in range(n):
            xi = xs[i]
            ti = ts[i]
            pi = ps[i] if has_p else one
            ok &= CHECK(xi, ti, pi, k)  # noqa: F821
            dst[i] = VALUE(xi, ti, pi, k) * (ws[i] if has_w else one)  # noqa: F821
    else:
        gd = grad[lo:hi]
        gs = _grad_scale_block(gscale, gstride, lo, n, x)
        for i in range(n):
            xi = xs[i]
            ti = ts[i]
            pi = ps[i] if has_p else one
            wi = ws[i] if has_w else one
            ok &= CHECK(xi, ti, pi, k)  # noqa: F821
            dst[i] = VALUE(xi, ti, pi, k) * wi  # noqa: F821
            gd[i] = GRAD(xi, ti, pi, k) * wi * gs[i]  # noqa: F821
        if pgrad is not None:
            pd = pgrad[lo:hi]
            for i in range(n):
                wi = ws[i] if has_w else one
                pd[i] = PGRAD(xs[i], ts[i], ps[i], k) * wi * gs[i]  # noqa: F821
    partials[b] = 0.0 if want_out else reduce.tree_sum_inlined(dst, np.empty((n + 1) // 2))
    bad[b] = -1
    if not ok:
        for i in range(n):
            if not CHECK(xs[i], ts[i], ps[i] if has_p else one, k):  # noqa: F821
                bad[b] = lo + i
                break


def make_kernel(name, value, grad, param_grad, check, source_file):
    """The loss's own copy of :func:`_block` (a real function with its own qualname and its formulas
    in its globals, so Numba's on-disk cache finds it), as a :class:`~numbaloss.core.jit.Blocked` kernel."""
    globals_ = dict(VALUE=value, GRAD=grad, PGRAD=param_grad or grad, CHECK=check)
    return jit.blocked_copy(_block, f"{name}_block", globals_, source_file)


# ----------------------------------------------------------------- host path
def broadcast_map(shape, param_shape):
    """``pmap`` for a parameter broadcast to ``shape`` (see :func:`_param_block`), or an empty array when
    the parameter already has the input's size (read directly: the kernels then get None).  Adjacent dimensions that the
    parameter walks together are merged, so most maps have one or two dimensions."""
    if int(np.prod(param_shape, dtype=np.int64)) == int(np.prod(shape, dtype=np.int64)):
        return empty(np.int64)
    strides = np.broadcast_to(np.empty(param_shape, np.int8), shape).strides  # itemsize 1: element strides
    dims = [(n, s) for n, s in zip(shape, strides) if n != 1] or [(1, 0)]
    merged = [dims[-1]]
    for n, s in reversed(dims[:-1]):
        n1, s1 = merged[0]
        if s == s1 * n1:  # walks on from the dimension after it (also both broadcast: 0 == 0)
            merged[0] = (n * n1, s1)
        else:
            merged.insert(0, (n, s))
    return np.array([len(merged)] + [n for n, _ in merged] + [s for _, s in merged], np.int64)


def host_param_block(p, name, dtype, shape):
    """An optional broadcast parameter as ``(compact contiguous values, pmap)``: ``pmap`` is None
    when the parameter is absent (its values then empty) or already of the input's size."""
    p = host_param(p, name, dtype)
    if p is None:
        return empty(dtype), None
    broadcast_shape(p.shape, shape, name)
    pmap = broadcast_map(shape, p.shape)
    return p.reshape(-1), (pmap if pmap.size else None)


def data_param(f, p, input_shape, target_shape):
    """A data param (``input2``, ``var``) as ``(array, the shape it broadcasts as, its own shape,
    whether it gets a gradient)``, with torch's checks: a Python float where the family takes one
    (negative: ValueError; a 0-d array without gradient), else an array whose shape the family's
    ``param_shape`` accepts."""
    if f.param_float and isinstance(p, float):
        if p < 0:  # torch checks the float at once (an array is checked in the kernel)
            raise ValueError(f"{f.param} has negative entry/entries")
        return np.asarray(p), (), (), False
    if not is_device_array(p):
        if isinstance(p, (bool, int, complex, str, bytes)) or not hasattr(p, "__array__"):
            kinds = "an array or a float" if f.param_float else "an array"
            raise TypeError(f"{f.param} must be {kinds}, got {type(p).__name__}")
        p = np.asarray(p)
    if np.dtype(p.dtype).kind not in f.param_kinds:
        raise TypeError(f"{f.param} must be a floating-point array, got {np.dtype(p.dtype)}" if f.param_kinds == "f"
                        else f"{f.param} must be a real numeric array, got {np.dtype(p.dtype)}")
    own = tuple(p.shape)
    p_shape = own if f.param_shape is None else tuple(f.param_shape(tuple(input_shape), tuple(target_shape), own))
    return p, p_shape, own, f.param_grad is not None


def run_cpu(spec, *arrays, reduction, return_grad, grad_output, **options):
    """The host path of every elementwise loss (see :class:`numbaloss.core.registry.Loss`)."""
    f = spec.family
    if f.precheck is not None:
        f.precheck(options, reduction)
    data = dict(zip(f.roles, arrays))
    names = dict(zip(f.roles, spec.arrays))  # errors name the caller's argument (margin_ranking's input1)
    x = host_array(data["input"], names["input"])
    t = host_array(data["target"], names["target"])
    dtype = float_dtype(x.dtype, names["input"])
    if t.dtype.kind not in "biuf":
        raise TypeError(f"{names['target']} must be a real numeric array, got {t.dtype}")
    in_shape = x.shape
    w, p, k = f.options_of(options)
    p_shape = p_own_shape = None
    want_pgrad = False
    if f.data_param:
        p, p_shape, p_own_shape, want_pgrad = data_param(f, data["param"], in_shape, t.shape)
        p = host_param(p, f.param, dtype).reshape(p_shape)
        want_pgrad = want_pgrad and return_grad
    shape = f.shapes(in_shape, t.shape, p_shape)
    if shape != in_shape:  # torch broadcasts the input too (and warns): rare, so it is expanded here
        x = np.broadcast_to(x, shape)
    if w is not None:
        w = host_param(w, f.scale, dtype)
        f.check_scale(w.shape, in_shape)
    denominator = f.denominator(reduction, w, shape)
    w, wmap = host_param_block(w, f.scale, dtype, shape)
    p, pmap = host_param_block(p, f.param, dtype, shape)
    t, tmap = host_param_block(t, "target", dtype, shape)
    xf = np.ascontiguousarray(x).reshape(-1)
    m = xf.size
    red = "mean" if reduction == "batchmean" else reduction
    out = np.empty(m if red == "none" else 0, dtype)
    grad = np.empty(m, dtype) if return_grad else None
    pgrad = np.empty(m, dtype) if want_pgrad else None
    nb = reduce.n_blocks(m)
    partials = np.empty(nb)
    bad = np.empty(nb, np.int64)
    gscale, gstride = reduce.grad_scale(red, grad_output, denominator, shape, return_grad, keep=dtype)
    kernel_of(spec, options)(nb, xf, t, tmap, w, wmap, p, pmap, k, gscale, gstride, out, grad, pgrad, partials, bad,
                             work=m)
    total = reduce.total(partials)
    pos = reduce.first_flag(bad)
    if pos >= 0:
        raise f.check_error_at(pos, shape, xf, p, p_shape, p_own_shape)
    value = reduce.finish(red, out, total, denominator, dtype, shape)
    if not return_grad:
        return value, ()
    grads = (sum_to_shape(grad.reshape(shape), in_shape),)
    if f.param_grad is not None:
        grads += (sum_to_shape(pgrad.reshape(shape), p_shape).reshape(p_own_shape) if want_pgrad else None,)
    return value, grads


_KERNELS = {}


def kernel_of(spec, options=None):
    """The loss's CPU kernel for the formulas ``options`` select, made on first use (nothing
    compiles at import)."""
    key, value, grad, pgrad = spec.family.formulas(options or {})
    kern = _KERNELS.get((spec.name, key))
    if kern is None:
        source = sys.modules[spec.fn.__module__].__file__
        name = spec.family.kernel_name(spec.name, key)
        kern = _KERNELS[spec.name, key] = make_kernel(name, value, grad, pgrad, spec.family.check, source)
    return kern


def register(*, module, roles=("input", "target"), **fields):
    """Register an elementwise loss from its formulas (decorates the public function).

    ``fields`` are :class:`Elementwise`'s (the formulas and roles) and
    :class:`~numbaloss.core.registry.Loss`'s (``arrays``, ``grads``, ``reductions``...).
    ``check`` and ``check_error`` come together: the CUDA kernel records a failing element in
    an error buffer that exists only when there is a message to raise.  A loss whose boolean
    options pick its formulas gives ``switches`` (the option names) and ``variants`` (a formula
    pair or triple per combination) instead of ``value``, ``grad`` (and ``param_grad``).  A loss
    whose formula parameter is a data array names it in ``roles`` (its place among the data
    arrays) and in ``param``; its ``grads`` then list it when it has a ``param_grad``."""
    own = {f.name for f in dataclasses.fields(Elementwise)}
    family = {n: v for n, v in fields.items() if n in own}
    loss = {n: v for n, v in fields.items() if n not in own}
    check = family.get("check", no_check)
    if (check is not no_check) != bool(family.get("check_error")):
        raise ValueError("an elementwise loss with an input check needs its check_error, and only then")
    variants = family.get("variants")
    if bool(family.get("switches")) != (variants is not None) or (variants is None) == (family.get("value") is None):
        raise ValueError("give value and grad, or switches and their variants")
    if variants is not None:
        family["value"], family["grad"], *pgrad = next(iter(variants.values()))
        family["param_grad"] = pgrad[0] if pgrad else None
        family["switches"] = tuple(family["switches"])
    family = Elementwise(roles=tuple(roles), **family)
    # a data param travels with the data arrays (same device); an option param is a params entry
    params = tuple(n for n in (family.scale, None if family.data_param else family.param) if n)
    return _register(
        module=module, cpu=run_cpu, cuda="numbaloss.core.elementwise_cuda", params=params, family=family, **loss
    )
