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
    def prefetch(arr, i):
        """Hint the CPU to fetch ``arr[i]`` (no-op when kernels run as plain Python)."""
else:  # pragma: no cover  (code generation only runs compiled; pass 1 runs without JIT)
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, arr, i):
        """``llvm.prefetch`` (write intent, high locality) of ``&arr[i]`` for a 1-D array.

        Random probes into a table far larger than the caches (hash sets, per-slot state) wait
        on memory; issuing the fetch for the probe a dozen iterations ahead overlaps those
        waits with work. It changes no result.
        """
        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer2(context, builder, data=ary.data,
                                            shape=cgutils.unpack_tuple(builder, ary.shape),
                                            strides=cgutils.unpack_tuple(builder, ary.strides),
                                            layout=aryty.layout, inds=[args[1]])
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(builder.module,
                                                ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                                "llvm.prefetch.p0i8")
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
            return context.get_dummy_value()
        return types.void(arr, i), codegen
