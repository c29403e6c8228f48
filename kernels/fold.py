"""Folding kernels of the analysis component: per-cell partial sums of staged rows, and flow rows
into a ring of intervals per link.

Both use an open-addressing table keyed by a pair of int64 (element and bin, or source and
destination id): ``slots`` (a power of two, -1 empty) points into entry arrays filled in first-seen
order. A kernel stops before the table would pass half full (or a fixed-size array would
overflow) and returns the row it stopped at; the caller grows the arrays and calls again from
there, so no row is processed twice.

Sums are bit-exact: a cell's partial sum starts at 0.0 and adds its rows in row order, as
``np.bincount(cells, weights)`` does (``kernel_exact``: no reassociation).
"""

import numpy as np

from kernels._numba import kernel_exact

_M32 = 0xFFFFFFFF


@kernel_exact
def pair_slot(a, b, mask):
    """Home slot of the key ``(a, b)`` (int64 each) in a table of ``mask + 1`` slots (no overflow:
    each half is folded to 32 bits and multiplied by a constant below 2^30)."""
    x = (a ^ (a >> 32)) & _M32
    y = (b ^ (b >> 32)) & _M32
    h = x * 0x2545F491 + y * 0x1B873593
    h = h ^ (h >> 29)
    return h & mask


@kernel_exact
def pair_lookup(slots, key_a, key_b, n_used, limit, a, b):
    """Entry of the pair ``(a, b)`` in the table, inserted as entry ``n_used`` if new (probing
    from :func:`pair_slot`, linear). Returns ``(j, n_used)``; ``j`` is -1 (nothing inserted) when
    the pair is new and ``n_used`` has reached ``limit``. A new entry is one where the returned
    ``n_used`` grew."""
    mask = slots.shape[0] - 1
    h = pair_slot(a, b, mask)
    while True:
        j = slots[h]
        if j < 0:
            if n_used >= limit:
                return -1, n_used
            slots[h] = n_used
            key_a[n_used] = a
            key_b[n_used] = b
            return n_used, n_used + 1
        if key_a[j] == a and key_b[j] == b:
            return j, n_used
        h = (h + 1) & mask


