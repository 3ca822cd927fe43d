"""Numba options, pinned in one place.

Every CPU kernel in numbaloss is decorated with :func:`kernel` (a parallel loop over
fixed-size blocks and its serial twin), :func:`blocked` (one block function, run serially
or inside a parallel loop), :func:`serial` (functions Python calls too) or :func:`internal`
(helpers only compiled code calls); per-element math is :func:`scalar`, and compiled-code
functions chosen by argument type are :func:`overload`.  Nothing is compiled at
import: Numba compiles lazily on the first call for each dtype
combination and ``cache=True`` keeps the machine code on disk, so only the first
process ever pays the JIT cost.
"""

import functools
import hashlib
import os
import types

import numba
import numba.extending
import numpy as np
from numba import prange
from numba.core.codegen import JITCodeLibrary
from numba.core.compiler import Compiler
from numba.core.compiler_lock import require_global_compiler_lock
from numba.core.registry import CPUDispatcher

#: LLVM fast-math flags that are safe for our semantics.  Plain ``fastmath=True``
#: also sets ``nnan``/``ninf``, which lets LLVM assume no NaN/inf exist: that
#: breaks ``-inf`` masked logits and NaN propagation.  ``reassoc`` is left out
#: too: it lets LLVM reorder floating-point sums, and a freshly compiled parallel
#: kernel and its cache-loaded copy could then disagree in the last bits.
#: Reductions get their speed from explicitly written lanes instead.
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn"})

#: The options of every CPU function (parallel kernels add ``parallel=True``).  No C-callable
#: wrapper (Numba's entry point for calls through a function pointer, which nothing here makes):
#: it is lowered and compiled for every function otherwise, a cold first call's time for nothing.
OPTIONS = dict(cache=True, fastmath=set(FASTMATH), error_model="numpy", nogil=True, no_cfunc_wrapper=True)


# ------------------------------------------------------------ the on-disk cache
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=None)
def package_stamp():
    """A hash of every source file of the package: the stamp of every numbaloss cache entry.

    Numba keys a cache entry by its own source file only, but our kernels inline code from
    other files (the math in ``vmath``, the reductions, a template's body copied into the
    loss's module): a change there would leave a stale kernel in the cache.  Hashing the
    whole package (a few hundred kilobytes, read once per process) makes any change in
    numbaloss recompile every numbaloss kernel, and nothing else."""
    paths = sorted(
        os.path.relpath(os.path.join(root, name), _PACKAGE)
        for root, _, files in os.walk(_PACKAGE)
        for name in files
        if name.endswith(".py")
    )
    h = hashlib.sha256()
    for rel in paths:
        h.update(rel.encode())
        with open(os.path.join(_PACKAGE, rel), "rb") as f:
            h.update(f.read())
    return h.digest()


def _package_locator(base):
    """``base`` (one of Numba's cache locators) for numbaloss's files, stamped by :func:`package_stamp`."""

    class Locator(base):
        @classmethod
        def from_function(cls, py_func, py_file):
            inside = os.path.abspath(py_file).startswith(_PACKAGE + os.sep)
            return super().from_function(py_func, py_file) if inside else None

        def get_source_stamp(self):
            return package_stamp()

    Locator.__name__ = Locator.__qualname__ = "Package" + base.__name__
    return Locator


