r"""numbaloss from PyTorch: every registered loss as a torch function with autograd, and as a
``torch.nn.Module`` of torch's name.

>>> import torch
>>> import numbaloss.torch as nlt
>>> logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], requires_grad=True)
>>> loss = nlt.cross_entropy(logits, torch.tensor([0, 2]))
>>> loss.backward()
>>> torch.allclose(loss, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2])))
True
>>> nlt.CrossEntropyLoss(label_smoothing=0.1)
CrossEntropyLoss(label_smoothing=0.1)

How it works.  Every loss runs through one ``torch.library.custom_op``, ``numbaloss::loss``, with
an autograd formula (``register_autograd``) and a fake implementation, so it runs in eager mode and
under ``torch.compile`` (one opaque node, no graph break).  The options travel as a JSON string; a
callable option (``triplet_margin_with_distance_loss``'s Numba ``(distance, gradient)`` pair) as a key
into a table of this module.

- **Zero copy.** CPU tensors reach the kernels as ``tensor.numpy()`` views, and results come back
  with ``torch.from_numpy``; CUDA tensors go to the CUDA kernels through
  ``__cuda_array_interface__``, on torch's current stream.
- **One pass for ``sum`` and ``mean``.**  When an input needs a gradient, the forward call computes
  the gradient too (the fused kernels) and backward only scales it by ``grad_output``; with
  ``"none"`` backward runs the gradient kernel with ``grad_output`` (``numbaloss::loss_grad``).
- **Gradients** go to every input numbaloss differentiates (``numbaloss.REGISTRY[name].grads``).  An
  input that requires a gradient numbaloss does not compute (``kl_div``'s target, a ``weight``)
  raises ``NotImplementedError`` at the call, and so does a double backward: never a silent zero.
- **float16 / bfloat16** inputs are computed in float32 and the loss and gradients returned in the
  input's dtype (as torch's autocast runs its losses in float32).
"""

import functools
import json
import numpy as np
import torch
import torch.nn.functional as F

from . import losses  # noqa: F401  (registers every loss)
from .core.registry import REGISTRY

#: Tensor dtypes computed in float32 and returned in their own dtype.
LOW_PRECISION = (torch.float16, torch.bfloat16)

#: Callable options by key: custom ops take strings, not Python functions.
_CALLABLES = {}


# ------------------------------------------------------------------ packing a call for the op
def _slots(spec):
    """The names of a loss's tensor arguments, in the op's order: data arrays, then array options."""
    return spec.arrays + spec.params


@torch.compiler.assume_constant_result  # options are constants: torch.compile runs this once, not traced
def _encode(options):
    """The non-tensor options as a JSON string (callables by key, NumPy scalars as Python numbers)."""
    items = tuple((k, type(v), v) for k, v in options.items())  # typed: 1, 1.0 and True are equal keys
    try:
        return _encode_items(items)
    except TypeError:  # an unhashable option value: encoded each call
        return _encode_items.__wrapped__(items)


@functools.lru_cache(maxsize=512)
def _encode_items(items):
    plain = {}
    for k, _, v in items:
        if callable(v) or isinstance(v, tuple):
            key = f"{k}@{id(v)}"
            _CALLABLES[key] = v  # kept alive: the key stays valid for the op's lifetime
            v = {"callable": key}
        elif isinstance(v, np.generic):
            v = v.item()
        plain[k] = v
    return json.dumps(plain)


@functools.lru_cache(maxsize=512)
def _decode(options):
    out = json.loads(options)
    return {k: (_CALLABLES[v["callable"]] if isinstance(v, dict) else v) for k, v in out.items()}


def _host(t):
    """A tensor as numbaloss takes it: a NumPy view of a CPU tensor, the detached tensor on CUDA."""
    if t.requires_grad:
        t = t.detach()
    return t.numpy() if t.is_cpu else t


