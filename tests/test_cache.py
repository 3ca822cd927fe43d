"""Numba's on-disk cache: every numbaloss kernel is stamped by the whole package's source."""

import numba
import numpy as np

import numbaloss
from numbaloss.core import elementwise, jit, vmath


def _stamp(dispatcher):
    return dispatcher._cache._impl.locator.get_source_stamp()


def test_kernels_are_stamped_by_the_package():
    # a per-loss copy of the template lives in the loss's module; vmath is inlined into it:
    # a change in either file (or any other) must give a new stamp, so a stale kernel is never loaded
    kern = elementwise.kernel_of(numbaloss.binary_cross_entropy.spec, {})
    for fn in (kern.block, kern.parallel, vmath.exp_f32):
        assert _stamp(fn) == jit.package_stamp()


def test_stamp_is_the_source_of_every_file():
    import hashlib
    import os

    files = sorted(
        os.path.relpath(os.path.join(r, f), jit._PACKAGE)
        for r, _, fs in os.walk(jit._PACKAGE)
        for f in fs
        if f.endswith(".py")
    )
    assert "core/vmath.py" in files and "losses/binary.py" in files
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode())
        with open(os.path.join(jit._PACKAGE, rel), "rb") as f:
            h.update(f.read())
    assert h.digest() == jit.package_stamp()


def test_other_code_keeps_numbas_stamp(tmp_path):
    src = tmp_path / "user_mod.py"
    src.write_text("def f(a):\n    return a + 1\n")
    ns = {}
    exec(compile(src.read_text(), str(src), "exec"), ns)
    fn = numba.njit(cache=True)(ns["f"])
    assert fn(np.int64(1)) == 2
    assert _stamp(fn) != jit.package_stamp()
