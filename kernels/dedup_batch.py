"""The duplicate check of one batch in one compiled call (``telcoanalytics.ingest.dedup``'s
``check_rows``): the robust clock, the natural key, the probe and insert into the key set, the
duplicate mark, with no mask arrays (the keys of up to ``CHUNK`` rows are hashed into one buffer,
then probed in one loop). The key sets are those of ``kernels.dedup``.

Two kernels serve the five sources: :func:`ring_dedup` (equipment counters, flows, QoS probes:
key sets per event-time bucket) and :func:`idset_dedup` (CDRs, complaints: ids in two
generations). Each is compiled once per record type; the key's fields are chosen then
(``kernels.dedup.row_key``, ``row_id``, ``id_times``), so no per-source copy and no per-call cost.
"""

import numpy as np

from ._numba import kernel, prefetch
from .dedup import (
    BUCKET_SLACK,
    EMPTY,
    KEY_BLOCK,
    M_BUCKET,
    M_COUNT,
    M_HAS_MIN,
    OUT_OUTSIDE,
    PREFETCH_AHEAD,
    _clock_push,
    _clock_settle,
    bucket_slot,
    hashset_slot,
    id_times,
    natural_keys_block,
    probe,
    row_id,
)

# ---- one compiled call per batch: clock, natural key, bucket probe and insert, duplicate mark ------
# ``geo`` (int64) of a bucket set: the set's geometry and this call's bookkeeping. ``clock`` (int64)
# is the robust clock of ``recent_clock_observe`` in one array: ``[n_held, head, clock, outliers]``
# followed by the ring of recent valid times.
G_BUCKET_MS, G_HORIZON, G_LO, G_CLOCK, G_N_OUT, G_NEED, G_STEP, G_CODE, G_FIELD, G_HI = range(10)
G_RLO, G_EXTEND, G_KEEP = range(10, 13)
"""The ring's lowest bucket (``<= G_LO``: buckets ``G_RLO .. G_LO - 1`` are behind the horizon but
kept until the clock reaches ``G_KEEP``: the older rows of a call spanning more than the horizon),
and whether this call may create buckets there."""
G_ACC = 13
"""Accepted rows copied so far by :func:`ring_dedup_compact` (-1: no row rejected yet, none copied)."""
G_SIZE = 14
NEED_NONE, NEED_RING, NEED_CAP, NEED_EMPTY = range(4)
MAX_RING_BUCKETS = 1 << 11
"""Most buckets one call may hold (the ring's largest size)."""