def _arguments(spec, names, tensors, options, convert=None):
    """The loss's positional data arrays and keyword options from the op's arguments (``names``: the
    names of ``tensors``, each passed through ``convert`` when given; ``options``: the other options,
    decoded).  An absent array option is None, an absent data array a number in ``options``."""
    kwargs = dict(options)
    kwargs.update(zip(names, tensors if convert is None else map(convert, tensors)))
    arrays = [kwargs.pop(n) for n in spec.arrays]
    for n in spec.params:
        kwargs.setdefault(n, None)
    return arrays, kwargs


def _tensor(a):
    """A numbaloss result as a tensor (no copy of a NumPy array; a CUDA result is a tensor already)."""
    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))


def _grad_slots(spec, names):
    """Indices into the op's tensors of those that get gradients (a float ``var`` is not a tensor)."""
    return [i for i, n in enumerate(names) if n in spec.grads]


def _grads_of(spec, grads, names):
    """numbaloss's gradients (one, or a tuple in ``spec.grads`` order) as tensors, in the op's order."""
    by_name = dict(zip(spec.grads, grads if isinstance(grads, tuple) else (grads,)))
    return [_tensor(by_name[n]) for n in names if n in spec.grads]


# ------------------------------------------------------------------ the two computations
def _forward(spec, names, tensors, options, reduction, fused):
    """``[loss]``, or with ``fused`` ``[loss, *gradients]`` (the gradients of the loss itself)."""
    arrays, kwargs = _arguments(spec, names, tensors, options, _host)
    if not fused:
        return [_tensor(spec.fn(*arrays, reduction=reduction, **kwargs))]
    value, grads = spec.fn(*arrays, reduction=reduction, return_grad=True, **kwargs)
    return [_tensor(value)] + _grads_of(spec, grads, names)


def _gradients(spec, names, tensors, options, reduction, grad_output):
    """The gradients of ``sum(grad_output * loss)``, one per argument that gets one."""
    arrays, kwargs = _arguments(spec, names, tensors, options, _host)
    go = _host(grad_output)
    go = go.item() if go.ndim == 0 and grad_output.is_cpu else go
    _, grads = spec.fn(*arrays, reduction=reduction, return_grad=True, grad_output=go, **kwargs)
    return _grads_of(spec, grads, names)


def _scaled(grads, g):
    """The fused path's backward: the forward pass's gradients times the incoming gradient ``g``
    (a scalar).  In eager mode a CPU ``g`` of exactly 1 (``loss.backward()``) returns them as they
    are: multiplying would be one more pass over gradients as large as the input."""
    if g.is_cpu and not torch.compiler.is_compiling() and g.item() == 1.0:
        return list(grads)
    return [s * g.to(s.dtype) for s in grads]


def _refuse_double_backward():
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise NotImplementedError("numbaloss.torch: double backward (create_graph=True) is not supported")


def _spread(slots, computed, n):
    """Gradients at the positions of the tensors they belong to (None elsewhere)."""
    out = [None] * n
    for i, c in zip(slots, computed):
        out[i] = c
    return out


# ------------------------------------------------------------------ eager mode: an autograd.Function
class _Eager(torch.autograd.Function):
    """The eager path when an input needs a gradient (a custom op's Python dispatch costs about 70 us
    a call; this, a few).  Its options are Python objects, not the op's JSON string."""

    @staticmethod
    def forward(ctx, spec, names, options, reduction, fused, *tensors):
        out = _forward(spec, names, tensors, options, reduction, fused)
        ctx.args = (spec, names, options, reduction, fused, len(tensors))
        ctx.slots = _grad_slots(spec, names)
        ctx.grads = out[1:] if fused else None  # intermediate results, not outputs: kept on ctx
        ctx.save_for_backward(*tensors)
        return out[0]

    @staticmethod
    def backward(ctx, g):
        _refuse_double_backward()
        spec, names, options, reduction, fused, n = ctx.args
        if ctx.grads is not None:
            # handed over, not kept: autograd can then take them as .grad without a copy; a second
            # backward through a retained graph computes them again below
            computed, ctx.grads = _scaled(ctx.grads, g), None
        else:
            computed = _gradients(spec, names, ctx.saved_tensors, options, reduction, g)
        return (None,) * 5 + tuple(_spread(ctx.slots, computed, n))