def _install_locators():
    """Put the package-stamped locators ahead of Numba's own (same order, same cache places).
    Numba's locator list is not public API: if it moves, caching falls back to Numba's stamps."""
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    if not isinstance(classes, list) or any(c.__name__.startswith("Package") for c in classes):
        return
    ours = [_package_locator(c) for c in classes if c.__name__ in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")]
    classes[:0] = ours


_install_locators()


# ------------------------------------------------------------ kernels
#: Below this many input elements a kernel runs serially: waking Numba's
#: thread pool costs tens of microseconds, more than a small loss takes.
#: Chosen by measurement (``python -m numbaloss.bench`` prints the crossover).
PARALLEL_MIN_WORK = 1 << 14


class Kernel:
    """A CPU kernel compiled twice from one source: parallel (``prange`` over
    fixed-size blocks) and serial (``prange`` runs as ``range``).  Both walk the
    same blocks in the same order per block, so results are bitwise identical.
    Call as ``kernel(*args, work=n_elements)``.
    """

    def __init__(self, fn):
        self.py_func = fn
        self.parallel = numba.njit(parallel=True, **OPTIONS)(fn)
        # a distinct qualname gives the serial twin its own on-disk cache entry; it shares the module's
        # live globals (copy_function's snapshot would miss helpers defined below the kernel)
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        twin.__doc__ = fn.__doc__
        self.serial = numba.njit(**OPTIONS)(twin)
        functools.update_wrapper(self, fn)

    def __call__(self, *args, work):
        return (self.parallel if work >= PARALLEL_MIN_WORK else self.serial)(*args)


def kernel(fn):
    """A CPU kernel with parallel and serial variants, chosen per call by the amount of work."""
    return Kernel(fn)


def uncached(fn):
    """A serial compiled function that takes a user's compiled function as an argument (Numba
    specializes it per function and cannot cache such code on disk)."""
    return numba.njit(**dict(OPTIONS, cache=False))(fn)


def serial(fn):
    """A serial compiled function that Python calls too (a helper that only compiled code calls is
    :func:`internal`)."""
    return numba.njit(**OPTIONS)(fn)


# ------------------------------------------------------------ helpers compiled inside their callers
# Numba optimizes every compiled function's LLVM module and emits its machine code as soon as the
# function is built, then links its IR into each caller and optimizes and emits it again there.  For a
# function that Python never calls (an ``internal`` helper, an ``overload`` implementation), the first
# round is a cold first call's time for nothing: ctc_loss's helpers cost it 0.3 s.  Their libraries
# below keep the IR for the callers to link and stop there.  (This uses Numba's code-library internals;
# where they are missing, the helpers compile as Numba does by default.)
class _LinkedLibrary(JITCodeLibrary):
    """The code library of a function compiled only to be linked into callers: its IR, after Numba's
    per-function passes, with the IR of the functions it calls linked in; optimized as a module and
    compiled to machine code only inside its callers.  Its functions are ``noinline``: optimized in
    place first, its loops vectorize as a separately compiled helper's do (inlined unoptimized into
    cross_entropy's row loop, its helpers made that kernel 18% slower)."""

    inlinable = False

    def add_ir_module(self, ir_module):
        if not self.inlinable:
            for fn in ir_module.functions:
                if not fn.is_declaration:
                    fn.attributes.add("noinline")
        super().add_ir_module(ir_module)

    def finalize(self):
        require_global_compiler_lock()
        self._raise_if_finalized()
        for library in dict.fromkeys(self._linking_libraries):  # its callees, as Numba's finalize links them
            self._reload_init.update(library._reload_init)
            self._final_module.link_in(library._get_module_for_linking(), preserve=True)
        self._finalized = True

    def get_pointer_to_function(self, name):
        self._ensure_finalized()
        return 0  # no machine code of its own, so no entry point to find

    def get_llvm_str(self):
        """The IR as optimized on its own (``inspect_llvm``; the roofline counts a helper's vector
        loops in it), as Numba shows any function's; the module kept for linking stays as it is."""
        self._ensure_finalized()
        kept = self._final_module
        self._final_module = kept.clone()
        try:
            self._optimize_final_module()
            return str(self._final_module)
        finally:
            self._final_module = kept

    @property
    def codegen(self):
        return _UnboundCodegen(self._codegen)


class _InlinableLibrary(_LinkedLibrary):
    """A :class:`_LinkedLibrary` whose functions LLVM may inline: ``vmath``'s math, which a loop
    must inline to vectorize."""

    inlinable = True


class _UnboundCodegen:
    """The codegen of a :class:`_LinkedLibrary`, whose ``set_env`` does nothing: the library's module
    never enters the JIT engine, so there is no environment global to set.  (Its code runs inside its
    callers; nopython code reads its environment only for object-mode blocks and exceptions with
    run-time arguments, and on a missing one Numba's sentry raises.)"""

    def __init__(self, codegen):
        self._codegen = codegen

    def set_env(self, env_name, env):
        pass

    def __getattr__(self, name):
        return getattr(self._codegen, name)


class _LinkedCompiler(Compiler):
    """Numba's compiler, building into a :class:`_LinkedLibrary`."""

    library_class = _LinkedLibrary

    def compile_extra(self, func):
        if self.state.library is None:
            self.state.library = self.library_class(self.state.targetctx.codegen(), func.__qualname__)
            self.state.library.enable_object_caching()  # (as Numba's lowering does for the libraries it makes)
        return super().compile_extra(func)


class _InlinableCompiler(_LinkedCompiler):
    """Numba's compiler, building into an :class:`_InlinableLibrary`."""

    library_class = _InlinableLibrary


# (the internal methods the classes above call; without them, Numba's default libraries)
_LINKING = all(hasattr(JITCodeLibrary, a) for a in ("_get_module_for_linking", "_optimize_final_module",
                                                      "_raise_if_finalized", "_ensure_finalized"))
#: ``pipeline_class`` options of the internal helpers and of the overload implementations
HELPER_PIPELINE = {"pipeline_class": _LinkedCompiler} if _LINKING else {}
INLINABLE_PIPELINE = {"pipeline_class": _InlinableCompiler} if _LINKING else {}


class CompiledOnly(CPUDispatcher):
    """The dispatcher of an :func:`internal` helper: callable from compiled code only."""

    def __call__(self, *args, **kwargs):
        # (the compiled function has no Python entry point: Numba's own call would jump to none and crash)
        raise TypeError(f"{self.py_func.__qualname__} is compiled to be called from compiled code only")


def internal(fn):
    """A serial compiled helper called only from other compiled functions: built without the
    wrapper that lets Python call it, whose lowering and machine code a cold first call would
    otherwise pay for each helper (about 0.1 s for a helper with a dozen array arguments), and
    optimized and compiled to machine code only inside its callers (:class:`_LinkedLibrary`), so
    it is on disk only as part of their cache entries.  Calling it from Python raises a TypeError."""
    if numba.config.DISABLE_JIT:
        return fn
    options = {k: v for k, v in OPTIONS.items() if k != "cache"}
    return CompiledOnly(py_func=fn, locals={}, targetoptions=dict(options, nopython=True, no_cpython_wrapper=True),
                        **HELPER_PIPELINE)


def inlined(fn):
    """A helper with one call site in its caller (a block body inside a small-input wrapper, the
    elementwise block's pairwise sum), inlined into it at the Numba IR level: compiled once, as part
    of the caller.  A separately compiled helper
    costs a first call its own pass through Numba's pipeline and LLVM, and then LLVM's optimizer and
    code generator again as code linked into every caller above it."""
    return numba.njit(inline="always", **OPTIONS)(fn)


def overload(func, **options):
    """``numba.extending.overload`` for numbaloss's compiled-code functions (``vmath``'s dtype
    dispatch, the tile helpers): its implementations are built without the C-callable wrapper
    that Numba's overloads get by default (nothing calls them through a pointer; about 0.02 s of
    a cold first call per implementation) and optimized and compiled only inside their callers
    (:class:`_InlinableLibrary`)."""
    return numba.extending.overload(func, jit_options={"no_cfunc_wrapper": True, **INLINABLE_PIPELINE}, **options)


def scalar(fn):
    """A scalar helper (math function, per-element formula), inlined into its callers
    at the Numba IR level so that LLVM sees one loop body it can vectorize: left to
    LLVM's own inliner, a chain such as ``log1p(exp(-|x|))`` can stay a call and
    keep the whole loop scalar."""
    return inlined(fn)


def copy_function(template, name, globals_=None, source_file=None):
    """A real copy of ``template`` named ``name`` (its own qualname), with ``globals_`` added and its
    code's file set to ``source_file``: what a template needs to be instantiated per loss and still
    hit Numba's on-disk cache in a new process (a closure misses it, Numba issue #6264).  The cache
    sits beside ``source_file`` and is invalidated when that file changes."""
    code = template.__code__
    if source_file:
        code = code.replace(co_filename=source_file, co_name=name)
    fn = types.FunctionType(code, dict(template.__globals__, **(globals_ or {})), name, template.__defaults__)
    fn.__qualname__ = name
    fn.__module__ = template.__module__
    fn.__doc__ = template.__doc__
    return fn


def _each_block(n_blocks, *args):
    """``BLOCK(b, *args)`` for every block, in parallel (``BLOCK`` is bound per copy)."""
    for b in prange(n_blocks):
        # np.int64: prange's index is unsigned, and another type would compile the block again
        BLOCK(np.int64(b), *args)  # noqa: F821


class Blocked:
    """A kernel written as one block function ``block(b, *args)`` (a :func:`serial` function that
    does all the work of block ``b`` and writes its results, partial sums included, into ``args``).

    Small inputs run the blocks one by one from Python; large ones run a parallel loop around
    the same compiled block function.  The formulas are therefore compiled once, not once per
    variant: a first large call after a small one compiles only the loop.  Both walk the same
    blocks, so results are bitwise identical; how the caller adds the partials is up to it
    (:func:`numbaloss.core.reduce.total`).  Call as ``kernel(n_blocks, *args, work=n_elements)``.
    """

    def __init__(self, block):
        self.block = block
        py = block.py_func
        each = copy_function(_each_block, py.__name__ + "_parallel", {"BLOCK": block}, py.__code__.co_filename)
        self.parallel = numba.njit(parallel=True, **OPTIONS)(each)
        functools.update_wrapper(self, py)

    def __call__(self, n_blocks, *args, work):
        if work >= PARALLEL_MIN_WORK:
            self.parallel(n_blocks, *args)
        else:
            for b in range(n_blocks):
                self.block(b, *args)


def blocked(fn):
    """Decorator: a :class:`Blocked` kernel from a block function ``fn(b, *args)``."""
    return Blocked(serial(fn))


def blocked_copy(template, name, globals_, source_file):
    """A :class:`Blocked` kernel from a copy of the block function ``template`` named ``name``, with
    ``globals_`` (the helpers it calls by global name) bound: one template, several kernels, each
    with its own on-disk cache entry (:func:`copy_function`)."""
    return Blocked(serial(copy_function(template, name, globals_, source_file)))
