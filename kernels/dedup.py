"""Open-addressing int64 hash sets for duplicate detection (record ids, natural keys per time bucket).

The table is an int64 array whose length is a power of two; empty slots hold ``EMPTY``
(``-2**63``). Because that value cannot be told apart from an empty slot, whether the key
``-2**63`` itself was inserted is kept in ``meta[1]``; ``meta[0]`` is the number of keys stored.
Linear probing; the caller keeps the load factor at or below 0.7 (see
``telcoanalytics.ingest.ingestor.DedupSet``), so a probe sequence always ends at an empty slot and
stays short (about 4 slots for a new key at 0.7, mostly within one 64-byte cache line).

The hash is a 32-bit murmur-style finaliser computed with int64 arithmetic whose products stay
below ``2**63`` (31-bit multipliers on 32-bit halves), so the same code runs compiled and as
plain Python under ``NUMBA_DISABLE_JIT=1`` without integer-overflow warnings.
"""

import numba
import numpy as np
from numba.extending import overload

from ._numba import SAFE_FASTMATH, kernel, prefetch

EMPTY = np.iinfo(np.int64).min
PREFETCH_AHEAD = 16
"""How many keys ahead insert/contains prefetch the home slot (tables beyond the caches)."""


@kernel
def hashset_slot(key, mask):
    """Home slot of ``key`` in a table of ``mask + 1`` slots."""
    lo = key & 0xFFFFFFFF
    hi = (key >> 32) & 0xFFFFFFFF
    h = ((lo * 0x5BD1E995) & 0xFFFFFFFF) ^ ((hi * 0x27D4EB2F) & 0xFFFFFFFF)
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & 0xFFFFFFFF
    h ^= h >> 12
    h = (h * 0x297A2D39) & 0xFFFFFFFF
    h ^= h >> 15
    # fold the high half of the key in again so keys differing only above bit 32 spread too
    h ^= (hi >> 7) ^ (lo >> 13)
    return h & mask


@kernel
def probe(table, mask, k, s):
    """Linear probing from slot ``s``: the first slot holding ``k`` or ``EMPTY`` (the load factor
    keeps an empty slot in every probe sequence, so this ends)."""
    while True:
        t = table[s]
        if t == k or t == EMPTY:
            return s
        s = (s + 1) & mask


@kernel
def _home_slots(keys, mask):
    """Home slot of every key (one sequential pass, so the probes can be prefetched ahead)."""
    out = np.empty(keys.shape[0], dtype=np.int64)
    for i in range(keys.shape[0]):
        out[i] = hashset_slot(keys[i], mask)
    return out


@kernel
def hashset_insert(keys, active, table, meta, out_dup):
    """Insert the active keys in order; mark keys already present (in the table or earlier in
    this batch) as duplicates.

    Parameters
    ----------
    keys : int64 array (n,)
    active : bool array (n,)
        Rows to consider; inactive rows are left untouched in ``out_dup`` and not inserted.
    table : int64 array (capacity,), capacity a power of two, updated in place
    meta : int64 array (2,), ``[n_keys, has_min_key]``, updated in place
    out_dup : bool array (n,), set to True for active keys that were already present

    Returns
    -------
    int
        Number of keys newly inserted.
    """
    mask = table.shape[0] - 1
    n = keys.shape[0]
    home = _home_slots(keys, mask)
    n_new = 0
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            prefetch(table, home[i + PREFETCH_AHEAD])
        if not active[i]:
            continue
        k = keys[i]
        if k == EMPTY:
            if meta[1] != 0:
                out_dup[i] = True
            else:
                meta[1] = 1
                meta[0] += 1
                n_new += 1
            continue
        s = probe(table, mask, k, home[i])
        if table[s] == k:
            out_dup[i] = True
        else:
            table[s] = k
            meta[0] += 1
            n_new += 1
    return n_new


@kernel
def hashset_contains(keys, active, table, meta, out_found):
    """Set ``out_found[i] = True`` for each active key present in the table (no insertion)."""
    mask = table.shape[0] - 1
    n = keys.shape[0]
    home = _home_slots(keys, mask)
    for i in range(n):
        if i + PREFETCH_AHEAD < n:
            prefetch(table, home[i + PREFETCH_AHEAD])
        if not active[i]:
            continue
        k = keys[i]
        if k == EMPTY:
            if meta[1] != 0:
                out_found[i] = True
            continue
        if table[probe(table, mask, k, home[i])] == k:
            out_found[i] = True