# ------------------------------------------------------------------ torch.compile: custom ops
# (a list of optional tensors, ``Tensor?[]``, gets no autograd from custom_op: the op takes the
# tensors that are present and their names)
@torch.library.custom_op("numbaloss::loss", mutates_args=())
def _loss_op(name: str, names: str, tensors: list[torch.Tensor], options: str, reduction: str,
             fused: bool) -> list[torch.Tensor]:
    """``[loss]``, or with ``fused`` ``[loss, *gradients]`` (the gradients of the loss itself)."""
    return _forward(REGISTRY[name], names.split(","), tensors, _decode(options), reduction, fused)


@torch.library.custom_op("numbaloss::loss_grad", mutates_args=())
def _grad_op(name: str, names: str, tensors: list[torch.Tensor], options: str, reduction: str,
             grad_output: torch.Tensor) -> list[torch.Tensor]:
    """The gradients of ``sum(grad_output * loss)``, one per argument that gets one."""
    return _gradients(REGISTRY[name], names.split(","), tensors, _decode(options), reduction, grad_output)


def _fake_value(spec, names, tensors, options, reduction):
    """The loss's shape and dtype without running it: torch's own loss on the fake tensors (its shape
    rules are the ones numbaloss follows); a reduced loss is a scalar."""
    if reduction != "none":
        return tensors[0].new_empty(())
    args, kwargs = _arguments(spec, names.split(","), tensors, json.loads(options))
    kwargs = {k: (None if isinstance(v, dict) else v) for k, v in kwargs.items()}  # a callable: same shape
    return torch.empty_like(getattr(F, spec.name)(*args, reduction="none", **kwargs))


@_loss_op.register_fake
def _loss_fake(name, names, tensors, options, reduction, fused):
    spec = REGISTRY[name]
    out = [_fake_value(spec, names, tensors, options, reduction)]
    return out + ([torch.empty_like(tensors[i]) for i in _grad_slots(spec, names.split(","))] if fused else [])


@_grad_op.register_fake
def _grad_fake(name, names, tensors, options, reduction, grad_output):
    return [torch.empty_like(tensors[i]) for i in _grad_slots(REGISTRY[name], names.split(","))]


def _setup_context(ctx, inputs, output):
    name, names, tensors, options, reduction, fused = inputs
    ctx.args = (name, names, options, reduction, fused, len(tensors))
    ctx.slots = _grad_slots(REGISTRY[name], names.split(","))
    ctx.save_for_backward(*(output[1:] if fused else tensors))


def _op_backward(ctx, grads):
    _refuse_double_backward()
    name, names, options, reduction, fused, n = ctx.args
    saved = ctx.saved_tensors
    if fused:  # the gradient of the reduced loss, computed in the forward pass: scale it
        computed = _scaled(saved, grads[0])
    else:
        computed = _grad_op(name, names, list(saved), options, reduction, grads[0])
    return None, None, _spread(ctx.slots, computed, n), None, None, None


_loss_op.register_autograd(_op_backward, setup_context=_setup_context)


# ------------------------------------------------------------------ the public functions
def _as_tensor(spec, n, v, args):
    """A data argument that is not a tensor: ctc_loss's lengths as a Python sequence become a tensor,
    a Python number (gaussian_nll_loss's ``var``) moves to the options (None returned); else TypeError."""
    if isinstance(v, (list, tuple)) and n in spec.arrays[1:]:
        return torch.as_tensor(v, dtype=torch.int64)
    if isinstance(v, (int, float)) and n in spec.arrays[1:]:
        args[n] = v
        return None
    raise TypeError(f"numbaloss.torch.{spec.name}: {n} must be a torch.Tensor, got {type(v).__name__}")


