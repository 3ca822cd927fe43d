"""``torch.nn``-style loss objects: the options are fixed at construction, the call takes the data."""

from ._binary import binary_cross_entropy, binary_cross_entropy_with_logits
from ._classification import cross_entropy, nll_loss


class _Loss:
    _fn = None
    _options = ()

    def __init__(self, **options):
        self._kwargs = options
        for name, value in options.items():
            setattr(self, name, value)

    def __call__(self, input, target, *, return_grad=False, grad_output=None):
        return type(self)._fn(input, target, **self._kwargs, return_grad=return_grad, grad_output=grad_output)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items() if k != "weight" or v is not None)
        return f"{type(self).__name__}({args})"


class CrossEntropyLoss(_Loss):
    """Callable form of :func:`numbaloss.cross_entropy` (like ``torch.nn.CrossEntropyLoss``)."""

    _fn = staticmethod(cross_entropy)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)


class NLLLoss(_Loss):
    """Callable form of :func:`numbaloss.nll_loss` (like ``torch.nn.NLLLoss``)."""

    _fn = staticmethod(nll_loss)

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(weight=weight, ignore_index=ignore_index, reduction=reduction)


class BCELoss(_Loss):
    """Callable form of :func:`numbaloss.binary_cross_entropy` (like ``torch.nn.BCELoss``)."""

    _fn = staticmethod(binary_cross_entropy)

    def __init__(self, weight=None, reduction="mean"):
        super().__init__(weight=weight, reduction=reduction)


class BCEWithLogitsLoss(_Loss):
    """Callable form of :func:`numbaloss.binary_cross_entropy_with_logits` (like ``torch.nn.BCEWithLogitsLoss``)."""

    _fn = staticmethod(binary_cross_entropy_with_logits)

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(weight=weight, reduction=reduction, pos_weight=pos_weight)