@kernel
def hashset_rehash(old_table, new_table):
    """Re-insert every stored key of ``old_table`` into the empty ``new_table`` (a larger
    power of two). The ``EMPTY`` key is tracked in ``meta`` and needs no slot."""
    mask = new_table.shape[0] - 1
    for j in range(old_table.shape[0]):
        k = old_table[j]
        if k == EMPTY:
            continue
        new_table[probe(new_table, mask, k, hashset_slot(k, mask))] = k


# ---- key sets per event-time bucket (natural keys that contain the event time) --------------------
# A ring of ``R`` open-addressing tables (rows of a 2-D array), one per event-time bucket; bucket
# ``b`` lives in row ``b & (R - 1)``. ``bmeta[r] = [bucket id (EMPTY: none), keys stored,
# has_min_key]``. A batch's rows fall in a few recent buckets, so its probes hit small tables that
# stay in cache instead of one table of every key of the horizon.
M_BUCKET, M_COUNT, M_HAS_MIN = range(3)
OUT_DUP, OUT_OUTSIDE = 1, 2
BUCKET_SLACK = 2
"""Bucket tables have this many times the slots of the load-0.7 rule (a table grows when its keys
reach 0.7 of ``cap // BUCKET_SLACK``): probes at load <= 0.35 end sooner, with fewer
mispredicted branches. Every size test uses ``cap // BUCKET_SLACK``, so the tables grow (and a
call counts as large) exactly when they did with slack 1."""


@kernel
def bucket_slot(key, mask):
    """Home slot of ``key`` in a bucket table of ``mask + 1`` slots. The keys of the bucket sets are
    natural-key hashes (:func:`natural_key_hash`, all 64 bits mixed), so folding the high half
    onto the low one spreads them; cheaper than :func:`hashset_slot` (ids that are not hashes)."""
    return (key ^ (key >> 32)) & mask