@kernel
def _geometry(geo, n_ring, t_min, t_max):
    """This call's ring ``lo .. hi`` (``geo[G_LO]``, ``geo[G_HI]``) from the clock (or, before it is
    set, from the active rows' times ``t_min .. t_max``); False when the ring is too small for it
    (``geo[G_NEED] = NEED_RING``, the caller grows it and calls again)."""
    b_ms = geo[G_BUCKET_MS]
    h = geo[G_HORIZON]
    c = geo[G_CLOCK]
    lo = geo[G_LO]
    if c != EMPTY:
        hi = (c + h) // b_ms
        lo = (c - h) // b_ms if lo == EMPTY else max(lo, (c - h) // b_ms)
    else:
        hi = t_max // b_ms
        if lo == EMPTY:
            lo = max(min(t_min // b_ms, hi), hi - MAX_RING_BUCKETS + 1)
    lo = min(lo, hi)
    geo[G_LO] = lo
    geo[G_HI] = hi
    rlo = geo[G_RLO]
    if rlo == EMPTY or rlo > lo or (geo[G_KEEP] == EMPTY and (geo[G_EXTEND] & 1) == 0):
        rlo = lo  # nothing kept behind the horizon
    geo[G_RLO] = rlo
    if hi - rlo + 1 > n_ring:
        geo[G_NEED] = NEED_RING
        return False
    return True


@kernel
def _acc_start(rows, i, eidx, acc, acc_eidx):
    """Row ``i`` is the batch's first rejected row: the rows before it, all kept, are copied to
    ``acc`` (and their element indices to ``acc_eidx``). Returns the rows copied."""
    for p in range(i):
        acc[p] = rows[p]
    if eidx is not None:
        for p in range(i):
            acc_eidx[p] = eidx[p]
    return i


@kernel
def _acc_keep(rows, i, j, eidx, acc, acc_eidx):
    """Row ``i`` is kept: copied to ``acc[j]`` (its element index to ``acc_eidx[j]``); returns ``j + 1``."""
    acc[j] = rows[i]
    if eidx is not None:
        acc_eidx[j] = eidx[i]
    return j + 1


CHUNK = 1 << 16
"""Rows whose keys are hashed (``KEY_BLOCK`` at a time) into one buffer before their probes run in
one loop: long uninterrupted hash and probe loops are cheaper than alternating them every
``KEY_BLOCK`` rows (a buffer that stays in the L1 cache), and the buffer stays within the L2 cache
(512 KiB)."""


@kernel
def _ring_chunk(
    keys,
    times,
    rows_i,
    m,
    geo,
    tables,
    bmeta,
    out_code,
    out_field,
    out_flag,
    i0=0,
    rows=None,
    eidx=None,
    acc=None,
    acc_eidx=None,
):
    """Check and insert the first ``m`` buffered rows (key, time, row number) into the buckets of
    their event times; ``rows_i`` None: the rows ``i0 .. i0 + m - 1`` (``times`` their times).
    Returns -1 when done, else the row number of the first row not done because its bucket is
    full (``geo[G_NEED] = NEED_CAP``). ``acc`` not None: the rows kept so far are copied there as
    they are decided (see :func:`ring_dedup_compact`)."""
    b_ms = geo[G_BUCKET_MS]
    n_acc = geo[G_ACC]
    lo = geo[G_LO]
    rlo = geo[G_RLO]
    extend = (geo[G_EXTEND] & 1) != 0
    touched = False
    code = geo[G_CODE]
    fld = geo[G_FIELD]
    n_ring = tables.shape[0]
    rmask = n_ring - 1
    cap = tables.shape[1]
    mask = cap - 1
    limit = (7 * (cap // BUCKET_SLACK)) // 10
    t_lo = 1
    t_hi = 0  # event times of the bucket of the previous row (rows come mostly in time order)
    r = 0
    outside = True
    count = 0  # keys in bucket row r, kept in a register while its rows come (bmeta[r] written back)
    n_out = 0
    for q in range(m):
        if rows_i is None:  # (decided when compiled)
            i = i0 + q
        else:
            i = rows_i[q]
        if out_code[i] != 0:  # rejected by an earlier check (or a duplicate marked before)
            if acc is not None and n_acc < 0:
                n_acc = _acc_start(rows, i, eidx, acc, acc_eidx)
            continue
        t = times[q]
        if t < t_lo or t >= t_hi:
            if not outside:
                bmeta[r, M_COUNT] = count
            b = t // b_ms
            t_lo = b * b_ms
            t_hi = t_lo + b_ms
            # buckets lo.. in the ring; rlo..lo-1 kept from a large call (new ones only in such a call)
            outside = b < rlo or b - rlo >= n_ring
            if not outside:
                r = b & rmask
                if b < lo and bmeta[r, M_BUCKET] != b and not extend:
                    outside = True
                elif b < lo:
                    touched = True
                if not outside and bmeta[r, M_BUCKET] != b:  # a fresh row, or one with an expired bucket: clear it
                    for j in range(cap):
                        tables[r, j] = EMPTY
                    bmeta[r, M_BUCKET] = b
                    bmeta[r, M_COUNT] = 0
                    bmeta[r, M_HAS_MIN] = 0
                count = bmeta[r, M_COUNT]
        if outside:
            out_flag[i] = OUT_OUTSIDE
            n_out += 1
            if acc is not None and n_acc >= 0:  # kept for now (the caller's side set decides it)
                n_acc = _acc_keep(rows, i, n_acc, eidx, acc, acc_eidx)
            continue
        k = keys[q]
        if k == EMPTY:
            if bmeta[r, M_HAS_MIN] != 0:
                out_code[i] = code
                out_field[i] = fld
                if acc is not None and n_acc < 0:
                    n_acc = _acc_start(rows, i, eidx, acc, acc_eidx)
            else:
                bmeta[r, M_HAS_MIN] = 1
                count += 1
                if acc is not None and n_acc >= 0:
                    n_acc = _acc_keep(rows, i, n_acc, eidx, acc, acc_eidx)
            continue
        s = bucket_slot(k, mask)
        while True:
            v = tables[r, s]
            if v == k or v == EMPTY:
                break
            s = (s + 1) & mask
        if v == k:
            out_code[i] = code
            out_field[i] = fld
            if acc is not None and n_acc < 0:
                n_acc = _acc_start(rows, i, eidx, acc, acc_eidx)
        elif count >= limit:
            bmeta[r, M_COUNT] = count
            geo[G_NEED] = NEED_CAP
            geo[G_N_OUT] += n_out
            if touched:
                geo[G_EXTEND] |= 2
            if acc is not None:
                geo[G_ACC] = n_acc
            return i
        else:
            tables[r, s] = k
            count += 1
            if acc is not None and n_acc >= 0:
                n_acc = _acc_keep(rows, i, n_acc, eidx, acc, acc_eidx)
    if acc is not None:
        geo[G_ACC] = n_acc
    if not outside:
        bmeta[r, M_COUNT] = count
    geo[G_N_OUT] += n_out
    if touched:  # rows went to buckets behind the horizon: the caller keeps them a horizon longer
        geo[G_EXTEND] |= 2
    return -1


@kernel
def _clock_batch(times, out_code, clock):
    """The robust clock moved by the rows not rejected yet (``out_code == 0``; the rule of
    :func:`recent_clock_observe`). Returns whether the batch has such a row."""
    n = times.shape[0]
    start = n
    need = clock.shape[0] - 4
    while start > 0 and need > 0:
        start -= 1
        if out_code[start] == 0:
            need -= 1
    for i in range(start, n):
        if out_code[i] == 0:
            _clock_push(times[i], clock)
    _clock_settle(clock)
    return need < clock.shape[0] - 4


@kernel
def valid_ends(times, out_code, out):
    """The event times of the first and the last row not rejected yet (``out_code == 0``) into
    ``out[0]``, ``out[1]``; False when there is none. (Walks in from both ends: no pass over the
    rows.)"""
    n = times.shape[0]
    a = 0
    while a < n and out_code[a] != 0:
        a += 1
    if a == n:
        return False
    z = n - 1
    while out_code[z] != 0:
        z -= 1
    out[0] = times[a]
    out[1] = times[z]
    return True


MAX_COUNTED_BUCKETS = 1 << 16
"""Most buckets :func:`large_call_stats` counts rows in (a call spanning more goes to the caller's
NumPy path)."""


@kernel
def large_call_stats(times, out_code, b_ms, out):
    """The event times of the rows not rejected yet (``out_code == 0``):
    ``out = [count, min, max, first, last, in_order]`` (``in_order`` 1 when no time is below the
    one before it and the rows span at most ``MAX_COUNTED_BUCKETS`` buckets), and, when in order,
    the rows per bucket ``t // b_ms`` from the first row's bucket to the last one's (returned).
    For ``TimeBucketKeySet._prepare_large``: no mask, no copy of the times, one pass for rows in
    order (a second one, plain, when they are not), one division per bucket change."""
    n = times.shape[0]
    a = 0
    while a < n and out_code[a] != 0:
        a += 1
    z = n - 1
    while z > a and out_code[z] != 0:
        z -= 1
    in_order = 1
    size = 1
    if a < n:
        b_first = times[a] // b_ms
        b_last = times[z] // b_ms
        if b_last < b_first or b_last - b_first >= MAX_COUNTED_BUCKETS:
            in_order = 0
        else:
            size = b_last - b_first + 1
    else:
        b_first = 0
    counts = np.zeros(size, dtype=np.int64)
    n_ok = 0
    last = times[a] if a < n else 0
    hi_t = np.iinfo(np.int64).min  # end of the bucket of the previous row
    j = 0
    run = 0  # rows of bucket j not added to counts yet (a register, not a store per row)
    if in_order != 0:
        for i in range(a, n):
            if out_code[i] != 0:
                continue
            t = times[i]
            if t < last:
                in_order = 0
                break
            last = t
            n_ok += 1
            if t >= hi_t:
                counts[j] += run
                run = 0
                j = t // b_ms - b_first
                if j >= size:  # past the last row's bucket: a later row goes back (out of order)
                    in_order = 0
                    break
                hi_t = (j + b_first + 1) * b_ms
            run += 1
    if in_order != 0:
        counts[j] += run
        t_min = times[a] if a < n else np.iinfo(np.int64).max
        t_max = last if a < n else np.iinfo(np.int64).min
    else:  # out of order: count, min, max and last in a plain pass
        n_ok = 0
        t_min = np.iinfo(np.int64).max
        t_max = np.iinfo(np.int64).min
        for i in range(a, n):
            if out_code[i] == 0:
                t = times[i]
                t_min = min(t_min, t)
                t_max = max(t_max, t)
                last = t
                n_ok += 1
    out[0] = n_ok
    out[1] = t_min
    out[2] = t_max
    out[3] = times[a] if a < n else 0
    out[4] = last
    out[5] = in_order
    return counts


@kernel
def _ring_begin(times, out_code, clock, geo, n_ring):
    """First step of a batch: the clock (once per batch, ``geo[G_STEP] == 0``) and the ring's
    geometry. Returns False when the caller must act first (``geo[G_NEED]``)."""
    n = times.shape[0]
    if geo[G_STEP] == 0:
        geo[G_STEP] = 1
        _clock_batch(times, out_code, clock)
        if clock[2] != EMPTY and (geo[G_CLOCK] == EMPTY or clock[2] > geo[G_CLOCK]):
            geo[G_CLOCK] = clock[2]
    t_min = np.iinfo(np.int64).max
    t_max = np.iinfo(np.int64).min
    if geo[G_CLOCK] == EMPTY:  # no clock yet (the first few rows): the ring starts at the oldest
        for i in range(n):
            if out_code[i] == 0:
                t_min = min(t_min, times[i])
                t_max = max(t_max, times[i])
        if t_min > t_max:
            geo[G_NEED] = NEED_EMPTY
            return False
    return _geometry(geo, n_ring, t_min, t_max)


@kernel
def _ring_end(geo):
    """After the last row of a batch: the horizon moves with the clock (``G_LO``), buckets kept
    behind it get a horizon of clock more when this call put rows there, and are released once
    the clock passes ``G_KEEP``; the next batch starts with the clock step."""
    c = geo[G_CLOCK]
    if c != EMPTY:
        geo[G_LO] = max(geo[G_LO], (c - geo[G_HORIZON]) // geo[G_BUCKET_MS])
        if geo[G_EXTEND] != 0:
            keep = c + geo[G_HORIZON]
            geo[G_KEEP] = keep if geo[G_KEEP] == EMPTY else max(geo[G_KEEP], keep)
    geo[G_EXTEND] = 0
    if geo[G_KEEP] == EMPTY or (c != EMPTY and c >= geo[G_KEEP]):
        geo[G_RLO] = geo[G_LO]
        geo[G_KEEP] = EMPTY
    geo[G_STEP] = 0


@kernel
def ring_dedup(rows, start, clock, geo, tables, bmeta, out_code, out_field, out_flag):
    """Duplicate check of a batch of ``records.EQUIP_DTYPE``, ``FLOW_DTYPE`` or ``QOS_DTYPE`` rows
    (the sources whose natural key holds the event time; the key: :func:`row_key`, chosen by the
    record type when the kernel is compiled) in one compiled pass.

    Every row not rejected yet (``out_code == 0``) moves the robust clock (see
    :func:`recent_clock_observe`), then has its natural key hashed and checked against, and
    inserted into, the hash table of its event-time bucket; duplicates get
    ``out_code = geo[G_CODE]``, ``out_field = geo[G_FIELD]``. No key array is built.

    Parameters
    ----------
    rows : structured array (n,)
    start : int
        First row to do (0, or the row returned by the previous call of the same batch).
    clock : int64 (4 + w,), the robust clock, updated in place
    geo : int64 (G_SIZE,), geometry and bookkeeping (the ``G_*`` indices), updated in place;
        ``geo[G_STEP]`` is 0 at the start of a batch
    tables, bmeta : the ring of bucket tables (see :func:`bucketset_insert`), updated in place
    out_code, out_field : int8 (n,), the rows' first failure so far, updated in place
    out_flag : int8 (n,), zeros; rows outside the ring get ``OUT_OUTSIDE`` (left to the caller,
        counted in ``geo[G_N_OUT]``)

    Returns
    -------
    int
        ``n`` when the batch is done; else where to resume after the caller did what
        ``geo[G_NEED]`` asks (grow the ring or the tables; ``NEED_EMPTY``: no active row).
    """
    return _ring_dedup(rows, start, clock, geo, tables, bmeta, out_code, out_field, out_flag, None, None, None)


@kernel
def ring_dedup_compact(rows, start, clock, geo, tables, bmeta, out_code, out_field, out_flag, eidx, acc, acc_eidx):
    """:func:`ring_dedup` that also gathers the batch's kept rows as it decides them, while they
    are in the L1 cache (instead of a later pass over the batch that reads every row again).

    ``acc`` (n,) of the rows' record type receives the rows whose ``out_code`` is 0 after the
    check, in order, and ``acc_eidx`` (n,) their ``eidx`` (the rows' element indices; both None:
    no indices). Nothing is copied until the batch's first rejected row: ``geo[G_ACC]`` is then
    the number of rows copied, or -1 when every row was kept (the batch itself is the result).
    Rows outside the ring (``out_flag``) are copied as kept: when ``geo[G_N_OUT]`` is not 0 the
    caller's side set may reject some of them, and ``acc`` is then not the answer.
    """
    return _ring_dedup(rows, start, clock, geo, tables, bmeta, out_code, out_field, out_flag, eidx, acc, acc_eidx)


@kernel
def _ring_dedup(rows, start, clock, geo, tables, bmeta, out_code, out_field, out_flag, eidx, acc, acc_eidx):
    """The body of :func:`ring_dedup` and :func:`ring_dedup_compact`."""
    geo[G_NEED] = NEED_NONE
    if start == 0:
        geo[G_N_OUT] = 0
        geo[G_ACC] = -1
        if not _ring_begin(rows["ts_ms"], out_code, clock, geo, tables.shape[0]):
            if geo[G_NEED] == NEED_EMPTY:
                geo[G_STEP] = 0
            return 0
    n = rows.shape[0]
    size = min(CHUNK, max(1, n - start))
    keys = np.empty(size, dtype=np.int64)
    buf = np.empty((3, KEY_BLOCK), dtype=np.int64)
    tcol = rows["ts_ms"]
    i = start
    while i < n:
        m = min(size, n - i)
        # every row of the chunk hashed in plain loops (~4x cheaper than hashing only the rows
        # not rejected yet, whose test and packing keep the loop slow); the probe loop skips the
        # rejected ones
        for q0 in range(0, m, KEY_BLOCK):
            natural_keys_block(rows, i + q0, min(KEY_BLOCK, m - q0), buf, keys[q0 : min(m, q0 + KEY_BLOCK)])
        stop = _ring_chunk(
            keys,
            tcol[i : i + m],
            None,
            m,
            geo,
            tables,
            bmeta,
            out_code,
            out_field,
            out_flag,
            i,
            rows,
            eidx,
            acc,
            acc_eidx,
        )
        if stop >= 0:
            return stop
        i += m
    _ring_end(geo)
    return n


ring_dedup_equip = ring_dedup_flow = ring_dedup_qos = ring_dedup
"""(The names by source: one kernel serves the three.)"""


# ---- one compiled call per batch for ids (CDR record ids, complaint ticket ids): DedupSet ------------
# ``ds`` (int64): ``[horizon_ms (-1: none), current generation's start (EMPTY: unset), code, field,
# need, step]``; the tables are those of ``telcoanalytics.ingest.dedup.DedupSet``.
D_HORIZON, D_START, D_CODE, D_FIELD, D_NEED, D_STEP = range(6)
D_SIZE = 6
ID_CHUNK = 2048
"""Rows buffered per probe pass of the id sets (their tables are large: prefetched ahead)."""
NEED_ROTATE, NEED_GROW = 4, 5


@kernel
def _idset_begin(times, out_code, clock, ds):
    """Clock (once per batch) and the generation check of :func:`idset_dedup`; False when the
    caller must act first (``ds[D_NEED]``: rotate the generations, or no active row)."""
    if ds[D_STEP] != 0:
        return True
    ds[D_STEP] = 1
    if not _clock_batch(times, out_code, clock):
        ds[D_NEED] = NEED_EMPTY
        return False
    c = clock[2]
    if c == EMPTY or ds[D_HORIZON] < 0:
        return True
    if ds[D_START] == EMPTY:
        ds[D_START] = c
    elif c >= ds[D_START] + ds[D_HORIZON]:
        ds[D_NEED] = NEED_ROTATE
        return False
    return True


@kernel
def _idset_chunk(buf, rows_i, m, ds, cur, cur_meta, prev, prev_meta, out_code, out_field):
    """Mark the buffered keys (``buf[0]``; their home slots in ``cur`` and ``prev`` in ``buf[1]``
    and ``buf[2]``, prefetched ahead) found in ``prev`` or already in ``cur`` (or earlier in the
    batch) as duplicates; insert the others into ``cur``. Returns -1 when done, else the row number of the first row not done because ``cur``
    reached the load factor 0.7 (``ds[D_NEED] = NEED_GROW``)."""
    cmask = cur.shape[0] - 1
    pmask = prev.shape[0] - 1
    has_prev = prev_meta[0] != 0
    limit = (7 * cur.shape[0]) // 10
    for q in range(m):
        if q + PREFETCH_AHEAD < m:
            prefetch(cur, buf[1, q + PREFETCH_AHEAD])
            if has_prev:
                prefetch(prev, buf[2, q + PREFETCH_AHEAD])
        k = buf[0, q]
        i = rows_i[q]
        if k == EMPTY:
            if (has_prev and prev_meta[1] != 0) or cur_meta[1] != 0:
                out_code[i] = ds[D_CODE]
                out_field[i] = ds[D_FIELD]
            else:
                cur_meta[1] = 1
                cur_meta[0] += 1
            continue
        if has_prev and prev[probe(prev, pmask, k, buf[2, q])] == k:
            out_code[i] = ds[D_CODE]
            out_field[i] = ds[D_FIELD]
            continue
        s = probe(cur, cmask, k, buf[1, q])
        if cur[s] == k:
            out_code[i] = ds[D_CODE]
            out_field[i] = ds[D_FIELD]
        elif cur_meta[0] >= limit:
            ds[D_NEED] = NEED_GROW
            return i
        else:
            cur[s] = k
            cur_meta[0] += 1
    return -1


@kernel
def idset_dedup(rows, start, clock, ds, cur, cur_meta, prev, prev_meta, out_code, out_field):
    """Duplicate id check of a batch of ``records.CDR_DTYPE`` (``record_id``, time ``start_ms``) or
    ``COMPLAINT_DTYPE`` rows (``complaint_id``, time ``ts_ms``; :func:`row_id`, :func:`id_times`,
    chosen by the record type when the kernel is compiled) in one compiled call: the robust clock,
    the generation check, then a lookup in the previous generation
    and an insert into the current one per row not rejected yet (``out_code == 0``), duplicates
    marked ``out_code = ds[D_CODE]``, ``out_field = ds[D_FIELD]``. Returns ``n`` when done, else
    where to resume once the caller did what ``ds[D_NEED]`` asks (see ``DedupSet.check_rows``)."""
    ds[D_NEED] = NEED_NONE
    if start == 0 and not _idset_begin(id_times(rows), out_code, clock, ds):
        return 0
    n = rows.shape[0]
    cmask = cur.shape[0] - 1
    pmask = prev.shape[0] - 1
    has_prev = prev_meta[0] != 0
    size = min(ID_CHUNK, max(1, n - start))
    buf = np.empty((3, size), dtype=np.int64)  # keys, home slots in cur and in prev
    rows_i = np.empty(size, dtype=np.int64)
    i = start
    while i < n:
        m = 0
        while i < n and m < size:
            if out_code[i] == 0:
                k = row_id(rows[i])
                buf[0, m] = k
                buf[1, m] = hashset_slot(k, cmask)
                if has_prev:
                    buf[2, m] = hashset_slot(k, pmask)
                rows_i[m] = i
                m += 1
            i += 1
        stop = _idset_chunk(buf, rows_i, m, ds, cur, cur_meta, prev, prev_meta, out_code, out_field)
        if stop >= 0:
            return stop
    return n


idset_dedup_cdr = idset_dedup_complaint = idset_dedup
"""(The names by source: one kernel serves the two.)"""