def _apply(spec, args):
    """Run ``spec``'s loss on the arguments of its torch-signature function (by name)."""
    reduction = args.pop("reduction")
    names, tensors, wants_grad = [], [], False
    for n in _slots(spec):
        v = args.pop(n)
        if v is not None and not isinstance(v, torch.Tensor):
            v = _as_tensor(spec, n, v, args)
        if v is None:
            continue
        if v.requires_grad:
            if n not in spec.grads:
                raise NotImplementedError(
                    f"numbaloss.torch.{spec.name}: {n} requires a gradient, but numbaloss computes gradients "
                    f"for {', '.join(spec.grads)} only; detach it or use torch.nn.functional.{spec.name}")
            wants_grad = True
        names.append(n)
        tensors.append(v)
    if not names or names[0] != spec.arrays[0]:
        raise TypeError(f"numbaloss.torch.{spec.name}: {spec.arrays[0]} must be a torch.Tensor, got None")
    dtype = tensors[0].dtype
    if dtype in LOW_PRECISION:  # computed in float32; the casts carry the gradients back
        tensors = [t.float() if t.dtype == dtype else t for t in tensors]
    wants_grad = wants_grad and torch.is_grad_enabled()
    fused = wants_grad and reduction != "none"
    if torch.compiler.is_compiling():
        loss = _loss_op(spec.name, ",".join(names), tensors, _encode(args), reduction, fused)[0]
    elif wants_grad:
        loss = _Eager.apply(spec, names, args, reduction, fused, *tensors)
    else:  # nothing to differentiate: the loss alone, without autograd's bookkeeping
        loss = _forward(spec, names, tensors, args, reduction, False)[0]
    return loss.to(dtype) if dtype in LOW_PRECISION else loss


def _make_function(spec):
    """The torch function of ``spec``: a real function with torch's parameters (no ``Signature.bind``
    per call, which alone cost more than a small loss's kernel)."""
    sig = spec.torch_signature
    names = ", ".join(f"{p}={p}" for p in sig.parameters)
    source = f"def {spec.name}{sig}:\n    return _apply(_spec, dict({names}))\n"
    namespace = {"_apply": _apply, "_spec": spec}
    exec(compile(source, f"<numbaloss.torch.{spec.name}>", "exec"), namespace)
    loss = namespace[spec.name]
    loss.__qualname__ = spec.name
    loss.__signature__ = sig
    loss.__doc__ = (f"``torch.nn.functional.{spec.name}`` on numbaloss's kernels, with autograd: torch tensors "
                    f"in and out (CPU or CUDA).  Formulas and options: :func:`numbaloss.{spec.name}`.")
    loss.__module__ = __name__
    return loss


class _Module(torch.nn.Module):
    """A loss as a ``torch.nn.Module``: options fixed at construction, array options as buffers."""

    spec = None

    def __init__(self, *args, **kwargs):
        super().__init__()
        bound = self.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        self._options = []
        for name, value in bound.arguments.items():
            if name in self.spec.params:
                self.register_buffer(name, None if value is None else torch.as_tensor(value))
            else:
                setattr(self, name, value)
            self._options.append(name)

    def forward(self, *arrays):
        return FUNCTIONS[self.spec.name](*arrays, **{n: getattr(self, n) for n in self._options})

    def extra_repr(self):
        defaults = self.__signature__.parameters
        return ", ".join(f"{n}={getattr(self, n)!r}" for n in self._options
                         if n not in self.spec.params and getattr(self, n) != defaults[n].default)


def _make_module(spec):
    sig = spec.options_signature
    doc = f"``torch.nn.{spec.module}`` on numbaloss's kernels (see :func:`numbaloss.torch.{spec.name}`)."
    return type(spec.module, (_Module,), {"spec": spec, "__signature__": sig, "__doc__": doc, "__module__": __name__})


#: name -> torch function, for every registered loss.
FUNCTIONS = {name: _make_function(spec) for name, spec in REGISTRY.items()}
#: torch.nn class name -> module class, for every registered loss.
MODULES = {spec.module: _make_module(spec) for spec in REGISTRY.values()}
globals().update(FUNCTIONS)
globals().update(MODULES)

__all__ = list(FUNCTIONS) + list(MODULES)
