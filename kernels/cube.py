"""Cube kernels: accumulate events into cells keyed by packed dimension codes, merge and re-key cells.

A *cell table* is a compact set of cells (``0..n_cells-1``, in insertion order) plus an index from
the packed key to the cell. The key of a cell is the mixed-radix number
``key = sum_j code_j * stride_j`` of its dimension codes. Two index layouts share every kernel:

* dense: ``index[key]`` is the cell (``-1`` empty); used when the key space is small.
* hashed: open addressing with linear probing over ``tab_keys`` (``-1`` empty, capacity a power
  of two) and ``tab_cell``; the home slot is a multiplicative (Fibonacci) hash of the key.

Per cell and value field ``f`` the measures are ``fn`` (valid values), ``fsum``, ``fmin``,
``fmax`` and, where ``mom[f]``, the running mean ``fmean`` and ``fm2`` (sum of squared
deviations, Welford per event, Chan et al. when cells merge). Per distinct-count field a row of
HyperLogLog registers, per percentile field a row of log-bucket counts.

Cells at and beyond ``n_cells`` are always in the empty state (zeros, ``fmin = +inf``,
``fmax = -inf``): the caller resets them when it clears or compacts a table, so inserting a cell
costs nothing here. Kernels that may need room return the row at which they stopped for lack of it (``limit`` cells
reached); the caller grows the arrays and calls again from there. ``counters`` is an int64
array ``[n_cells, n_rejected]`` updated in place.

Notes
-----
Chan, Golub, LeVeque 1983, "Algorithms for computing the sample variance": for parts ``a`` and
``b`` with ``delta = mean_b - mean_a``, ``n = n_a + n_b``:
``mean = mean_a + delta n_b / n`` and ``M2 = M2_a + M2_b + delta**2 n_a n_b / n``.
"""
import math

from ._numba import kernel
from .hll import hll_add
from .qsketch import qs_index

EMPTY = -1


@kernel
def cube_hash_slot(key, shift):
    """Home slot of ``key`` in a table of ``2**(63 - shift)`` slots (exact in int64)."""
    k = (key ^ (key >> 31)) & 0x7FFFFFFF
    return (k * 2654435761) >> shift


@kernel
def cube_probe(key, tab_keys, shift):
    """Slot holding ``key``, or the empty slot where it would go (linear probing)."""
    mask = tab_keys.shape[0] - 1
    s = cube_hash_slot(key, shift)
    while tab_keys[s] != key and tab_keys[s] != EMPTY:
        s = (s + 1) & mask
    return s


@kernel
def cube_find(key, dense, index, tab_keys, tab_cell, shift):
    """Cell of ``key`` or -1 when it is not in the table."""
    if dense:
        return index[key]
    s = cube_probe(key, tab_keys, shift)
    if tab_keys[s] == key:
        return tab_cell[s]
    return -1


@kernel
def cube_insert(key, dense, index, tab_keys, tab_cell, shift, cell_key, counters):
    """Insert ``key`` (known absent) as the next cell; return the cell."""
    c = counters[0]
    counters[0] = c + 1
    cell_key[c] = key
    if dense:
        index[key] = c
    else:
        s = cube_probe(key, tab_keys, shift)
        tab_keys[s] = key
        tab_cell[s] = c
    return c


