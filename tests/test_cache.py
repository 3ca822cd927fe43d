"""Numba's on-disk cache: every numbaloss kernel is stamped by the whole package's source."""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

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


def test_internal_helpers_refuse_python_calls():
    # an internal helper is built without a Python entry point: a Python call raises, never jumps nowhere
    @jit.internal
    def twice(a):
        return a[0] * 2.0

    @jit.serial
    def caller(a):
        return twice(a)

    assert caller(np.ones(3)) == 2.0
    assert isinstance(twice, jit.CompiledOnly) and len(twice.signatures) == 1
    with pytest.raises(TypeError, match="called from compiled code only"):
        twice(np.ones(3))


def test_internal_helpers_load_from_the_cache(tmp_path):
    # a caller of an internal helper is cached like any kernel: a new process loads it, compiles nothing
    (tmp_path / "user_mod.py").write_text(
        "from numbaloss.core.jit import internal, serial\n"
        "@internal\ndef twice(a):\n    return a[0] * 2.0\n"
        "@serial\ndef caller(a):\n    return twice(a)\n"
    )
    script = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import user_mod as m\n"
              "print(m.caller(np.ones(3)), m.caller.stats.cache_hits.most_common(1), len(m.twice.signatures))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True,
                           check=True).stdout.split(maxsplit=1) for _ in range(2)]
    assert runs[0][0] == runs[1][0] == "2.0"
    assert runs[0][1].strip() == "[] 1"  # the first process compiles the caller and the helper
    assert runs[1][1].strip().endswith("1)] 0")  # the second loads the caller (one cache hit), compiles no helper


def test_helpers_compile_to_machine_code_only_inside_their_callers():
    # an internal helper's IR, with a vmath overload's linked in, is optimized and compiled only as part
    # of its caller (jit._LinkedLibrary): its own library never becomes machine code, the caller's does
    @jit.internal
    def softplus_sum(a):
        s = 0.0
        for i in range(a.size):
            s += vmath.log(1.0 + vmath.exp(a[i]))
        return s

    @jit.serial
    def caller(a):
        return softplus_sum(a)

    a = np.linspace(-3.0, 3.0, 7)
    assert caller(a) == pytest.approx(np.log1p(np.exp(a)).sum(), rel=1e-14)
    helper = softplus_sum.overloads[softplus_sum.signatures[0]].library
    assert type(helper) is jit._LinkedLibrary and helper._finalized and not helper._compiled
    assert any(type(lib) is jit._InlinableLibrary for lib in helper._linking_libraries)  # vmath's exp and log
    assert caller.overloads[caller.signatures[0]].library._compiled
    name = softplus_sum.overloads[softplus_sum.signatures[0]].fndesc.llvm_func_name
    assert b"noinline" in list(helper._final_module.get_function(name).attributes)  # kept whole in its callers

    # inspected (as the roofline counts a helper's vector loops), its IR is optimized on its own
    @jit.internal
    def exps(a, out):
        for i in range(a.size):
            out[i] = vmath.exp(a[i])

    @jit.serial
    def exps_caller(a, out):
        exps(a, out)

    out = np.empty_like(a)
    exps_caller(a, out)
    np.testing.assert_allclose(out, np.exp(a), rtol=1e-15)
    assert "vector.body" in exps.inspect_llvm(exps.signatures[0])
    assert "vector.body" not in str(exps.overloads[exps.signatures[0]].library._final_module)  # the kept one
