"""``torch.nn``-style loss objects, one class per registered loss, made from the registry.

The options are fixed at construction (the function's parameters after its data
arrays, same names, order and defaults); the call takes the data arrays.
"""

from . import losses  # noqa: F401  (registers every loss)
from .core.registry import REGISTRY


class _Loss:
    spec = None

    def __init__(self, *args, **kwargs):
        bound = self.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        self._kwargs = dict(bound.arguments)
        for name, value in self._kwargs.items():
            setattr(self, name, value)

    def __call__(self, *arrays, return_grad=False, grad_output=None):
        return self.spec.fn(*arrays, **self._kwargs, return_grad=return_grad, grad_output=grad_output)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items() if k not in self.spec.params or v is not None)
        return f"{type(self).__name__}({args})"


def _make_class(spec):
    sig = spec.options_signature
    doc = f"Callable form of :func:`numbaloss.{spec.name}` (like ``torch.nn.{spec.module}``)."
    return type(spec.module, (_Loss,), {"spec": spec, "__signature__": sig, "__doc__": doc, "__module__": __name__})


for _spec in REGISTRY.values():
    globals()[_spec.module] = _make_class(_spec)

__all__ = [spec.module for spec in REGISTRY.values()]
