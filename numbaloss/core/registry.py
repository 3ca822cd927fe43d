"""The loss registry: one table describing every loss, and one call path (:func:`run`) for all of them.

Each public loss function is registered with :func:`register`, which records a
:class:`Loss` in :data:`REGISTRY` and hangs it on the function as ``fn.spec``.
The ``nn``-style classes, the tests, the benchmarks and the CUDA compile check
all enumerate :data:`REGISTRY`, so a loss is described exactly once.

Decisions for the losses to come (torch's semantics, fixed here once):

- **Several gradients**: ``grads`` lists the arguments that receive gradients, in
  argument order.  With one, ``return_grad=True`` gives ``(loss, g)``; with
  several, ``(loss, (g_1, g_2, ...))`` in that order (``margin_ranking_loss`` ->
  ``(g_input1, g_input2)``).
- **Reductions**: ``reductions`` lists the accepted names; ``kl_div`` adds
  ``"batchmean"`` (sum divided by the input's first dimension).  ``mean``
  records what ``"mean"`` divides by (for the docs and the tests).
- **Per-sample denominators** (``ctc_loss`` divides each sample by its target
  length before the mean): the family's implementation computes them; the
  shared :func:`numbaloss.core.reduce.finish` takes any denominator.
- **Callable options** (``triplet_margin_with_distance_loss``'s
  ``distance_function``) travel in ``options`` unchanged; an implementation
  that cannot use them (a CUDA kernel) raises TypeError naming the option.
"""

import functools
import importlib
import inspect
from dataclasses import dataclass

from .dispatch import backend_of
from .reduce import check_reduction

#: name -> :class:`Loss`, in registration order.
REGISTRY = {}

#: Keyword-only arguments of every loss function that belong to numbaloss's call, not to torch's signature.
CALL_ARGS = ("return_grad", "grad_output")


@dataclass(frozen=True, eq=False)
class Loss:
    """What numbaloss knows about one loss.

    ``cpu(spec, *arrays, reduction=, return_grad=, grad_output=, **options)``
    returns ``(value, grads)`` with ``grads`` a tuple in the order of ``grads``
    (empty without ``return_grad``).  ``cuda`` names a module whose ``run`` has
    the same signature; it is imported only when a device array arrives, so CPU
    users never import ``numba.cuda``.
    """

    name: str  #: ``torch.nn.functional``'s name
    module: str  #: ``torch.nn``'s class name
    fn: object  #: the public function
    cpu: object
    cuda: str
    arrays: tuple = ("input", "target")  #: data arguments, in order; all on one device
    params: tuple = ()  #: optional array options (``weight``...): host arrays allowed beside device data
    host_ok: tuple = ()  #: data arrays that may stay on the host beside device data (``ctc_loss``'s targets, lengths)
    grads: tuple = ("input",)  #: arguments that receive gradients, in argument order
    reductions: tuple = ("none", "mean", "sum")
    mean: str = "elements"  #: what ``"mean"`` divides by
    family: object = None  #: the family's own description (formulas for a template)

    @functools.cached_property
    def torch_signature(self):
        """The public function's signature less :data:`CALL_ARGS`: ``torch.nn.functional``'s."""
        params = inspect.signature(self.fn).parameters.values()
        return inspect.Signature([p for p in params if p.name not in CALL_ARGS])

    @functools.cached_property
    def options_signature(self):
        """The options (the parameters after the data arrays), all positional-or-keyword: the
        signature of an ``nn``-style class's constructor."""
        params = self.torch_signature.parameters.values()
        return inspect.Signature([p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                  for p in params if p.name not in self.arrays])

    @functools.cached_property
    def cuda_run(self):
        """The CUDA implementation, imported on first use."""
        return importlib.import_module(self.cuda).run


def register(*, module, cpu, cuda, **fields):
    """Decorator: register the decorated public function as a loss (see :class:`Loss`)."""

    def deco(fn):
        spec = Loss(name=fn.__name__, module=module, fn=fn, cpu=cpu, cuda=cuda, **fields)
        if spec.name in REGISTRY:
            raise ValueError(f"loss {spec.name!r} is registered twice")
        REGISTRY[spec.name] = spec
        fn.spec = spec
        return fn

    return deco


def run(spec, arrays, options, reduction, return_grad, grad_output):
    """Everything every loss does around its kernels: check ``reduction``, pick the backend from
    the arrays, call the backend's implementation (which validates, allocates, runs the kernels
    and finishes the reduction), and shape the gradients (see :class:`Loss`)."""
    check_reduction(reduction, spec.reductions)
    params = [(name, options.get(name)) for name in spec.params]
    params += [(name, a) for name, a in zip(spec.arrays, arrays) if name in spec.host_ok]
    data = [(name, a) for name, a in zip(spec.arrays[1:], arrays[1:]) if name not in spec.host_ok]
    on_device = backend_of(arrays[0], data, params) == "cuda"
    impl = spec.cuda_run if on_device else spec.cpu
    value, grads = impl(spec, *arrays, reduction=reduction, return_grad=return_grad, grad_output=grad_output, **options)
    if not return_grad:
        return value
    return (value, grads[0]) if len(spec.grads) == 1 else (value, tuple(grads))
