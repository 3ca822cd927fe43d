"""The core: everything that knows no particular loss (numba options, vectorizable math,
reductions, validation, backend dispatch, the registry, the elementwise template, CUDA host
plumbing and device reductions).  Nothing here imports :mod:`numbaloss.losses`."""
