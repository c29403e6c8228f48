"""The one decorator every kernel uses, decided once at import time.

``NUMBA_DISABLE_JIT=1`` in the environment makes every kernel plain Python (numba honours it
inside ``njit``), which is how the test suite measures coverage inside the kernels.
"""

import numba

# No nnan/ninf: NaN means "missing" throughout the package and must survive arithmetic.
SAFE_FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

kernel = numba.njit(cache=True, nogil=True, fastmath=SAFE_FASTMATH)
"""Decorator for numeric kernels (disk-cached, releases the GIL, NaN-safe fast math)."""

kernel_exact = numba.njit(cache=True, nogil=True)
"""Decorator for kernels whose results must be bit-reproducible (no reassociation)."""

if numba.config.DISABLE_JIT:

    def prefetch_row(arr, i):
        """Hint the CPU to fetch row ``i`` of ``arr`` (no-op when kernels run as plain Python)."""

    def prefetch_at(arr, i, j):
        """Hint the CPU to fetch ``arr[i, j]`` (no-op when kernels run as plain Python)."""
else:  # pragma: no cover  (code generation only runs compiled; pass 1 runs without JIT)
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    def _prefetch_codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        idx = list(args[1:]) + [zero] * (aryty.ndim - (len(args) - 1))
        ptr = cgutils.get_item_pointer2(
            context,
            builder,
            data=ary.data,
            shape=cgutils.unpack_tuple(builder, ary.shape),
            strides=cgutils.unpack_tuple(builder, ary.strides),
            layout=aryty.layout,
            inds=idx,
        )
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    @intrinsic
    def prefetch_row(typingctx, arr, i):
        """Prefetch hint (``llvm.prefetch``, write intent, high locality) for ``&arr[i, 0...]``.

        Random per-slot state does not fit the cache for tens of thousands of slots; fetching
        the row of the event ``D`` positions ahead overlaps those misses with the arithmetic
        (about 5x on the EW update with 60,000 slots). It changes no result.
        """
        return types.void(arr, i), _prefetch_codegen

    @intrinsic
    def prefetch_at(typingctx, arr, i, j):
        """Prefetch hint for ``&arr[i, j]`` (the second cache line of a row that straddles two)."""
        return types.void(arr, i, j), _prefetch_codegen


prefetch = prefetch_row
"""``prefetch(arr, i)``: prefetch hint for ``&arr[i]`` of a 1-D array (hash tables)."""
