"""Cube kernels: accumulate events into cells keyed by packed dimension codes, merge and re-key cells.

A *cell table* is a compact set of cells (``0..n_cells-1``, in insertion order) plus an index from
the packed key to the cell. The key of a cell is the mixed-radix number
``key = sum_j code_j * stride_j`` of its dimension codes. Two index layouts share every kernel:

* dense: ``index[key]`` is the cell (``-1`` empty); used when the key space is small.
* hashed: open addressing with linear probing over ``tab_keys`` (``-1`` empty, capacity a power
  of two) and ``tab_cell``; the home slot is a multiplicative (Fibonacci) hash of the key.

Per cell and value field ``f`` the measures are ``fmiss`` (missing values), ``fsum``, ``fmin``,
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

from typing import NamedTuple

import numpy as np

from ._numba import kernel, prefetch_row
from .hll import hll_add
from .qsketch import qs_index

EMPTY = -1
BIG_MOD = 1 << 62  # the modulus of an identity derivation (no arithmetic needed)


# The NamedTuples below name the fields of the tuples the kernels take (state, parameters, batch).
# Callers pass them as plain tuples in this field order: Numba dispatches a plain tuple of arrays
# through its C fast path, a NamedTuple through a slower Python fallback (it adds up over many small
# batches). The kernels unpack them by position, so both work.


class CellIndex(NamedTuple):
    """The index of a cell table (module notes), updated in place by the kernels that add cells."""

    dense: bool  # dense index (``index[key]``) or hashed (``tab_keys`` / ``tab_cell``)
    index: np.ndarray  # int32 (keyspace,) when dense
    tab_keys: np.ndarray  # int64 (capacity,) when hashed, ``EMPTY`` = free slot
    tab_cell: np.ndarray  # int32 (capacity,) when hashed
    cell_key: np.ndarray  # int64 (cap,): key of each cell, in insertion order
    counters: np.ndarray  # int64 [n_cells, n_rejected]


class CellMeasures(NamedTuple):
    """Measure arrays of the cells of a table (module notes); row ``c`` is cell ``c``."""

    cnt: np.ndarray  # int64 (cap,)
    fmiss: np.ndarray  # int64 (cap, F): missing values per field
    fsum: np.ndarray  # float64 (cap, F)
    fmin: np.ndarray  # float64 (cap, F)
    fmax: np.ndarray  # float64 (cap, F)
    fmean: np.ndarray  # float64 (cap, F), where ``mom[f]``
    fm2: np.ndarray  # float64 (cap, F), where ``mom[f]``
    hll: np.ndarray  # uint8 (cap, H, 2**p)
    qs: np.ndarray  # int64 (cap, Q, buckets)


class AccumParams(NamedTuple):
    """Which rows of a batch feed which measures, and the sketch parameters."""

    vrows: np.ndarray  # int64 (F,): rows of ``vals`` holding the value fields
    mom: np.ndarray  # bool (F,): fields that keep moments
    hrows: np.ndarray  # int64 (H,): rows of ``hashes`` feeding the distinct counts
    p: int  # HyperLogLog precision
    qrows: np.ndarray  # int64 (Q,): rows of ``vals`` feeding the percentile sketches
    q_min: float  # percentile sketch: smallest tracked value
    q_inv_log_gamma: float  # percentile sketch: 1 / ln(gamma)


class EventBatch(NamedTuple):
    """A batch of events to accumulate."""

    keys: np.ndarray  # int64 (n,): packed key per event (``cube_pack_keys``), -1 rejects the row
    vals: np.ndarray  # float64 (n_fields_all, n); NaN = missing
    hashes: np.ndarray  # int64 (n_hash_all, n): 64-bit hashes for the distinct counts


class PosRows(NamedTuple):
    """Count and single-field value measures by row (positional rows or compact cells)."""

    cnt: np.ndarray  # int64 (rows,); positional rows hold ``count | epoch << POS_TAG_SHIFT``
    fmiss: np.ndarray  # int64 (rows, F<=1)
    fsum: np.ndarray  # float64 (rows, F<=1)
    fmin: np.ndarray  # float64 (rows, F<=1)
    fmax: np.ndarray  # float64 (rows, F<=1)


class PosDirty(NamedTuple):
    """Rows of older cells touched in the current epoch of a positional table."""

    pos: np.ndarray  # int64 (cap,): their rows
    key: np.ndarray  # int64 (cap,): their keys
    state: np.ndarray  # int64 [epoch, entries listed, cells at the start of the epoch]


class PosLayout(NamedTuple):
    """Row of a packed key: ``sum_j ((key >> shift[j]) & mask[j]) * mstride[j]``."""

    shift: np.ndarray  # int64 (d,)
    mask: np.ndarray  # int64 (d,)
    mstride: np.ndarray  # int64 (d,)


class DeriveArgs(NamedTuple):
    """How output codes derive from a packed parent key (``cube_derive_codes``), per output dimension."""

    shift: np.ndarray  # int64 (d,)
    mask: np.ndarray  # int64 (d,)
    a: np.ndarray  # int64 (d,)
    b: np.ndarray  # int64 (d,)
    c: np.ndarray  # int64 (d,)
    m: np.ndarray  # int64 (d,)
    t_off: np.ndarray  # int64 (d,)
    t_len: np.ndarray  # int64 (d,)
    tables: np.ndarray  # int64 (sum t_len,)


@kernel
def cube_hash_slot(key, mask):
    """Home slot of ``key`` (< 2**62) in a table of ``mask + 1`` (<= 2**31) slots.

    Universal hashing modulo the Mersenne prime ``2**31 - 1`` of the two 31-bit halves; every
    product stays below ``2**62``, so it is exact in int64 with or without the JIT.
    """
    lo = key & 0x7FFFFFFF
    hi = (key >> 31) & 0x7FFFFFFF
    return ((lo * 1103515245 + hi * 1597334677 + 12345) % 2147483647) & mask


@kernel
def cube_probe(key, tab_keys):
    """Slot holding ``key``, or the empty slot where it would go (linear probing)."""
    mask = tab_keys.shape[0] - 1
    s = cube_hash_slot(key, mask)
    while tab_keys[s] != key and tab_keys[s] != EMPTY:
        s = (s + 1) & mask
    return s


@kernel
def cube_find(key, dense, index, tab_keys, tab_cell):
    """Cell of ``key`` or -1 when it is not in the table."""
    if dense:
        return index[key]
    s = cube_probe(key, tab_keys)
    if tab_keys[s] == key:
        return tab_cell[s]
    return -1


@kernel
def cube_insert(key, dense, index, tab_keys, tab_cell, cell_key, counters):
    """Insert ``key`` (known absent) as the next cell; return the cell."""
    c = counters[0]
    counters[0] = c + 1
    cell_key[c] = key
    if dense:
        index[key] = c
    else:
        s = cube_probe(key, tab_keys)
        tab_keys[s] = key
        tab_cell[s] = c
    return c


@kernel
def cube_code_stats(codes, rows, c_max, n_neg):
    """Per row ``rows[j]`` of ``codes``: the largest code into ``c_max[j]`` (-1 if none) and the
    number of negative (invalid) codes into ``n_neg[j]``, in one pass."""
    for j in range(rows.shape[0]):
        r = codes[rows[j]]
        mx = -1
        neg = 0
        for i in range(r.shape[0]):
            c = r[i]
            if c > mx:
                mx = c
            if c < 0:
                neg += 1
        c_max[j] = mx
        n_neg[j] = neg


@kernel
def cube_pack_keys(codes, rows, strides, keys):
    """Packed keys ``keys[i] = sum_j codes[rows[j], i] * strides[j]``, ``-1`` if any code < 0.

    One pass per four dimensions over contiguous code rows (vectorises), instead of a gather
    per event: the accumulation then reads a single key per event.

    Parameters
    ----------
    codes : int32 array (n_dims_all, n)
    rows, strides : int64 arrays (d,)
    keys : int64 array (n,), written.
    """
    n = keys.shape[0]
    d = rows.shape[0]
    if d == 0:
        for i in range(n):
            keys[i] = 0
        return
    j = 0
    while j < d:
        # four dimensions per pass; missing ones repeat row j with stride 0
        r0 = codes[rows[j]]
        s0 = strides[j]
        r1 = codes[rows[j + 1]] if j + 1 < d else r0
        s1 = strides[j + 1] if j + 1 < d else 0
        r2 = codes[rows[j + 2]] if j + 2 < d else r0
        s2 = strides[j + 2] if j + 2 < d else 0
        r3 = codes[rows[j + 3]] if j + 3 < d else r0
        s3 = strides[j + 3] if j + 3 < d else 0
        for i in range(n):
            a = r0[i]
            b = r1[i]
            c = r2[i]
            e = r3[i]
            k = a * s0 + b * s1 + c * s2 + e * s3
            if (a | b | c | e) < 0:
                k = -1
            if j == 0:
                keys[i] = k
            elif k < 0 or keys[i] < 0:
                keys[i] = -1
            else:
                keys[i] += k
        j += 4


@kernel
def cube_accumulate_fast(ix, cells, keys, v, has_v, start, limit):
    """``cube_accumulate`` for a dense index (``CellIndex`` ``ix``, ``CellMeasures`` ``cells``),
    one value field ``v`` (or none when ``has_v`` is false: counts only), no moments or sketches."""
    _, index, _, _, cell_key, counters = ix
    cnt, fmiss, fsum, fmin, fmax, _, _, _, _ = cells
    n = keys.shape[0]
    nc = counters[0]
    n_rej = 0
    stop = n
    for i in range(start, n):
        key = keys[i]
        if key < 0:
            n_rej += 1
            continue
        c = index[key]
        if c < 0:
            if nc >= limit:
                stop = i
                break
            c = nc
            nc += 1
            index[key] = c
            cell_key[c] = key
        cnt[c] += 1
        if not has_v:
            continue
        x = v[i]
        if x == x:
            fsum[c, 0] += x
            if x < fmin[c, 0]:
                fmin[c, 0] = x
            if x > fmax[c, 0]:
                fmax[c, 0] = x
        else:
            fmiss[c, 0] += 1
    counters[0] = nc
    counters[1] += n_rej
    return stop


POS_TAG_SHIFT = 40  # positional count words: count | epoch << 40
POS_CNT_MASK = (1 << POS_TAG_SHIFT) - 1
POS_AHEAD = 16  # events between a prefetch and its use
HASH_AHEAD = 16  # events between the prefetch of a hashed key's home slot and its probe


@kernel
def cube_key_pos(keys, shift, mask, mstride, out):
    """Row of every packed key in a positional table: ``out[i] = sum_j code_j * mstride[j]``
    with ``code_j = (keys[i] >> shift[j]) & mask[j]`` (mixed radix over the cardinalities, so
    no row is wasted on the power-of-two padding of the keys); ``-1`` stays ``-1``."""
    d = shift.shape[0]
    for i in range(keys.shape[0]):
        k = keys[i]
        if k < 0:
            out[i] = -1
            continue
        r = 0
        for j in range(d):
            r += ((k >> shift[j]) & mask[j]) * mstride[j]
        out[i] = r


@kernel
def cube_accumulate_pos(ix, rows, dirty, pos, keys, v, has_v, start, limit):
    """``cube_accumulate_fast`` into a *positional* table: the measures of the event with row
    ``pos[i]`` (``cube_key_pos`` of its key ``keys[i]``) are at that row of ``pcnt, pfmiss,
    pfsum, pfmin, pfmax``, so an event costs no index lookup, and the row of a later event is
    prefetched. A row seen for the first time (count 0) becomes the next cell: ``cell_key`` and
    the dense ``index`` record its key (other kernels find the cell there) and its row is put
    into the empty state (the arrays need no initialisation; only ``pcnt`` must start at zero).

    ``pcnt[r]`` holds ``count | epoch << POS_TAG_SHIFT``: the first time a row of an older
    cell (below ``pstate[2]``, the cells at the start of the epoch) is touched in epoch
    ``pstate[0]`` (>= 1), its row and key are appended to ``dirty_pos`` / ``dirty_key``
    (``pstate[1]`` entries); new cells are not listed (they are the cells from ``pstate[2]``).
    So the compact cells are refreshed from the touched rows only (``cube_gather_pos``). The
    tag lives in the word the event updates anyway.

    Parameters
    ----------
    ix : CellIndex
        The dense index (``index``, ``cell_key``, ``counters`` are used), updated in place.
    rows : PosRows
        The positional rows, updated in place.
    dirty : PosDirty
        The touched-rows list and ``[epoch, listed, cells at the epoch start]``, updated in place.
    pos, keys : int64 (n,)
        Row and packed key of every event (-1 rejects the row).
    v : float64 (n,); has_v : bool
        The value field (ignored unless ``has_v``).
    start, limit : int
        First event; most cells allowed before the caller must grow the table.

    Returns
    -------
    int
        ``n`` when all events were processed, otherwise the event at which room ran out.
    """
    _, index, _, _, cell_key, counters = ix
    pcnt, pfmiss, pfsum, pfmin, pfmax = rows
    dirty_pos, dirty_key, pstate = dirty
    n = pos.shape[0]
    nc = counters[0]
    epoch = pstate[0]
    tag = epoch << POS_TAG_SHIFT
    nd = pstate[1]
    n_rej = 0
    stop = n
    for i in range(start, n):
        if i + POS_AHEAD < n:
            ra = pos[i + POS_AHEAD]
            if ra >= 0:
                prefetch_row(pcnt, ra)
                if has_v:
                    prefetch_row(pfsum, ra)
                    prefetch_row(pfmin, ra)
                    prefetch_row(pfmax, ra)
        r = pos[i]
        if r < 0:
            n_rej += 1
            continue
        w = pcnt[r]
        c0 = w & POS_CNT_MASK
        if c0 == 0:
            if nc >= limit:
                stop = i
                break
            index[keys[i]] = nc
            cell_key[nc] = keys[i]
            nc += 1
            if has_v:  # rows are initialised when first seen (one value field at most)
                pfmiss[r, 0] = 0
                pfsum[r, 0] = 0.0
                pfmin[r, 0] = np.inf
                pfmax[r, 0] = -np.inf
        elif (w >> POS_TAG_SHIFT) != epoch:
            dirty_pos[nd] = r
            dirty_key[nd] = keys[i]
            nd += 1
        pcnt[r] = (c0 + 1) | tag
        if not has_v:
            continue
        x = v[i]
        if x == x:
            pfsum[r, 0] += x
            if x < pfmin[r, 0]:
                pfmin[r, 0] = x
            if x > pfmax[r, 0]:
                pfmax[r, 0] = x
        else:
            pfmiss[r, 0] += 1
    counters[0] = nc
    counters[1] += n_rej
    pstate[1] = nd
    return stop


@kernel
def cube_gather_pos(cells, rows, dirty, layout, ix, nd, new_from, n):
    """Copy rows to compact cells, the count without its epoch tag: the touched rows
    ``dirty_pos[:nd]`` to the cells of their keys (``index[dirty_key[j]]``), and the rows of
    the new cells ``new_from..n-1`` (row from ``cell_key``, as ``cube_key_pos``).

    ``cells`` (``PosRows``, compact) is written from ``rows`` (``PosRows``, positional);
    ``dirty`` is the ``PosDirty`` list, ``layout`` the ``PosLayout`` of the keys, ``ix`` the
    ``CellIndex`` (``index`` and ``cell_key`` are read)."""
    dirty_pos, dirty_key, _ = dirty
    _, index, _, _, cell_key, _ = ix
    shift, mask, mstride = layout
    pcnt, pfmiss, pfsum, pfmin, pfmax = rows
    cnt, fmiss, fsum, fmin, fmax = cells
    nf = pfsum.shape[1]
    d = shift.shape[0]
    for j in range(nd + n - new_from):
        if j < nd:
            r = dirty_pos[j]
            c = index[dirty_key[j]]
        else:
            c = new_from + j - nd
            k = cell_key[c]
            r = 0
            for t in range(d):
                r += ((k >> shift[t]) & mask[t]) * mstride[t]
        cnt[c] = pcnt[r] & POS_CNT_MASK
        for f in range(nf):
            fmiss[c, f] = pfmiss[r, f]
            fsum[c, f] = pfsum[r, f]
            fmin[c, f] = pfmin[r, f]
            fmax[c, f] = pfmax[r, f]


@kernel
def cube_accumulate(ix, cells, params, batch, start, limit):
    """Accumulate events ``start..n-1`` of a batch into a cell table.

    Parameters
    ----------
    ix : CellIndex
        The cell table index (module notes), updated in place (``counters`` is
        ``[n_cells, n_rejected]``).
    cells : CellMeasures
        Cell measure arrays, updated in place (``fmiss`` counts missing values: valid values of a
        field = ``cnt - fmiss``).
    params : AccumParams
        Rows of the value fields (and which keep moments), of the distinct-count hashes and of the
        percentile fields, the HyperLogLog precision and the percentile sketch parameters.
    batch : EventBatch
        Packed keys (``-1`` rejects the row, counted), values (NaN = missing) and hashes.
    start : int
        First event to process.
    limit : int
        Maximum number of cells allowed before the caller must grow the table.

    Returns
    -------
    int
        ``n`` when all events were processed, otherwise the event at which room ran out.
    """
    dense, index, tab_keys, tab_cell, cell_key, counters = ix
    cnt, fmiss, fsum, fmin, fmax, fmean, fm2, hll, qs = cells
    vrows, mom, hrows, p, qrows, q_min, q_inv_log_gamma = params
    keys, vals, hashes = batch
    n = keys.shape[0]
    nf = vrows.shape[0]
    nh = hrows.shape[0]
    nq = qrows.shape[0]
    nbq = qs.shape[2]
    # field 0 is hoisted out of the generic field loop (the common single-field case)
    v0 = vals[vrows[0]] if nf > 0 else np.zeros(0)
    m0 = mom[0] if nf > 0 else False
    n_rej = 0
    stop = n
    if dense and nf <= 1 and nh == 0 and nq == 0 and not m0:
        # the common case has its own small kernel (LLVM optimises its loop better)
        return cube_accumulate_fast(ix, cells, keys, v0, nf == 1, start, limit)
    tmask = tab_keys.shape[0] - 1
    for i in range(start, n):
        if not dense and i + HASH_AHEAD < n:
            # the home slot of the event HASH_AHEAD on: a large hashed table misses the cache at
            # every probe, the prefetch overlaps those misses (no result changes)
            ka = keys[i + HASH_AHEAD]
            if ka >= 0:
                sa = cube_hash_slot(ka, tmask)
                prefetch_row(tab_keys, sa)
                prefetch_row(tab_cell, sa)
        key = keys[i]
        if key < 0:
            n_rej += 1
            continue
        if dense:
            c = index[key]
        else:
            s = cube_probe(key, tab_keys)
            c = tab_cell[s] if tab_keys[s] == key else -1
        if c < 0:
            if counters[0] >= limit:
                stop = i
                break
            c = cube_insert(key, dense, index, tab_keys, tab_cell, cell_key, counters)
        cnt[c] += 1
        if nf > 0:
            v = v0[i]
            if v == v:
                fsum[c, 0] += v
                if v < fmin[c, 0]:
                    fmin[c, 0] = v
                if v > fmax[c, 0]:
                    fmax[c, 0] = v
                if m0:
                    dlt = v - fmean[c, 0]
                    fmean[c, 0] += dlt / (cnt[c] - fmiss[c, 0])
                    fm2[c, 0] += dlt * (v - fmean[c, 0])
            else:
                fmiss[c, 0] += 1
        for f in range(1, nf):
            v = vals[vrows[f], i]
            if v == v:
                fsum[c, f] += v
                if v < fmin[c, f]:
                    fmin[c, f] = v
                if v > fmax[c, f]:
                    fmax[c, f] = v
                if mom[f]:
                    dlt = v - fmean[c, f]
                    fmean[c, f] += dlt / (cnt[c] - fmiss[c, f])
                    fm2[c, f] += dlt * (v - fmean[c, f])
            else:
                fmiss[c, f] += 1
        for h in range(nh):
            hll_add(hll[c, h], hashes[hrows[h], i], p)
        for q in range(nq):
            v = vals[qrows[q], i]
            if v == v:
                qs[c, q, qs_index(v, q_min, q_inv_log_gamma, nbq)] += 1
    counters[1] += n_rej
    return stop


@kernel
def cube_merge_cells(ix, cells, mom, src, src_keys, n_src, start, limit):
    """Merge source cells ``start..n_src-1`` into a table, cell ``s`` going to key ``src_keys[s]``.

    Source and destination hold the same measures. ``src_keys[s] < 0`` skips the cell (filtered
    out). Several source cells may share a destination key (roll-up).

    Parameters
    ----------
    ix : CellIndex
        The destination's index, updated in place.
    cells : CellMeasures
        The destination's measures, updated in place.
    mom : bool (F,)
        Fields that keep moments.
    src : CellMeasures
        The source cells' measures.
    src_keys : int64 (>= n_src,)
        Destination key of each source cell (-1 skips it).
    n_src, start, limit : int
        Source cells, first source cell, most destination cells allowed.

    Returns
    -------
    int
        ``n_src`` when done, otherwise the source cell at which room ran out (``limit`` cells).
    """
    dense, index, tab_keys, tab_cell, cell_key, counters = ix
    cnt, fmiss, fsum, fmin, fmax, fmean, fm2, hll, qs = cells
    s_cnt, s_fmiss, s_fsum, s_fmin, s_fmax, s_fmean, s_fm2, s_hll, s_qs = src
    nf = fmiss.shape[1]
    for s in range(start, n_src):
        key = src_keys[s]
        if key < 0 or s_cnt[s] == 0:
            continue
        c = cube_find(key, dense, index, tab_keys, tab_cell)
        if c < 0:
            if counters[0] >= limit:
                return s
            c = cube_insert(key, dense, index, tab_keys, tab_cell, cell_key, counters)
        for f in range(nf):
            nb = s_cnt[s] - s_fmiss[s, f]
            na = cnt[c] - fmiss[c, f]
            fmiss[c, f] += s_fmiss[s, f]
            if nb == 0:
                continue
            if na == 0:
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
        cnt[c] += s_cnt[s]
        for h in range(hll.shape[1]):
            for j in range(hll.shape[2]):
                if s_hll[s, h, j] > hll[c, h, j]:
                    hll[c, h, j] = s_hll[s, h, j]
        for q in range(qs.shape[1]):
            for j in range(qs.shape[2]):
                qs[c, q, j] += s_qs[s, q, j]
    return n_src


@kernel
def cube_derive_codes(keys, n, plan, j, out):
    """Codes of output dimension ``j`` for the packed keys ``keys[:n]`` into ``out[:n]``.

    Parent keys are packed on power-of-two radices, so the parent code is
    ``(key >> shift[j]) & mask[j]``; then ``code = ((code + a) // b + c) % m`` (skipped for the
    identity), then, if ``t_len[j] > 0``, ``code = tables[t_off[j] + code]`` (tables cover every
    code, checked when the plan is built). ``plan`` is a ``DeriveArgs``.
    """
    shift, mask, a, b, c, m, t_off, t_len, tables = plan
    sh = shift[j]
    mk = mask[j]
    aj, bj, cj, mj = a[j], b[j], c[j], m[j]
    arith = bj != 1 or aj != 0 or cj != 0 or mj != BIG_MOD
    to = t_off[j]
    tl = t_len[j]
    for i in range(n):
        code = (keys[i] >> sh) & mk
        if arith:
            code = ((code + aj) // bj + cj) % mj
        if tl > 0:
            code = tables[to + code]
        out[i] = code


@kernel
def cube_rekey(keys, n, plan, c_stride, out):
    """Re-key cells into another (coarser or derived) key space.

    For every cell ``i < n`` and output dimension ``j``, derive the code
    (``cube_derive_codes``) and pack ``out[i] = sum_j code_j * c_stride[j]``.
    """
    code = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = 0
    for j in range(plan[0].shape[0]):  # plan[0]: DeriveArgs.shift
        cube_derive_codes(keys, n, plan, j, code)
        st = c_stride[j]
        for i in range(n):
            out[i] += code[i] * st


@kernel
def cube_decode(keys, n, plan, out):
    """Codes ``out[j, i]`` of output dimension ``j`` for cell ``i < n`` (``cube_derive_codes``)."""
    for j in range(plan[0].shape[0]):  # plan[0]: DeriveArgs.shift
        cube_derive_codes(keys, n, plan, j, out[j])


@kernel
def cube_reindex(cell_key, n, dense, index, tab_keys, tab_cell):
    """Insert cells ``0..n-1`` into a cleared index (after growth or compaction)."""
    for c in range(n):
        key = cell_key[c]
        if dense:
            index[key] = c
        else:
            s = cube_probe(key, tab_keys)
            tab_keys[s] = key
            tab_cell[s] = c


@kernel
def cube_clear(cell_key, n, dense, index, tab_keys):
    """Empty the index of cells ``0..n-1`` in O(n).

    Hashed tables are cleared in reverse insertion order: when a key is removed, every key
    inserted after it is already gone, so its probe sequence is the one it had at insertion.
    """
    for c in range(n - 1, -1, -1):
        key = cell_key[c]
        if dense:
            index[key] = -1
        else:
            tab_keys[cube_probe(key, tab_keys)] = EMPTY


@kernel
def cube_count_new(keys, n, dense, index, tab_keys, tab_cell):
    """Number of distinct valid keys among ``keys[:n]`` (distinct by construction) not yet present."""
    m = 0
    for i in range(n):
        k = keys[i]
        if k >= 0 and cube_find(k, dense, index, tab_keys, tab_cell) < 0:
            m += 1
    return m