@kernel
def cube_accumulate(codes, rows, strides, vals, vrows, mom, hashes, hrows, p, qvals, qrows,
                    q_min, q_inv_log_gamma, start, dense, index, tab_keys, tab_cell, shift,
                    cell_key, cnt, fn, fsum, fmin, fmax, fmean, fm2, hll, qs, counters, limit):
    """Accumulate events ``start..n-1`` of a batch into a cell table.

    Parameters
    ----------
    codes : int32 array (n_dims_all, n)
        Dimension codes of the batch, ``-1`` for an invalid value (row rejected and counted).
    rows, strides : int64 arrays (d,)
        Rows of ``codes`` forming this table's key and their mixed-radix strides.
    vals : float64 array (n_fields_all, n); vrows : int64 (F,); mom : bool (F,)
        Value fields (NaN = missing), the rows used, and which fields keep moments.
    hashes : int64 array (n_hash_all, n); hrows : int64 (H,); p : int
        64-bit hashes for the distinct counts, and the HyperLogLog precision.
    qvals : float64 array (n_q_all, n); qrows : int64 (Q,); q_min, q_inv_log_gamma : float
        Values for the percentile sketches and the sketch parameters.
    start : int
        First event to process.
    dense, index, tab_keys, tab_cell, shift, cell_key : the cell table index (module notes).
    cnt, fn, fsum, fmin, fmax, fmean, fm2, hll, qs : cell measure arrays, updated in place.
    counters : int64 array [n_cells, n_rejected], updated in place.
    limit : int
        Maximum number of cells allowed before the caller must grow the table.

    Returns
    -------
    int
        ``n`` when all events were processed, otherwise the event at which room ran out.
    """
    n = codes.shape[1]
    d = rows.shape[0]
    nf = vrows.shape[0]
    nh = hrows.shape[0]
    nq = qrows.shape[0]
    nbq = qs.shape[2]
    for i in range(start, n):
        key = 0
        bad = False
        for j in range(d):
            cj = codes[rows[j], i]
            if cj < 0:
                bad = True
            key += cj * strides[j]
        if bad:
            counters[1] += 1
            continue
        if dense:
            c = index[key]
        else:
            s = cube_probe(key, tab_keys, shift)
            c = tab_cell[s] if tab_keys[s] == key else -1
        if c < 0:
            if counters[0] >= limit:
                return i
            c = cube_insert(key, dense, index, tab_keys, tab_cell, shift, cell_key, counters)
        cnt[c] += 1
        for f in range(nf):
            v = vals[vrows[f], i]
            if v == v:
                fn[c, f] += 1
                fsum[c, f] += v
                if v < fmin[c, f]:
                    fmin[c, f] = v
                if v > fmax[c, f]:
                    fmax[c, f] = v
                if mom[f]:
                    dlt = v - fmean[c, f]
                    fmean[c, f] += dlt / fn[c, f]
                    fm2[c, f] += dlt * (v - fmean[c, f])
        for h in range(nh):
            hll_add(hll[c, h], hashes[hrows[h], i], p)
        for q in range(nq):
            v = qvals[qrows[q], i]
            if v == v:
                qs[c, q, qs_index(v, q_min, q_inv_log_gamma, nbq)] += 1
    return n


@kernel
def cube_merge_cells(src_keys, n_src, s_cnt, s_fn, s_fsum, s_fmin, s_fmax, s_fmean, s_fm2, s_hll,
                     s_qs, mom, start, dense, index, tab_keys, tab_cell, shift, cell_key,
                     cnt, fn, fsum, fmin, fmax, fmean, fm2, hll, qs, counters, limit):
    """Merge source cells ``start..n_src-1`` into a table, cell ``s`` going to key ``src_keys[s]``.

    Source and destination hold the same measures. ``src_keys[s] < 0`` skips the cell (filtered
    out). Several source cells may share a destination key (roll-up).

    Returns
    -------
    int
        ``n_src`` when done, otherwise the source cell at which room ran out (``limit`` cells).
    """
    nf = fn.shape[1]
    for s in range(start, n_src):
        key = src_keys[s]
        if key < 0 or s_cnt[s] == 0:
            continue
        c = cube_find(key, dense, index, tab_keys, tab_cell, shift)
        if c < 0:
            if counters[0] >= limit:
                return s
            c = cube_insert(key, dense, index, tab_keys, tab_cell, shift, cell_key, counters)
        cnt[c] += s_cnt[s]
        for f in range(nf):
            nb = s_fn[s, f]
            if nb == 0:
                continue
            na = fn[c, f]
            if na == 0:
                fn[c, f] = nb
                fsum[c, f] = s_fsum[s, f]
                fmin[c, f] = s_fmin[s, f]
                fmax[c, f] = s_fmax[s, f]
                fmean[c, f] = s_fmean[s, f]
                fm2[c, f] = s_fm2[s, f]
                continue
            tot = na + nb
            fsum[c, f] += s_fsum[s, f]
            if s_fmin[s, f] < fmin[c, f]:
                fmin[c, f] = s_fmin[s, f]
            if s_fmax[s, f] > fmax[c, f]:
                fmax[c, f] = s_fmax[s, f]
            if mom[f]:
                dlt = s_fmean[s, f] - fmean[c, f]
                fmean[c, f] += dlt * nb / tot
                fm2[c, f] += s_fm2[s, f] + dlt * dlt * (float(na) * float(nb) / tot)
            fn[c, f] = tot
        for h in range(hll.shape[1]):
            for j in range(hll.shape[2]):
                if s_hll[s, h, j] > hll[c, h, j]:
                    hll[c, h, j] = s_hll[s, h, j]
        for q in range(qs.shape[1]):
            for j in range(qs.shape[2]):
                qs[c, q, j] += s_qs[s, q, j]
    return n_src