@kernel_exact
def stage_cells(slots, key_a, key_b, part_sum, part_cnt, n_used, a, b, v, start):
    """Add rows ``start..`` (cell ``(a[i], b[i])``, value ``v[i]``; ``v`` empty: counts only) to the
    table's partial sums and counts.

    Returns ``(stop, n_used)``: the first row not added (``len(a)`` when all were) and the entries
    in use. It stops before a new cell would fill more than half of ``slots`` or the entry arrays.
    """
    limit = min(slots.shape[0] // 2, key_a.shape[0])
    has_v = v.shape[0] > 0
    for i in range(start, a.shape[0]):
        j, n_new = pair_lookup(slots, key_a, key_b, n_used, limit, a[i], b[i])
        if j < 0:
            return i, n_used
        if n_new > n_used:
            part_sum[j] = 0.0
            part_cnt[j] = 0
            n_used = n_new
        if has_v:
            part_sum[j] += v[i]
        part_cnt[j] += 1
    return a.shape[0], n_used


@kernel_exact
def stage_rows(slots, key_a, key_b, part_sum, part_cnt, n_used, ts_ms, elem, v, codes, code, bin_ms, start, bounds):
    """:func:`stage_cells` of a batch's rows selected and binned in the same pass: every row
    whose ``codes`` entry equals ``code`` (every row when ``codes`` is empty) adds ``v[i]`` (as
    float64) to cell ``(elem[i], ts_ms[i] // bin_ms)``; ``bounds`` (int64 (2,)) takes the smallest
    and largest bin of the rows added (min / max with what it holds).

    Returns ``(stop, n_used)`` as :func:`stage_cells` (rows are resumed from ``stop`` after the
    caller grew the table).
    """
    limit = min(slots.shape[0] // 2, key_a.shape[0])
    every = codes.shape[0] == 0
    lo = bounds[0]
    hi = bounds[1]
    for i in range(start, ts_ms.shape[0]):
        if not (every or codes[i] == code):
            continue
        b = ts_ms[i] // bin_ms
        j, n_new = pair_lookup(slots, key_a, key_b, n_used, limit, elem[i], b)
        if j < 0:
            bounds[0] = lo
            bounds[1] = hi
            return i, n_used
        if n_new > n_used:
            part_sum[j] = 0.0
            part_cnt[j] = 0
            n_used = n_new
        part_sum[j] += np.float64(v[i])
        part_cnt[j] += 1
        lo = min(lo, b)
        hi = max(hi, b)
    bounds[0] = lo
    bounds[1] = hi
    return ts_ms.shape[0], n_used


@kernel_exact
def _clear_interval(ring_bytes, ring_packets, ring_flows, present, r, n_links):
    """Empty ring row ``r``; returns how many (link, interval) groups it held."""
    dropped = 0
    for k in range(n_links):
        if present[r, k]:
            dropped += 1
            present[r, k] = 0
            ring_bytes[r, k] = 0
            ring_packets[r, k] = 0
            ring_flows[r, k] = 0
    return dropped


@kernel_exact
def flows_into_ring(
    slots, link_src, link_dst, n_links, ring_bytes, ring_packets, ring_flows, present, state, ts, src, dst, byt, pkt,
    flw, interval_ms, start,
):  # fmt: skip
    """Add flow rows ``start..`` to the ring: row ``b mod W`` of the ring holds interval ``b``
    (``b = ts // interval_ms``), column ``k`` link ``k`` (``(link_src[k], link_dst[k])``, numbered
    in first-seen order). The ring keeps the ``W`` intervals up to the latest seen
    (``state[0]``; ``state[2]`` 0 before any row): a later interval empties the rows it
    passes, counting their groups in ``state[1]``; a row older than the ring is counted there too
    and dropped.

    Returns ``(stop, n_links)``: the first row not added (``len(ts)`` when all were) and the links
    known. It stops before a new link would fill more than half of ``slots`` or exceed the ring's
    columns.
    """
    limit = min(slots.shape[0] // 2, ring_bytes.shape[1], link_src.shape[0])
    w = ring_bytes.shape[0]
    for i in range(start, ts.shape[0]):
        k, n_new = pair_lookup(slots, link_src, link_dst, n_links, limit, src[i], dst[i])
        if k < 0:
            return i, n_links
        n_links = n_new
        b = ts[i] // interval_ms
        if state[2] == 0:
            state[0] = b
            state[2] = 1
        elif b > state[0]:
            steps = min(b - state[0], w)
            for s in range(1, steps + 1):
                state[1] += _clear_interval(ring_bytes, ring_packets, ring_flows, present, (state[0] + s) % w, n_links)
            state[0] = b
        elif b <= state[0] - w:
            state[1] += 1
            continue
        r = b % w
        ring_bytes[r, k] += byt[i]
        ring_packets[r, k] += pkt[i]
        ring_flows[r, k] += flw[i]
        present[r, k] = 1
    return ts.shape[0], n_links


def empty_slots(n):
    """A table of ``n`` (a power of two) empty slots."""
    return np.full(n, -1, dtype=np.int64)


@kernel_exact
def rehash_pairs(slots, key_a, key_b, n):
    """Point empty ``slots`` at entries ``0..n-1`` of keys ``(key_a, key_b)`` (distinct pairs)."""
    mask = slots.shape[0] - 1
    for j in range(n):
        h = pair_slot(key_a[j], key_b[j], mask)
        while slots[h] >= 0:
            h = (h + 1) & mask
        slots[h] = j


@kernel_exact
def add_cells(sums, counts, rows, bins, part_sum, part_cnt, n, first_bin, with_sums):
    """``counts[rows[j], bins[j] - first_bin] += part_cnt[j]`` (and the same of ``part_sum`` into
    ``sums`` when ``with_sums``) for the entries ``j < n`` whose column is not negative (distinct
    cells: each is added once)."""
    for j in range(n):
        c = bins[j] - first_bin
        if c < 0:
            continue
        counts[rows[j], c] += part_cnt[j]
        if with_sums:
            sums[rows[j], c] += part_sum[j]


@kernel_exact
def factorize_pairs(slots, key_a, key_b, n_used, a, b, codes, start):
    """``codes[i]``: the entry of the pair ``(a[i], b[i])``, entries numbered in first-seen order
    (the distinct pairs land in ``key_a``, ``key_b``). Returns ``(stop, n_used)`` as
    :func:`stage_cells`."""
    limit = min(slots.shape[0] // 2, key_a.shape[0])
    for i in range(start, a.shape[0]):
        j, n_used = pair_lookup(slots, key_a, key_b, n_used, limit, a[i], b[i])
        if j < 0:
            return i, n_used
        codes[i] = j
    return a.shape[0], n_used


def factorize(a, b):
    """``(codes, key_a, key_b)``: each row's pair ``(a[i], b[i])`` numbered in first-seen order, and
    the distinct pairs in that order (as ``np.unique`` of the pairs with ``return_inverse``, but
    in one pass and unsorted)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    codes = np.empty(len(a), np.int64)
    size = 1 << 10
    key_a, key_b, slots = np.zeros(size // 2, np.int64), np.zeros(size // 2, np.int64), empty_slots(size)
    start = n = 0
    while True:
        start, n = factorize_pairs(slots, key_a, key_b, n, a, b, codes, start)
        if start == len(a):
            return codes, key_a[:n].copy(), key_b[:n].copy()
        size *= 2
        key_a = np.concatenate([key_a[:n], np.zeros(size // 2 - n, np.int64)])
        key_b = np.concatenate([key_b[:n], np.zeros(size // 2 - n, np.int64)])
        slots = empty_slots(size)
        rehash_pairs(slots, key_a, key_b, n)


@kernel_exact
def sum_rows_by_group(x, group, out):
    """``out[group[i]] += x[i]`` row by row, in row order (rows with a negative group skipped):
    ``np.add.at(out, group, x)`` for 2-D ``x``, without its per-element cost."""
    for i in range(x.shape[0]):
        g = group[i]
        if g < 0:
            continue
        for c in range(x.shape[1]):
            out[g, c] += x[i, c]


@kernel_exact
def ring_groups(present, ring_rows, link_order):
    """How many (interval, link) groups ring rows ``ring_rows`` hold among links ``link_order``."""
    n = 0
    for r in ring_rows:
        for k in link_order:
            if present[r, k]:
                n += 1
    return n


@kernel_exact
def ring_to_rows(present, ring_bytes, ring_packets, ring_flows, ring_rows, starts, link_order, link_src, link_dst, out):
    """The held groups as flow rows ``out`` (columns ts_ms, src, dst, bytes, packets, flows), ring
    row by ring row (row ``ring_rows[i]`` is the interval starting at ``starts[i]``), links in
    ``link_order``."""
    j = 0
    for i in range(ring_rows.shape[0]):
        r = ring_rows[i]
        for k in link_order:
            if present[r, k]:
                out[j, 0] = starts[i]
                out[j, 1] = link_src[k]
                out[j, 2] = link_dst[k]
                out[j, 3] = ring_bytes[r, k]
                out[j, 4] = ring_packets[r, k]
                out[j, 5] = ring_flows[r, k]
                j += 1
