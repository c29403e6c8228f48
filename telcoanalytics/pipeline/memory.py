"""Committing a pipeline's state memory at start, so resident memory does not creep for a week.

``np.zeros`` of a large array maps its pages lazily: they become resident only when first written.
State whose size is fixed by design but that fills slowly (the detector's hour-of-week profile:
one hour of the week's column per hour of event time; ring buffers; hash tables) then makes a
long run's resident memory (RSS) grow for days, and capacity planning reads a figure that is
still rising. :func:`commit_pages` writes one byte per page of every large array a pipeline's
components, ingestors and alert manager hold (the byte's own value: nothing changes), so the
memory a run needs is resident, and visible, from its first minute. :class:`Pipeline` calls it
after construction, after a restore and after a topology change (which may grow the states).
:func:`release_free_memory` hands the heap memory freed after a checkpoint (its copies of the state,
hundreds of MB at 10,000 elements) back to the system. :func:`tune_malloc` keeps glibc from
handing freed memory back after every batch (the ``telcoanalytics`` command calls it at start).
"""

from __future__ import annotations

import ctypes
import mmap

import numpy as np

from telcoanalytics._malloc import tune_malloc

__all__ = ["commit_pages", "release_free_memory", "tune_malloc", "PAGE_BYTES"]

PAGE_BYTES = mmap.PAGESIZE
"""Memory page size of this machine (bytes)."""

_MIN_BYTES = 1 << 20  # arrays smaller than this live in the malloc heap: already resident or not worth it
_MAX_DEPTH = 8
_SKIP = (str, bytes, int, float, bool, type(None), type, np.generic)


def _owner(a: np.ndarray):
    """The array owning ``a``'s memory, or None when the memory is not a NumPy allocation (a
    memory map, a buffer of another object): such memory is never written here."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a if a.base is None else None


def commit_pages(*roots, min_bytes: int = _MIN_BYTES) -> int:
    """Make every large array reachable from ``roots`` resident by writing one byte per page.

    Walks attributes (``__dict__``), dict values, lists and tuples (NamedTuples included) up to a
    depth of 8; each array's owning allocation is touched once. Read-only arrays and memory not
    allocated by NumPy (memory maps) are left alone; values never change.

    Parameters
    ----------
    *roots : objects
        Components, ingestors, an alert manager ...
    min_bytes : int
        Arrays smaller than this are skipped.

    Returns
    -------
    int
        Bytes of the arrays touched.

    Examples
    --------
    >>> class State:
    ...     def __init__(self):
    ...         self.profile = np.zeros((168, 4096))
    >>> s = State()
    >>> commit_pages(s) == s.profile.nbytes and not s.profile.any()
    True
    """
    seen: set[int] = set()
    owners: dict[int, np.ndarray] = {}
    stack = [(r, 0) for r in roots]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or isinstance(obj, _SKIP) or depth > _MAX_DEPTH:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            own = _owner(obj)
            if own is not None and own.nbytes >= min_bytes and own.flags.writeable and own.flags.c_contiguous:
                owners[id(own)] = own
            continue
        if isinstance(obj, dict):
            children = obj.values()
        elif isinstance(obj, (list, tuple)):
            children = obj
        elif hasattr(obj, "__dict__") and not callable(obj):
            children = vars(obj).values()
        else:
            continue
        stack.extend((c, depth + 1) for c in children)
    total = 0
    for a in owners.values():
        b = a.reshape(-1).view(np.uint8)[::PAGE_BYTES]
        b |= np.uint8(0)  # an in-place ufunc writes every element (an assignment of a view to itself is skipped)
        total += a.nbytes
    return total


def _libc_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def release_free_memory() -> bool:
    """Return freed heap memory to the system (glibc ``malloc_trim(0)``).

    Arrays below glibc's mmap threshold (which grows to 32 MiB once large blocks have been freed)
    live in the malloc heap; when freed, their pages stay resident until trimmed, so a process
    that made and dropped a checkpoint's copies shows them in its resident memory for a while.
    Values are never touched.

    Returns
    -------
    bool
        False where the C library has no ``malloc_trim`` (not glibc): nothing done.

    Examples
    --------
    >>> release_free_memory() in (True, False)
    True
    """
    if _MALLOC_TRIM is None:  # pragma: no cover - not glibc
        return False
    _MALLOC_TRIM(0)
    return True