@kernel
def cube_derive_code(k, p_stride, p_radix, d_a, d_b, d_c, d_m, t_off, t_len, tables, j):
    """Code of output dimension ``j`` from packed parent key ``k`` (-1 if unmapped).

    ``code = (k // p_stride[j]) % p_radix[j]``, then ``code = ((code + a) // b + c) % m``, then,
    if ``t_len[j] > 0``, ``code = tables[t_off[j] + code]``.
    """
    code = (k // p_stride[j]) % p_radix[j]
    code = ((code + d_a[j]) // d_b[j] + d_c[j]) % d_m[j]
    if t_len[j] > 0:
        if code >= t_len[j]:
            return -1
        code = tables[t_off[j] + code]
    return code


@kernel
def cube_rekey(keys, n, p_stride, p_radix, d_a, d_b, d_c, d_m, t_off, t_len, tables, c_stride,
               out):
    """Re-key cells into another (coarser or derived) key space.

    For every cell ``i < n`` and output dimension ``j``, derive the code (``cube_derive_code``)
    and pack ``out[i] = sum_j code_j * c_stride[j]``; ``-1`` when ``keys[i] < 0`` or a code is
    unmapped.
    """
    d = p_stride.shape[0]
    for i in range(n):
        k = keys[i]
        if k < 0:
            out[i] = -1
            continue
        key = 0
        for j in range(d):
            code = cube_derive_code(k, p_stride, p_radix, d_a, d_b, d_c, d_m, t_off, t_len,
                                    tables, j)
            if code < 0:
                key = -1
                break
            key += code * c_stride[j]
        out[i] = key


@kernel
def cube_decode(keys, n, p_stride, p_radix, d_a, d_b, d_c, d_m, t_off, t_len, tables, out):
    """Codes ``out[j, i]`` of output dimension ``j`` for cell ``i < n`` (``cube_derive_code``)."""
    for i in range(n):
        k = keys[i]
        for j in range(p_stride.shape[0]):
            if k < 0:
                out[j, i] = -1
            else:
                out[j, i] = cube_derive_code(k, p_stride, p_radix, d_a, d_b, d_c, d_m, t_off,
                                             t_len, tables, j)


@kernel
def cube_reindex(cell_key, n, dense, index, tab_keys, tab_cell, shift):
    """Insert cells ``0..n-1`` into a cleared index (after growth or compaction)."""
    for c in range(n):
        key = cell_key[c]
        if dense:
            index[key] = c
        else:
            s = cube_probe(key, tab_keys, shift)
            tab_keys[s] = key
            tab_cell[s] = c


@kernel
def cube_clear(cell_key, n, dense, index, tab_keys, shift):
    """Empty the index of cells ``0..n-1`` in O(n).

    Hashed tables are cleared in reverse insertion order: when a key is removed, every key
    inserted after it is already gone, so its probe sequence is the one it had at insertion.
    """
    for c in range(n - 1, -1, -1):
        key = cell_key[c]
        if dense:
            index[key] = -1
        else:
            tab_keys[cube_probe(key, tab_keys, shift)] = EMPTY


@kernel
def cube_count_new(keys, n, dense, index, tab_keys, tab_cell, shift):
    """Number of distinct valid keys among ``keys[:n]`` (distinct by construction) not yet present."""
    m = 0
    for i in range(n):
        k = keys[i]
        if k >= 0 and cube_find(k, dense, index, tab_keys, tab_cell, shift) < 0:
            m += 1
    return m
