"""Partition a batch by a dense key (counting sort) and reduce values over segments.

Every routing step of the package goes through these kernels: a batch of events carries a dense
element index per row; mapping it through an element -> node table (region, site, ...) gives a
key, and a counting sort groups the rows into contiguous slices, one per key, in one O(n) pass
over the keys plus one scatter pass. Roll-ups up the hierarchy are segment reductions.

Conventions shared by all partition kernels
-------------------------------------------
* Keys are dense integers ``0..n_keys-1``. A key outside that range (negative, e.g. ``-1`` for an
  unknown or retired element, or too large) is *unrouted*: such rows go to one extra partition
  at the end, so nothing is ever dropped.
* ``offsets`` has ``n_keys + 2`` entries: partition ``k`` is ``order[offsets[k]:offsets[k + 1]]``
  for ``k < n_keys`` and the unrouted rows are ``order[offsets[n_keys]:offsets[n_keys + 1]]``.
  ``offsets[0] == 0`` and ``offsets[-1] == n``.
* The sort is stable: within a partition, rows keep their input order.

Conventions shared by all segment kernels
-----------------------------------------
* ``seg[i]`` is the output row of input row ``i``; a negative ``seg[i]`` (or one ``>= n_seg``)
  skips the row (used to leave retired elements out of a roll-up).
* NaN is "missing": it is skipped by sum, min and max and not counted by count. An empty
  segment sums to 0, counts 0, and has NaN as min and max.
"""

import numpy as np

from ._numba import kernel, kernel_exact


