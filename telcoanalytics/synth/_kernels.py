"""Compiled passes of the synthetic generator: rows and arrival orders built without the
temporaries of the equivalent NumPy expressions.

Every function here returns exactly what its NumPy expression (the ``*_numpy`` twin, its
reference) returns: only copies, integer arithmetic and comparisons happen in the kernels. With
``NUMBA_DISABLE_JIT=1`` the generator takes the NumPy twins instead (the kernels as plain Python
would take minutes per generated day); the tests run the kernels themselves in both modes against
the twins. Large buffers are allocated by NumPy and handed to the kernels, so they get NumPy's
huge-page advice like every other large array.
"""

from __future__ import annotations

import numba
import numpy as np

from kernels._numba import kernel_exact

COMPILED = not numba.config.DISABLE_JIT
"""True when the kernels run compiled (the generator then uses them)."""

_RADIX_BITS = 11
_RADIX = 1 << _RADIX_BITS
_MASK = _RADIX - 1


# ---- equipment rows ----------------------------------------------------------------------------
def equip_table(times, element_ids, has, present, slow, on_env, grids, dtype) -> np.ndarray:
    """Equipment rows (``dtype``: fields ``ts_ms``, ``element_id``, ``metric_id``, ``value``) in
    (interval, element, metric) order: for every (interval ``t``, element ``e``) with
    ``present[t, e]``, the metrics ``m`` with ``has[e, m]`` (slow ones only where ``on_env[t]``),
    value ``grids[m, t, e]``."""
    if not COMPILED:
        return equip_table_numpy(times, element_ids, has, present, slow, on_env, grids, dtype)
    return equip_table_kernel(times, element_ids, has, present, slow, on_env, grids, dtype)


def equip_table_numpy(times, element_ids, has, present, slow, on_env, grids, dtype) -> np.ndarray:
    mask = has[None, :, :] & present[:, :, None] & (~slow[None, None, :] | on_env[:, None, None])
    out = np.empty(int(mask.sum()), dtype=dtype)
    shape = mask.shape
    out["ts_ms"] = np.broadcast_to(times[:, None, None], shape)[mask]
    out["element_id"] = np.broadcast_to(element_ids[None, :, None], shape)[mask]
    out["metric_id"] = np.broadcast_to(np.arange(has.shape[1], dtype=np.int32)[None, None, :], shape)[mask]
    out["value"] = np.moveaxis(grids, 0, 2)[mask]
    return out


def equip_table_kernel(times, element_ids, has, present, slow, on_env, grids, dtype) -> np.ndarray:
    times = np.asarray(times, np.int64)
    out = np.empty(int(_equip_count(has, present, slow, on_env)), dtype=dtype)
    _equip_fill(
        times,
        element_ids,
        has,
        present,
        slow,
        on_env,
        grids,
        out["ts_ms"],
        out["element_id"],
        out["metric_id"],
        out["value"],
    )
    return out


@kernel_exact
def _equip_count(has, present, slow, on_env):
    n_t, n_e = present.shape
    n_m = has.shape[1]
    k_all = np.zeros(n_e, np.int64)
    k_fast = np.zeros(n_e, np.int64)
    for e in range(n_e):
        for m in range(n_m):
            if has[e, m]:
                k_all[e] += 1
                if not slow[m]:
                    k_fast[e] += 1
    n = 0
    for t in range(n_t):
        k = k_all if on_env[t] else k_fast
        for e in range(n_e):
            if present[t, e]:
                n += k[e]
    return n


@kernel_exact
def _equip_fill(times, element_ids, has, present, slow, on_env, grids, out_ts, out_el, out_m, out_val):
    n_t, n_e = present.shape
    n_m = has.shape[1]
    i = 0
    for t in range(n_t):
        ts = times[t]
        env = on_env[t]
        for e in range(n_e):
            if not present[t, e]:
                continue
            el = element_ids[e]
            for m in range(n_m):
                if has[e, m] and (env or not slow[m]):
                    out_ts[i] = ts
                    out_el[i] = el
                    out_m[i] = m
                    out_val[i] = grids[m, t, e]
                    i += 1


# ---- rows arriving in groups -------------------------------------------------------------------
def group_starts(ts: np.ndarray, el: np.ndarray) -> np.ndarray:
    """Indices (int64) where ``(ts, el)`` differs from the row before; row 0 starts a group."""
    return (group_starts_kernel if COMPILED else group_starts_numpy)(ts, el)


def group_starts_numpy(ts, el) -> np.ndarray:
    if not len(ts):
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.concatenate([[True], (ts[1:] != ts[:-1]) | (el[1:] != el[:-1])]))


