"""Placeholder for the CUDA backend's entry point (lands with the CUDA issue)."""


def unavailable():
    raise NotImplementedError(
        "CUDA arrays are not supported yet by this version of numbaloss; pass NumPy arrays"
    )