@kernel
def bucketset_insert(keys, t_ms, active, start, geometry, tables, bmeta, out):
    """Check and insert the active rows ``start..`` into the bucket of their event time.

    Parameters
    ----------
    keys, t_ms : int64 (n,)
        Key and event time of each row.
    active : bool (n,)
    start : int
        First row to look at (rows before it were done by an earlier call).
    geometry : int64 (3,)
        ``[bucket_ms, lo, n_outside]``: bucket width and the lowest bucket held; rows in buckets
        outside ``lo .. lo + R - 1`` get ``out = OUT_OUTSIDE``, are counted in ``n_outside`` and
        are left to the caller.
    tables : int64 (R, cap), R and cap powers of two, updated in place
    bmeta : int64 (R, 3), updated in place (see the module notes)
    out : int8 (n,), set to ``OUT_DUP`` for a key already in its bucket (or earlier in the batch)

    Returns
    -------
    int
        ``n`` when every row was done; else the row at which a bucket reached the load factor
        0.7 of ``cap // BUCKET_SLACK`` (the caller grows ``cap`` and calls again from there).
    """
    bucket_ms = geometry[0]
    lo = geometry[1]
    n_ring = tables.shape[0]
    cap = tables.shape[1]
    rmask = n_ring - 1
    mask = cap - 1
    limit = (7 * (cap // BUCKET_SLACK)) // 10
    t_lo = 1
    t_hi = 0  # event times of the bucket of the previous row (rows come mostly in time order)
    r = 0
    outside = False
    for i in range(start, keys.shape[0]):
        if not active[i]:
            continue
        t = t_ms[i]
        if t < t_lo or t >= t_hi:
            b = t // bucket_ms
            t_lo = b * bucket_ms
            t_hi = t_lo + bucket_ms
            outside = b < lo or b - lo >= n_ring
            if not outside:
                r = b & rmask
                if bmeta[r, M_BUCKET] != b:  # a fresh row, or one that held an expired bucket: clear it
                    for j in range(cap):
                        tables[r, j] = EMPTY
                    bmeta[r, M_BUCKET] = b
                    bmeta[r, M_COUNT] = 0
                    bmeta[r, M_HAS_MIN] = 0
        if outside:
            out[i] = OUT_OUTSIDE
            geometry[2] += 1
            continue
        k = keys[i]
        if k == EMPTY:
            if bmeta[r, M_HAS_MIN] != 0:
                out[i] = OUT_DUP
            else:
                bmeta[r, M_HAS_MIN] = 1
                bmeta[r, M_COUNT] += 1
            continue
        s = bucket_slot(k, mask)
        while True:
            v = tables[r, s]
            if v == k or v == EMPTY:
                break
            s = (s + 1) & mask
        if v == k:
            out[i] = OUT_DUP
        else:
            if bmeta[r, M_COUNT] >= limit:
                return i
            tables[r, s] = k
            bmeta[r, M_COUNT] += 1
    return keys.shape[0]


@kernel
def bucketset_move(old_tables, old_meta, lo, new_tables, new_meta):
    """Re-insert every bucket of ``old`` with id ``>= lo`` into the empty ring ``new`` (any R and
    cap, powers of two, large enough); ``new_meta[:, 0]`` ``EMPTY`` (a row of ``new_tables`` is
    cleared when it takes a bucket: rows no bucket holds may be uninitialised).
    Returns the number of buckets moved."""
    rmask = new_tables.shape[0] - 1
    mask = new_tables.shape[1] - 1
    moved = 0
    for r in range(old_tables.shape[0]):
        b = old_meta[r, M_BUCKET]
        if b == EMPTY or b < lo:
            continue
        nr = b & rmask
        for c in range(3):
            new_meta[nr, c] = old_meta[r, c]
        for j in range(new_tables.shape[1]):
            new_tables[nr, j] = EMPTY
        for j in range(old_tables.shape[1]):
            k = old_tables[r, j]
            if k == EMPTY:
                continue
            s = bucket_slot(k, mask)
            while new_tables[nr, s] != EMPTY:
                s = (s + 1) & mask
            new_tables[nr, s] = k
        moved += 1
    return moved


@kernel
def hashmap_build(keys, values, table_keys, table_vals):
    """Fill an empty map (``table_keys`` all ``EMPTY``, capacity a power of two above
    ``len(keys)``) with ``keys[i] -> values[i]``; distinct keys, none equal to ``EMPTY``.
    Returns the number of keys stored."""
    mask = table_keys.shape[0] - 1
    for i in range(keys.shape[0]):
        s = probe(table_keys, mask, keys[i], hashset_slot(keys[i], mask))
        table_keys[s] = keys[i]
        table_vals[s] = values[i]
    return keys.shape[0]


@kernel
def hashmap_lookup(q, table_keys, table_vals, missing, out):
    """``out[i]`` = the value of key ``q[i]``, or ``missing`` when it is not in the map."""
    mask = table_keys.shape[0] - 1
    for i in range(q.shape[0]):
        k = q[i]
        r = missing
        if k != EMPTY:
            s = probe(table_keys, mask, k, hashset_slot(k, mask))
            if table_keys[s] == k:
                r = table_vals[s]
        out[i] = r
    return out


# ---- natural keys ------------------------------------------------------------------------------
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)


@kernel
def _fmix64(x):
    """splitmix64's finaliser (a bijection of uint64)."""
    x ^= x >> np.uint64(30)
    x *= _K2
    x ^= x >> np.uint64(27)
    x *= _K3
    x ^= x >> np.uint64(31)
    return x


@kernel
def natural_key_hash(a, b, c, out):
    """``out[i]`` = a 64-bit hash of ``(a[i], b[i], c[i])`` (int64 columns) as int64.

    Each column goes through a bijective mixer before it is combined, so keys that differ in a
    few bits of any column spread over all 64 bits; two distinct keys share a hash with
    probability about ``2**-64``. uint64 arithmetic wraps by design: callers running this as
    plain Python (``NUMBA_DISABLE_JIT=1``) wrap the call in ``np.errstate(over="ignore")``.
    """
    for i in range(a.shape[0]):
        out[i] = _mix3(a[i], b[i], c[i])


@kernel
def _mix3(a, b, c):
    """The hash of one key ``(a, b, c)`` (see :func:`natural_key_hash`)."""
    h = _fmix64(np.uint64(a) + _K1)
    h = _fmix64(h ^ (np.uint64(b) * _K1 + _K2))
    h = _fmix64(h ^ (np.uint64(c) * _K1 + _K3))
    return np.int64(h)


@kernel
def _key_equip(r):
    """Natural key of a ``records.EQUIP_DTYPE`` row: ``(element_id, metric_id, ts_ms)``."""
    return _mix3(np.int64(r["element_id"]), np.int64(r["metric_id"]), np.int64(r["ts_ms"]))


@kernel
def _key_flow(r):
    """Natural key of a ``records.FLOW_DTYPE`` row: ``(src_element_id, dst_element_id, ts_ms)``."""
    return _mix3(np.int64(r["src_element_id"]), np.int64(r["dst_element_id"]), np.int64(r["ts_ms"]))


@kernel
def _key_qos(r):
    """Natural key of a ``records.QOS_DTYPE`` row: ``(element_id, ts_ms, 0)``."""
    return _mix3(np.int64(r["element_id"]), np.int64(r["ts_ms"]), np.int64(0))


def _key_of(names):
    """The natural-key function of the records whose fields are ``names``."""
    if "metric_id" in names:
        return _key_equip
    if "src_element_id" in names:
        return _key_flow
    if "element_id" in names and "ts_ms" in names:
        return _key_qos
    raise TypeError(f"no natural key by event time for records with fields {sorted(names)}")


def row_key(r):
    """The :func:`natural_key_hash` of one canonical record of equipment counters, flows or QoS
    probes, chosen by its fields (compiled: once per record type, at compile time)."""
    return _key_of(r.dtype.names)(r)


if not numba.config.DISABLE_JIT:  # pragma: no cover  (typing only runs compiled; pass 1 runs without JIT)

    @overload(row_key, jit_options={"fastmath": SAFE_FASTMATH})
    def _row_key_typed(r):
        key = _key_of(r.fields)
        return lambda r: key(r)


_ID_KEYS = (("record_id", "start_ms"), ("complaint_id", "ts_ms"))
"""The sources whose natural key is an id: (id field, event-time field)."""


def _id_fields(names):
    """The (id, event time) fields of the records whose fields are ``names``."""
    for key, t in _ID_KEYS:
        if key in names:
            return key, t
    raise TypeError(f"no id key for records with fields {sorted(names)}")


def row_id(r):
    """The id of one CDR (``record_id``) or complaint (``complaint_id``), chosen by the fields."""
    return r[_id_fields(r.dtype.names)[0]]


def id_times(rows):
    """The event times of CDRs (``start_ms``) or complaints (``ts_ms``): a view."""
    return rows[_id_fields(rows.dtype.names)[1]]


if not numba.config.DISABLE_JIT:  # pragma: no cover  (typing only runs compiled; pass 1 runs without JIT)

    @overload(row_id)
    def _row_id_typed(r):
        key = _id_fields(r.fields)[0]
        return lambda r: r[key]

    @overload(id_times)
    def _id_times_typed(rows):
        t = _id_fields(rows.dtype.fields)[1]
        return lambda rows: rows[t]


KEY_BLOCK = 256
"""Rows whose key fields are gathered into contiguous buffers before they are hashed: the hash
loop over contiguous int64 (written through a view of the output) then vectorises, about 1.8x
cheaper for flows and QoS probes than hashing from the strided fields of the records."""


@kernel
def _block_equip(rows, i0, k, buf, o):
    """Keys of equipment counters ``i0 .. i0 + k - 1`` into ``o`` (``k <= KEY_BLOCK``; ``buf``
    int64 (3, KEY_BLOCK) scratch)."""
    e, m, t = rows["element_id"], rows["metric_id"], rows["ts_ms"]
    a, b, c = buf[0], buf[1], buf[2]
    for q in range(k):
        a[q] = e[i0 + q]
        b[q] = m[i0 + q]
        c[q] = t[i0 + q]
    for q in range(k):
        o[q] = _mix3(a[q], b[q], c[q])


@kernel
def _block_flow(rows, i0, k, buf, o):
    """Keys of flows ``i0 .. i0 + k - 1`` into ``o`` (see :func:`_block_equip`)."""
    s, d, t = rows["src_element_id"], rows["dst_element_id"], rows["ts_ms"]
    a, b, c = buf[0], buf[1], buf[2]
    for q in range(k):
        a[q] = s[i0 + q]
        b[q] = d[i0 + q]
        c[q] = t[i0 + q]
    for q in range(k):
        o[q] = _mix3(a[q], b[q], c[q])


@kernel
def _block_qos(rows, i0, k, buf, o):
    """Keys of QoS probes ``i0 .. i0 + k - 1`` into ``o`` (see :func:`_block_equip`)."""
    e, t = rows["element_id"], rows["ts_ms"]
    a, c = buf[0], buf[2]
    for q in range(k):
        a[q] = e[i0 + q]
        c[q] = t[i0 + q]
    for q in range(k):
        o[q] = _mix3(a[q], c[q], np.int64(0))


def _block_of(names):
    """The :func:`natural_keys_block` kernel of the records whose fields are ``names``."""
    return {_key_equip: _block_equip, _key_flow: _block_flow, _key_qos: _block_qos}[_key_of(names)]


def natural_keys_block(rows, i0, k, buf, out):
    """``out[q]`` = :func:`row_key` of ``rows[i0 + q]`` for ``q < k <= KEY_BLOCK`` (``buf``: int64
    (3, KEY_BLOCK) scratch, allocated once by the caller); the kernel is chosen by the record type."""
    _block_of(rows.dtype.names)(rows, i0, k, buf, out)


@kernel
def _keys_blocks(rows, out):
    """:func:`natural_keys` block by block."""
    buf = np.empty((3, KEY_BLOCK), np.int64)
    n = rows.shape[0]
    for i0 in range(0, n, KEY_BLOCK):
        k = min(KEY_BLOCK, n - i0)
        natural_keys_block(rows, i0, k, buf, out[i0 : i0 + k])


def natural_keys(rows, out):
    """``out[i]`` = :func:`row_key` of each row of a ``records.EQUIP_DTYPE``, ``FLOW_DTYPE`` or
    ``QOS_DTYPE`` array (the structured array in one argument: one compiled call; the kernel is
    chosen by the record type, at compile time when called from a kernel)."""
    _block_of(rows.dtype.names)  # (TypeError for records without such a key)
    _keys_blocks(rows, out)


if not numba.config.DISABLE_JIT:  # pragma: no cover  (typing only runs compiled; pass 1 runs without JIT)

    @overload(natural_keys_block, jit_options={"fastmath": SAFE_FASTMATH})
    def _natural_keys_block_typed(rows, i0, k, buf, out):
        block = _block_of(rows.dtype.fields)
        return lambda rows, i0, k, buf, out: block(rows, i0, k, buf, out)

    @overload(natural_keys, jit_options={"fastmath": SAFE_FASTMATH})
    def _natural_keys_typed(rows, out):
        _block_of(rows.dtype.fields)
        return lambda rows, out: _keys_blocks(rows, out)


natural_keys_equip = natural_keys_flow = natural_keys_qos = natural_keys
"""(The names by source: one kernel serves the three.)"""


# ---- the robust clock of the duplicate horizon ------------------------------------------------------
@kernel
def _clock_push(t, clock):
    """Push one valid event time into the clock's ring of recent times."""
    w = clock.shape[0] - 4
    clock[4 + clock[1]] = t
    clock[1] = (clock[1] + 1) % w
    if clock[0] < w:
        clock[0] += 1


@kernel
def _clock_settle(clock):
    """Move the clock to the ``outliers + 1``-th largest recent time when that is later."""
    k = clock[3] + 1
    m = clock[0]
    if m >= k:
        held = np.sort(clock[4 : 4 + m])
        cand = held[m - k]
        if clock[2] == EMPTY or cand > clock[2]:
            clock[2] = cand


@kernel
def recent_clock_observe(t_ms, ok, clock):
    """Robust clock over the last valid event times: push the valid (``ok``) times of ``t_ms``, in
    order, into the ring of recent times and move the clock to the ``outliers + 1``-th largest time
    in the ring when that is later.

    ``clock`` is int64 ``[n_held, head, clock, outliers, recent times...]`` (clock ``EMPTY`` while
    unset). Only the last ``len(clock) - 4`` valid rows of the batch can matter, so the walk starts
    there. Returns the clock.
    """
    start = t_ms.shape[0]
    need = clock.shape[0] - 4
    while start > 0 and need > 0:
        start -= 1
        if ok[start]:
            need -= 1
    for i in range(start, t_ms.shape[0]):
        if ok[i]:
            _clock_push(t_ms[i], clock)
    _clock_settle(clock)
    return clock[2]
