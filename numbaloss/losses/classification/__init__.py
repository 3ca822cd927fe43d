"""The classification family: ``cross_entropy`` and ``nll_loss``.

``formulas`` (per-row scalar math) sits below the CPU kernels (``targets``,
``rows``, ``tiles``) and the CUDA kernels (``cuda``); ``api`` holds the public
functions and their registration.  ``cuda`` is imported by the registry only
when a device array arrives.
"""

from .api import cross_entropy, nll_loss

__all__ = ["cross_entropy", "nll_loss"]