@kernel
def partition_by_key(keys, n_keys):
    """Stable counting sort of row numbers by a dense key.

    Parameters
    ----------
    keys : int64 array, shape (n,)
        Dense key of every row; values outside ``0..n_keys-1`` are unrouted.
    n_keys : int
        Number of partitions.

    Returns
    -------
    order : int64 array, shape (n,)
        Row numbers grouped by key, stable within a key, unrouted rows last.
    offsets : int64 array, shape (n_keys + 2,)
        Slice bounds of each partition in ``order`` (the last slice holds the unrouted rows).

    Notes
    -----
    Counting sort (Cormen et al., *Introduction to Algorithms*, 3rd ed., section 8.2): one pass
    counts rows per key, an exclusive prefix sum gives each key's first position, a second pass
    writes each row number at its key's next position. O(n + n_keys) time, no comparisons.
    """
    n = keys.shape[0]
    counts = np.zeros(n_keys + 2, dtype=np.int64)
    for i in range(n):
        k = keys[i]
        if k < 0 or k >= n_keys:
            k = n_keys
        counts[k + 1] += 1
    for j in range(n_keys + 1):
        counts[j + 1] += counts[j]
    pos = counts[: n_keys + 1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        k = keys[i]
        if k < 0 or k >= n_keys:
            k = n_keys
        order[pos[k]] = i
        pos[k] += 1
    return order, counts


@kernel
def partition_by_map_into(index, index_to_key, n_keys, order, kbuf):
    """Stable counting sort of rows by ``index_to_key[index[row]]`` into caller-owned buffers.

    This is the routing kernel: ``index`` is the dense element index of each event and
    ``index_to_key`` maps every element to its node at the routing level (-1 for retired
    elements). The lookup is fused into the sort, and the output and scratch buffers come from
    the caller so a streaming pipeline can reuse them batch after batch (no page faults on
    fresh memory).

    Parameters
    ----------
    index : int64 array, shape (n,)
        Dense index of every row into ``index_to_key``; ``-1`` means unknown.
    index_to_key : int64 array, shape (m,)
        Key of each index; values outside ``0..n_keys-1`` are unrouted.
    n_keys : int
        Number of partitions (at most ``2**31 - 2`` for an int32 ``kbuf``).
    order : int64 array, shape (>= n,)
        Output: ``order[:n]`` receives the row numbers grouped by key, stable within a key,
        unrouted rows last.
    kbuf : uint8, int16 or int32 array, shape (>= n,)
        Scratch for each row's key ``0..n_keys``; the narrowest type that holds ``n_keys`` is
        fastest (uint8 up to 255 partitions, int16 up to 32767).

    Returns
    -------
    offsets : int64 array, shape (n_keys + 2,)
        Slice bounds of each partition in ``order`` (the last slice holds the unrouted rows).
    n_invalid : int
        Rows whose ``index`` is neither ``-1`` nor inside ``0..m-1`` (they are unrouted too;
        the caller decides whether that is an error).

    Notes
    -----
    Same counting sort as :func:`partition_by_key`; the first pass stores each row's key in
    ``kbuf`` so the scatter pass does not repeat the lookup.
    """
    n = index.shape[0]
    m = index_to_key.shape[0]
    counts = np.zeros(n_keys + 2, dtype=np.int64)
    n_invalid = 0
    for i in range(n):
        e = index[i]
        k = n_keys
        if e >= 0 and e < m:
            k = index_to_key[e]
            if k < 0 or k >= n_keys:
                k = n_keys
        elif e != -1:
            n_invalid += 1
        kbuf[i] = k
        counts[k + 1] += 1
    for j in range(n_keys + 1):
        counts[j + 1] += counts[j]
    pos = counts[: n_keys + 1].copy()
    for i in range(n):
        k = kbuf[i]
        order[pos[k]] = i
        pos[k] += 1
    return counts, n_invalid


@kernel
def partition_by_map(index, index_to_key, n_keys):
    """Stable counting sort of rows by ``index_to_key[index[row]]``, allocating its output.

    Parameters
    ----------
    index : int64 array, shape (n,)
        Dense index of every row into ``index_to_key``; ``-1`` means unknown.
    index_to_key : int64 array, shape (m,)
        Key of each index; values outside ``0..n_keys-1`` are unrouted.
    n_keys : int
        Number of partitions.

    Returns
    -------
    order : int64 array, shape (n,)
        Row numbers grouped by key, stable within a key, unrouted rows last.
    offsets : int64 array, shape (n_keys + 2,)
        Slice bounds of each partition in ``order``.
    n_invalid : int
        Rows whose ``index`` is neither ``-1`` nor a valid index (unrouted).

    Notes
    -----
    See :func:`partition_by_map_into`.
    """
    n = index.shape[0]
    order = np.empty(n, dtype=np.int64)
    kbuf = np.empty(n, dtype=np.int32)
    offsets, n_invalid = partition_by_map_into(index, index_to_key, n_keys, order, kbuf)
    return order, offsets, n_invalid


@kernel
def partition_scatter(keys, n_keys, values):
    """Stable counting sort that moves ``values`` directly into partition order.

    Parameters
    ----------
    keys : int64 array, shape (n,)
        Dense key of every row; values outside ``0..n_keys-1`` are unrouted.
    n_keys : int
        Number of partitions.
    values : 1-D numeric array, shape (n,)
        Values to scatter (any numeric dtype; the output has the same dtype).

    Returns
    -------
    out : array, shape (n,)
        ``values`` grouped by key, stable within a key, unrouted rows last; equal to
        ``values[order]`` of :func:`partition_by_key`.
    offsets : int64 array, shape (n_keys + 2,)
        Slice bounds of each partition in ``out``.

    Notes
    -----
    Saves the gather ``values[order]`` when only one column is needed per partition.
    """
    n = keys.shape[0]
    counts = np.zeros(n_keys + 2, dtype=np.int64)
    for i in range(n):
        k = keys[i]
        if k < 0 or k >= n_keys:
            k = n_keys
        counts[k + 1] += 1
    for j in range(n_keys + 1):
        counts[j + 1] += counts[j]
    pos = counts[: n_keys + 1].copy()
    out = np.empty_like(values)
    for i in range(n):
        k = keys[i]
        if k < 0 or k >= n_keys:
            k = n_keys
        out[pos[k]] = values[i]
        pos[k] += 1
    return out, counts


@kernel_exact
def segment_sum(values, seg, n_seg):
    """Sum the rows of ``values`` per segment, skipping NaN.

    Parameters
    ----------
    values : float64 array, shape (n, k)
        Values to roll up (one row per input node).
    seg : int64 array, shape (n,)
        Output row of each input row; outside ``0..n_seg-1`` skips the row.
    n_seg : int
        Number of output rows.

    Returns
    -------
    out : float64 array, shape (n_seg, k)
        ``out[s, j] = sum(values[i, j] for seg[i] == s if not isnan(values[i, j]))``.

    Notes
    -----
    Compiled without reassociation so results are bit-reproducible for a given input order.
    """
    n, k = values.shape
    out = np.zeros((n_seg, k), dtype=np.float64)
    for i in range(n):
        s = seg[i]
        if s < 0 or s >= n_seg:
            continue
        for j in range(k):
            v = values[i, j]
            if v == v:
                out[s, j] += v
    return out


@kernel
def segment_count(values, seg, n_seg):
    """Count the non-NaN values of ``values`` per segment.

    Parameters
    ----------
    values : float64 array, shape (n, k)
        Values whose presence is counted.
    seg : int64 array, shape (n,)
        Output row of each input row; outside ``0..n_seg-1`` skips the row.
    n_seg : int
        Number of output rows.

    Returns
    -------
    out : int64 array, shape (n_seg, k)
        ``out[s, j] = #{i : seg[i] == s and not isnan(values[i, j])}``.
    """
    n, k = values.shape
    out = np.zeros((n_seg, k), dtype=np.int64)
    for i in range(n):
        s = seg[i]
        if s < 0 or s >= n_seg:
            continue
        for j in range(k):
            v = values[i, j]
            if v == v:
                out[s, j] += 1
    return out


@kernel
def segment_min(values, seg, n_seg):
    """Minimum of the rows of ``values`` per segment, skipping NaN (NaN when empty).

    Parameters
    ----------
    values : float64 array, shape (n, k)
        Values to reduce.
    seg : int64 array, shape (n,)
        Output row of each input row; outside ``0..n_seg-1`` skips the row.
    n_seg : int
        Number of output rows.

    Returns
    -------
    out : float64 array, shape (n_seg, k)
        Per-segment minimum; NaN for a segment with no non-NaN value.
    """
    n, k = values.shape
    out = np.full((n_seg, k), np.nan)
    for i in range(n):
        s = seg[i]
        if s < 0 or s >= n_seg:
            continue
        for j in range(k):
            v = values[i, j]
            cur = out[s, j]
            if v == v and (cur != cur or v < cur):
                out[s, j] = v
    return out


@kernel
def segment_max(values, seg, n_seg):
    """Maximum of the rows of ``values`` per segment, skipping NaN (NaN when empty).

    Parameters
    ----------
    values : float64 array, shape (n, k)
        Values to reduce.
    seg : int64 array, shape (n,)
        Output row of each input row; outside ``0..n_seg-1`` skips the row.
    n_seg : int
        Number of output rows.

    Returns
    -------
    out : float64 array, shape (n_seg, k)
        Per-segment maximum; NaN for a segment with no non-NaN value.
    """
    n, k = values.shape
    out = np.full((n_seg, k), np.nan)
    for i in range(n):
        s = seg[i]
        if s < 0 or s >= n_seg:
            continue
        for j in range(k):
            v = values[i, j]
            cur = out[s, j]
            if v == v and (cur != cur or v > cur):
                out[s, j] = v
    return out


@kernel
def compose_parent(child_to_mid, mid_to_top):
    """Map each child node to its grandparent: ``out[i] = mid_to_top[child_to_mid[i]]``.

    Parameters
    ----------
    child_to_mid : int64 array, shape (n,)
        Parent index of every child node (negative passes through as -1).
    mid_to_top : int64 array, shape (m,)
        Parent index of every middle node.

    Returns
    -------
    out : int64 array, shape (n,)
        Index of each child's ancestor two levels up, -1 where ``child_to_mid`` is negative or
        out of range.
    """
    n = child_to_mid.shape[0]
    m = mid_to_top.shape[0]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        p = child_to_mid[i]
        if p < 0 or p >= m:
            out[i] = -1
        else:
            out[i] = mid_to_top[p]
    return out
