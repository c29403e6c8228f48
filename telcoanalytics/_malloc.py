"""glibc malloc settings for batch work (no imports beyond the standard library: the command line
applies them before it loads NumPy's users, see :func:`tune_malloc`)."""

from __future__ import annotations

import ctypes
import os

__all__ = ["tune_malloc"]


# glibc mallopt parameters: M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD
_TUNING = ((-1, 2**31 - 1), (-2, 256 << 20), (-3, 32 << 20))
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_")


def tune_malloc(libc=None) -> bool:
    """Keep freed memory in this process's malloc heap instead of returning it to the system at once.

    With glibc's defaults, a block of 128 KiB or more (up to 32 MiB once larger blocks were freed)
    gets its own ``mmap`` and goes back to the system when freed, and a heap whose free top exceeds
    128 KiB is trimmed: the next batch's arrays of the same size are then fresh pages, faulted in
    and zero-filled by the kernel again, which shows as system time. This sets the equivalent of
    ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=268435456``:
    blocks below 32 MiB come from the heap, the heap is not trimmed while freeing, and grows in
    256 MiB steps (address space; pages become resident only when written). Freed memory is reused
    by the next batch; :func:`release_free_memory` still returns it explicitly. Values are never
    touched. Call it once, first thing: the ``telcoanalytics`` command does so before it imports the
    pipeline; a library user's program should call ``telcoanalytics.tune_malloc()`` before importing
    ``telcoanalytics.pipeline``
    (applied later, it still removes most of the system time but not all of the page faults).

    Nothing is changed where the C library is not glibc, or when any of those ``MALLOC_*``
    environment variables is set (the user's own setting wins).

    Parameters
    ----------
    libc : ctypes library, optional
        The C library to tune (default: this process's).

    Returns
    -------
    bool
        True when all three settings were applied.

    Examples
    --------
    >>> tune_malloc() in (True, False)
    True
    """
    if any(k in os.environ for k in _MALLOC_ENV):
        return False
    if libc is None:
        try:
            libc = ctypes.CDLL(None)
        except OSError:  # pragma: no cover - no C library to load
            return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or getattr(libc, "gnu_get_libc_version", None) is None:
        return False  # not glibc (musl's mallopt does nothing; other platforms have none)
    return all(mallopt(param, value) == 1 for param, value in _TUNING)