def group_starts_kernel(ts, el) -> np.ndarray:
    out = np.empty(_group_starts(ts, el, np.empty(0, np.int64)), np.int64)
    _group_starts(ts, el, out)
    return out


@kernel_exact
def _group_starts(ts, el, out):
    """Count the group starts, and write them to ``out`` unless it is empty."""
    k = 0
    write = len(out) > 0
    for i in range(len(ts)):
        if i == 0 or ts[i] != ts[i - 1] or el[i] != el[i - 1]:
            if write:
                out[k] = i
            k += 1
    return k


def expand_groups(first, size, g_ord, g_arr, n: int):
    """The rows of the groups taken in the order ``g_ord`` (group ``g``: rows ``first[g]`` ..
    ``first[g] + size[g] - 1``, ``n`` rows in all) and each row's arrival ``g_arr[g]``:
    ``(order, arrival_sorted)``, both int64."""
    return (expand_groups_kernel if COMPILED else expand_groups_numpy)(first, size, g_ord, g_arr, n)


def expand_groups_numpy(first, size, g_ord, g_arr, n: int):
    sz = size[g_ord]
    order = np.repeat(first[g_ord] - (np.cumsum(sz) - sz), sz) + np.arange(n)
    return order, np.repeat(g_arr[g_ord], sz)


def expand_groups_kernel(first, size, g_ord, g_arr, n: int):
    order = np.empty(n, np.int64)
    arrival = np.empty(n, np.int64)
    _expand_groups(first, size, g_ord, g_arr, order, arrival)
    return order, arrival


@kernel_exact
def _expand_groups(first, size, g_ord, g_arr, order, arrival):
    p = 0
    for j in range(len(g_ord)):
        g = g_ord[j]
        f = first[g]
        a = g_arr[g]
        for r in range(size[g]):
            order[p] = f + r
            arrival[p] = a
            p += 1


# ---- stable argsort ----------------------------------------------------------------------------
def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of int64 keys (about twice as fast compiled)."""
    return stable_argsort_kernel(keys) if COMPILED else np.argsort(keys, kind="stable")


def stable_argsort_kernel(keys: np.ndarray) -> np.ndarray:
    """A least-significant-digit radix sort of ``keys - keys.min()``: 11-bit digits, all counted
    in one pass, digits every key shares skipped.

    Raises
    ------
    ValueError
        If the keys span 2**63 or more.
    """
    keys = np.asarray(keys, np.int64)
    n = len(keys)
    if n < 2:
        return np.arange(n)
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo >= 2**63:
        raise ValueError("stable_argsort: keys span 2**63 or more")
    bufs = [np.empty(n, np.int64) for _ in range(4)]
    return _radix_argsort(keys, np.int64(lo), np.int64(hi - lo), *bufs)


@kernel_exact
def _radix_argsort(keys, lo, span, order, nxt_o, cur, nxt):
    n = len(keys)
    n_dig = 0
    while (span >> (n_dig * _RADIX_BITS)) > 0:
        n_dig += 1
    count = np.zeros((n_dig, _RADIX + 1), np.int64)
    for i in range(n):
        v = keys[i] - lo
        cur[i] = v
        order[i] = i
        for k in range(n_dig):
            count[k, ((v >> (k * _RADIX_BITS)) & _MASK) + 1] += 1
    for k in range(n_dig):
        c = count[k]
        if c.max() == n:  # every key has this digit
            continue
        for d in range(_RADIX):
            c[d + 1] += c[d]
        shift = k * _RADIX_BITS
        for i in range(n):
            v = cur[i]
            d = (v >> shift) & _MASK
            p = c[d]
            c[d] = p + 1
            nxt[p] = v
            nxt_o[p] = order[i]
        cur, nxt = nxt, cur
        order, nxt_o = nxt_o, order
    return order


# ---- k-th True ---------------------------------------------------------------------------------
def nth_true(mask: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(mask)[ranks]`` (int64) without the index array; ranks must be in
    ``[0, count_nonzero(mask))``."""
    return _nth_true(mask, np.asarray(ranks, np.int64)) if COMPILED else np.flatnonzero(mask)[ranks]


@kernel_exact
def _nth_true(mask, ranks):
    k = len(ranks)
    out = np.empty(k, np.int64)
    if k == 0:
        return out
    by = np.argsort(ranks)
    j = 0
    seen = 0
    for i in range(len(mask)):
        if mask[i]:
            while j < k and ranks[by[j]] == seen:
                out[by[j]] = i
                j += 1
            if j == k:
                break
            seen += 1
    return out
