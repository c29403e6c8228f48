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
