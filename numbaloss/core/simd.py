"""SIMD data movement that LLVM does not find on its own, written as LLVM IR.

Numba has no vector types, and LLVM's vectorizers turn a strided copy (a transpose) into one
scalar load and store per value.  :func:`transpose8` emits the shuffle network a hand-written
AVX kernel would use, as target-independent ``shufflevector`` IR that LLVM lowers to the target's
shuffles (on AVX2: ``vunpcklps``, ``vunpcklpd``, ``vinsertf128``, ``vperm2f128``).

Its Python body states what it does and serves interpreted callers.
"""

from llvmlite import ir
from numba.core import types
from numba.core.typing.templates import CallableTemplate, infer, infer_global
from numba.extending import lower_builtin


def transpose8(src, s, s_stride, dst, d, d_stride, first):
    """An 8 x 8 block of float32 transposed: ``dst[d + k * d_stride + j] = src[s + j * s_stride + k]``
    for ``j`` in 0..7 and ``k`` in ``first``..7, with ``src`` and ``dst`` C-contiguous float32 arrays
    of any shape indexed as flat (offsets from their first element: no reshaped view to make).

    Row ``j`` of the block is the 8 consecutive values at ``s + j * s_stride``; output row ``k``
    is column ``k`` of the block, 8 consecutive values at ``d + k * d_stride``.  ``first`` (0..7)
    skips output rows already written: a row of 10 classes is two blocks, columns 0..7 and 2..9
    (``first = 6``), and LLVM drops the shuffles of the skipped rows.  A constant ``first`` compiles
    to that one network; a run-time one to a switch over the eight (out of range: nothing is written).

    Nothing is bounds-checked: the caller guarantees that the 64 source and ``8 - first`` output
    rows' values lie inside the arrays.  Compiled: 8 vector loads, 24 shuffles (10 with
    ``first = 6``), ``8 - first`` vector stores.
    """
    src, dst = src.reshape(-1), dst.reshape(-1)  # views
    for j in range(8):
        for k in range(first, 8) if 0 <= first < 8 else ():
            dst[d + k * d_stride + j] = src[s + j * s_stride + k]


class _Transpose8Typing(CallableTemplate):
    """``transpose8``'s typing (what ``type_callable`` makes, with literals tried first: a constant
    ``first`` then reaches the lowering as a constant, which emits its one network only)."""

    key = transpose8
    prefer_literal = True

    def generic(self):
        def typer(src, s, s_stride, dst, d, d_stride, first):
            arrays = all(isinstance(a, types.Array) and a.layout == "C" and a.dtype == types.float32
                         for a in (src, dst))
            ints = all(isinstance(v, types.Integer) for v in (s, s_stride, d, d_stride, first))
            return types.none if arrays and ints else None

        return typer


infer(_Transpose8Typing)
infer_global(transpose8, types.Function(_Transpose8Typing))


def _shuffle(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), len(mask)), mask))


def _network(builder, intp, src, s, s_stride, dst, d, d_stride, first):
    """The IR of one transpose: loads, the shuffles output rows ``first``..7 need, their stores."""
    row = ir.VectorType(ir.FloatType(), 8).as_pointer()

    def at(base, start, stride, i):
        return builder.bitcast(builder.gep(base, [builder.add(start, builder.mul(stride, ir.Constant(intp, i)))]), row)

    r = [builder.load(at(src, s, s_stride, j), align=4) for j in range(8)]
    # Three stages of two-input shuffles (the classic AVX 8x8 transpose): interleave pairs of
    # rows, then pairs of pairs, then the 128-bit halves.  Stage 1: t[2i] / t[2i + 1] = low / high
    # interleave of rows 2i, 2i + 1 within each 128-bit half.
    lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    t = [_shuffle(builder, r[j - j % 2], r[j - j % 2 + 1], hi if j % 2 else lo) for j in range(8)]
    # stage 2: u[k] (u[k + 4] for rows 4..7) holds columns k and k + 4 of rows 0..3 (4..7)
    a, b = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    u = []
    for h in (0, 4):
        for k in range(4):
            u.append(_shuffle(builder, t[h + (k // 2)], t[h + 2 + (k // 2)], b if k % 2 else a))
    # stage 3: column k = the low halves of u[k], u[k + 4]; column k + 4 = their high halves
    # (what no store uses, LLVM removes)
    for k in range(first, 8):
        col = _shuffle(builder, u[k % 4], u[k % 4 + 4], [4, 5, 6, 7, 12, 13, 14, 15] if k >= 4 else [0, 1, 2, 3, 8, 9, 10, 11])
        builder.store(col, at(dst, d, d_stride, k), align=4)


@lower_builtin(transpose8, types.Array, types.Integer, types.Integer, types.Array, types.Integer, types.Integer,
               types.Integer)
def _transpose8_lower(context, builder, sig, args):
    intp = context.get_value_type(types.intp)
    s, s_stride, d, d_stride = (context.cast(builder, args[i], sig.args[i], types.intp) for i in (1, 2, 4, 5))
    src = context.make_array(sig.args[0])(context, builder, args[0]).data
    dst = context.make_array(sig.args[3])(context, builder, args[3]).data
    where = (src, s, s_stride, dst, d, d_stride)
    if isinstance(sig.args[6], types.IntegerLiteral) and 0 <= sig.args[6].literal_value < 8:
        _network(builder, intp, *where, sig.args[6].literal_value)
        return context.get_dummy_value()
    first = context.cast(builder, args[6], sig.args[6], types.intp)
    done = builder.append_basic_block("transpose8.done")
    switch = builder.switch(first, done)
    for k in range(8):
        case = builder.append_basic_block(f"transpose8.first{k}")
        switch.add_case(ir.Constant(intp, k), case)
        builder.position_at_end(case)
        _network(builder, intp, *where, k)
        builder.branch(done)
    builder.position_at_end(done)
    return context.get_dummy_value()
