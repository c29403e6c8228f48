"""Multi-resolution ring buffers of bucket aggregates, aligned to wall-clock buckets.

Cell layout
-----------
All resolutions share one float64 array ``cells`` of shape ``(total_cells, N_AGG)``. Resolution
``r`` (bucket width ``width_ms[r]``, ``n_buckets[r]`` buckets) occupies the rows
``offset[r] + pos * n_slots + slot`` for ring position ``pos = bucket % n_buckets[r]``, where
``bucket = ts_ms // width_ms[r]`` is the absolute (wall-clock aligned) bucket index. The bucket
dimension is outer, so the current bucket of all slots is one contiguous block (time-ordered
streams stay in cache) and a query over all slots reads the ring sequentially.

Columns of a cell (``N_AGG = 7``):

==========  ================================================================
``BUCKET``  absolute bucket index held by the cell (as float64, exact below 2**53); NaN = empty
``COUNT``   number of events
``MEAN``    mean of the values (Welford)
``M2``      sum of squared deviations from the mean (Welford); variance = M2 / COUNT
``MIN``     smallest value
``MAX``     largest value
``LAST``    largest event time in the bucket (ms, float64)
==========  ================================================================

Storing the bucket index per cell makes stale cells recognisable lazily: a cell whose stored
bucket differs from the one a query or update expects is empty for that purpose and is
overwritten on the next write, so a jump of days in event time costs nothing extra (no clearing
pass, O(1) per event). Mean/M2 instead of raw power sums keep the variance exact for values
near 1e9 with a small spread.
"""

import math
from typing import NamedTuple

import numpy as np

from ._numba import kernel, kernel_exact
from .dedup import hashset_slot
from .ewm import ewm_fold, prefetch_at, prefetch_row

RING_LOOKAHEAD = 32
"""Events between locating (and prefetching) a cell and folding into it in ``ring_fold``; a power
of two."""

FAST_DIV_LIMIT = 1 << 52
"""Event times (ms) below this in magnitude take the reciprocal-multiplication bucket path."""

N_AGG = 7
BUCKET, COUNT, MEAN, M2, MIN, MAX, LAST = 0, 1, 2, 3, 4, 5, 6

# status codes written per event by ``window_update``
ACCEPTED, LATE, DUPLICATE, INVALID = 0, 1, 2, 3

NO_TIME = np.iinfo(np.int64).min
"""Empty-slot marker in the dedup time table, and the clock value before any event."""
_I64_MAX = np.iinfo(np.int64).max

# indices of the int64 ``clock`` array
CLOCK_MAX_TS, CLOCK_DEDUP_FILL = 0, 1

# indices of the int64 ``counters`` array
N_ACCEPTED, N_LATE, N_DUPLICATE, N_INVALID = 0, 1, 2, 3


# The NamedTuples name the fields of the tuples ``window_update`` takes; callers pass plain tuples
# (Numba dispatches those through its C fast path, see kernels.cube), the kernel unpacks by position.


class WindowState(NamedTuple):
    """State arrays of ``window_update``, all updated in place."""

    cells: np.ndarray  # float64 (total_cells, N_AGG): the rings of every resolution
    ew_state: np.ndarray  # float64 (n_slots, 1 + 3 n_h): continuous EW state (``kernels.ewm``)
    clock: np.ndarray  # int64 (2,): ``[max_ts, dedup_fill]``
    counters: np.ndarray  # int64 (4,): ``[accepted, late, duplicate, invalid]``
    expired: np.ndarray  # int64 (n_res,): events older than a ring's span, per resolution
    dedup_keys: np.ndarray  # int64 (capacity,): record ids seen (power-of-two capacity)
    dedup_ts: np.ndarray  # int64 (capacity,): their event times, ``NO_TIME`` = empty slot


class WindowParams(NamedTuple):
    """Parameters of ``window_update``."""

    width_ms: np.ndarray  # int64 (n_res,): bucket width per resolution
    n_buckets: np.ndarray  # int64 (n_res,): buckets per ring
    offset: np.ndarray  # int64 (n_res,): first row of each ring in ``cells``
    n_slots: int
    allowed_lateness_ms: int
    use_ids: bool  # drop repeated record ids
    ew_coef: np.ndarray  # float64 (n_h,): ``-ln 2 / half_life_ms`` (may be empty)
    ew_table: np.ndarray  # float64 decay-factor table of ``kernels.ewm.ewm_table`` for ``ew_coef``


class WindowBatch(NamedTuple):
    """One batch of events, in arrival order."""

    ts_ms: np.ndarray  # int64 (n,)
    slot: np.ndarray  # int64 (n,)
    value: np.ndarray  # float64 (n,)
    record_id: np.ndarray  # int64 (n,), ignored unless ``use_ids``


@kernel
def window_update(state, params, batch, status):
    """Fold a batch into the rings of every resolution and the continuous EW state.

    Events are processed in arrival order. For each event:

    1. value not finite -> ``status = INVALID`` (counted, nothing updated);
    2. ``ts < max_ts_seen - allowed_lateness_ms`` (behind the watermark) -> ``LATE``;
    3. ``use_ids`` and the record id was seen before (and is still tracked) -> ``DUPLICATE``;
    4. otherwise ``ACCEPTED``: the watermark clock advances, every resolution whose ring still
       spans the event's bucket is updated (a resolution whose ring no longer reaches back that
       far counts the event in ``expired[r]``), and the EW state is updated.

    The work is done in passes over the batch, each in arrival order: the outcomes (a sequential
    pass over times and values), then :func:`ring_fold` once per resolution, then
    :func:`kernels.ewm.ewm_fold`. Every cell and EW row sees the same sequence of updates as in
    one event-at-a-time loop (bit-identical results); each pass keeps its own prefetch
    lookahead and bucket cache in registers.

    Parameters
    ----------
    state : WindowState
        Rings, EW state, clock, counters, expired counts and the record-id table, updated in
        place; the id table must have load <= 1/2 after the batch (ensured by the caller).
    params : WindowParams
        Resolutions (width, buckets, offset), slots, allowed lateness, whether ids are checked,
        the EW coefficients and their decay table.
    batch : WindowBatch
        Event times, slots, values and record ids.
    status : int8 (n,), output

    Returns
    -------
    int
        Number of accepted events in this batch.
    """
    cells, ew_state, clock, counters, expired, dedup_keys, dedup_ts = state
    width_ms, n_buckets, offset, n_slots, allowed_lateness_ms, use_ids, ew_coef, ew_table = params
    ts_ms, slot, value, record_id = batch
    n_res = width_ms.shape[0]
    n_h = ew_coef.shape[0]
    mask = dedup_keys.shape[0] - 1
    max_ts0 = clock[CLOCK_MAX_TS]
    max_ts = max_ts0
    n_ok = 0
    # pass 1, sequential: the outcome of every event (needs only the clock and the id table)
    for i in range(ts_ms.shape[0]):
        if not math.isfinite(value[i]):
            status[i] = INVALID
            counters[N_INVALID] += 1
            continue
        t = ts_ms[i]
        if max_ts != NO_TIME and t < max_ts - allowed_lateness_ms:
            status[i] = LATE
            counters[N_LATE] += 1
            continue
        if use_ids:
            k = record_id[i]
            p = hashset_slot(k, mask)
            dup = False
            while dedup_ts[p] != NO_TIME:
                if dedup_keys[p] == k:
                    dup = True
                    break
                p = (p + 1) & mask
            if dup:
                status[i] = DUPLICATE
                counters[N_DUPLICATE] += 1
                continue
            dedup_keys[p] = k
            dedup_ts[p] = t
            clock[CLOCK_DEDUP_FILL] += 1
        status[i] = ACCEPTED
        n_ok += 1
        max_ts = max(max_ts, t)  # NO_TIME is the smallest int64
    # one pass per ring and one for the EW state over the accepted events: each pass keeps its
    # own lookahead of prefetched rows and its bucket cache in registers
    for r in range(n_res):
        expired[r] += ring_fold(
            ts_ms, slot, value, status, width_ms[r], n_buckets[r], offset[r], n_slots, max_ts0, cells
        )
    if n_h > 0:
        ewm_fold(ts_ms, slot, value, status, ew_coef, ew_table, ew_state)
    clock[CLOCK_MAX_TS] = max_ts
    counters[N_ACCEPTED] += n_ok
    return n_ok


@kernel
def ring_fold(ts_ms, slot, value, status, width_ms, n_buckets, offset, n_slots, max_ts, cells):
    """Fold the events with ``status == ACCEPTED`` into the ring of one resolution.

    ``max_ts`` is the clock before the batch; it advances with the accepted events exactly as in
    the status pass, so an event older than the ring's span *at its arrival* is not folded in and
    counted (the return value, added to ``expired``). Cells holding another bucket are stale
    and start afresh.

    Software pipeline: the cell of event ``j`` is located and prefetched ``RING_LOOKAHEAD``
    events before it is folded, so the (mostly cold) cache misses overlap with work; located
    cells wait in a small ring buffer. The bucket comes from a cache of the newest bucket when
    the event falls in it, else from a multiplication by the rounded reciprocal of the width
    with a +-1 correction (exact for ``|ts| < 2**52`` ms; integer division beyond): no integer
    division per event, which matters for jittered streams on fine resolutions (a 1 s ring sees
    events of 2-3 different buckets in a row).
    """
    w = width_ms
    nb = n_buckets
    inv_w = 1.0 / w
    inv_nb = 1.0 / nb
    n = ts_ms.shape[0]
    n_exp = 0
    max_b = np.int64(0)  # bucket of max_ts, valid while max_ts < max_b_end
    max_b_end = NO_TIME
    if max_ts != NO_TIME:
        max_b = max_ts // w
        max_b_end = (max_b + 1) * w
    cur_b = NO_TIME  # newest bucket located so far, its ring position and span
    cur_pos = np.int64(0)
    cur_lo = np.int64(0)
    cur_hi = np.int64(0)
    look_mask = RING_LOOKAHEAD - 1
    cb = np.empty(RING_LOOKAHEAD, dtype=np.int64)  # cell row of the located events
    bb = np.empty(RING_LOOKAHEAD, dtype=np.int64)  # bucket of the located events
    for j in range(n + RING_LOOKAHEAD):
        i = j - RING_LOOKAHEAD
        if i >= 0 and status[i] == ACCEPTED:  # fold event i (located at iteration i)
            t = ts_ms[i]
            max_ts = max(max_ts, t)  # NO_TIME is the smallest int64
            if max_ts >= max_b_end:
                max_b = max_ts // w
                max_b_end = (max_b + 1) * w
            b = bb[i & look_mask]
            if b <= max_b - nb:
                n_exp += 1
            else:
                # the cell update, written out (a call per event cost more than the update itself)
                # and branch-free: a stale cell (NaN or older bucket) restarts from x through
                # selects, which gives the same bits as a separate "start afresh" branch but no
                # mispredictions where a share of the events open a cell
                c = cb[i & look_mask]
                x = value[i]
                fb = float(b)
                tf = float(t)
                same = cells[c, BUCKET] == fb
                cnt = (cells[c, COUNT] if same else 0.0) + 1.0
                m = cells[c, MEAN] if same else x
                m2 = cells[c, M2] if same else 0.0
                lo = cells[c, MIN] if same else x
                hi = cells[c, MAX] if same else x
                la = cells[c, LAST] if same else tf
                d = x - m
                m += d / cnt
                cells[c, BUCKET] = fb
                cells[c, COUNT] = cnt
                cells[c, MEAN] = m
                cells[c, M2] = m2 + d * (x - m)
                cells[c, MIN] = min(lo, x)
                cells[c, MAX] = max(hi, x)
                cells[c, LAST] = max(la, tf)
        if j < n:  # locate and prefetch event j
            t = ts_ms[j]
            if cur_lo <= t < cur_hi:
                b = cur_b
                pos = cur_pos
            else:
                if -FAST_DIV_LIMIT < t < FAST_DIV_LIMIT:
                    # quotient estimates off by at most one (rarely): fix them branch-free
                    b = np.int64(math.floor(float(t) * inv_w))
                    rem = t - b * w
                    b += np.int64(rem >= w) - np.int64(rem < 0)
                    pos = b - np.int64(math.floor(float(b) * inv_nb)) * nb
                    pos += nb * (np.int64(pos < 0) - np.int64(pos >= nb))
                else:
                    b = t // w
                    pos = b % nb
                if b > cur_b:
                    cur_b = b
                    cur_pos = pos
                    cur_lo = b * w
                    cur_hi = cur_lo + w
            c = offset + pos * n_slots + slot[j]
            cb[j & look_mask] = c
            bb[j & look_mask] = b
            prefetch_row(cells, c)  # a 56-byte cell often spans two lines
            prefetch_at(cells, c, N_AGG - 1)
    return n_exp


@kernel
def dedup_rebuild(old_keys, old_ts, min_ts, new_keys, new_ts):
    """Re-insert the tracked record ids with ``ts >= min_ts`` into empty new tables.

    Ids of events behind the watermark cannot matter any more (a repeat of them is late anyway),
    so they are dropped here; this bounds the table by the ids inside the allowed lateness.
    Returns the number of ids kept.
    """
    mask = new_keys.shape[0] - 1
    kept = 0
    for j in range(old_keys.shape[0]):
        t = old_ts[j]
        if t == NO_TIME or t < min_ts:
            continue
        k = old_keys[j]
        p = hashset_slot(k, mask)
        while new_ts[p] != NO_TIME:
            p = (p + 1) & mask
        new_keys[p] = k
        new_ts[p] = t
        kept += 1
    return kept


@kernel
def cell_merge(src, cs, dst, cd):
    """Merge cell row ``cs`` of ``src`` into row ``cd`` of ``dst``.

    Same bucket: Chan's pairwise combination of (count, mean, M2), min/max/last combined.
    Different buckets: the newer bucket wins (the older one would have been overwritten in a
    single pass over both inputs too). Empty source cells change nothing.
    """
    bs = src[cs, BUCKET]
    if not (bs == bs):
        return
    bd = dst[cd, BUCKET]
    if not (bd == bd) or bs > bd:
        for j in range(N_AGG):
            dst[cd, j] = src[cs, j]
        return
    if bs < bd:
        return
    n1 = dst[cd, COUNT]
    n2 = src[cs, COUNT]
    n = n1 + n2
    d = src[cs, MEAN] - dst[cd, MEAN]
    dst[cd, MEAN] += d * (n2 / n)
    dst[cd, M2] += src[cs, M2] + d * d * (n1 * n2 / n)
    dst[cd, COUNT] = n
    if src[cs, MIN] < dst[cd, MIN]:
        dst[cd, MIN] = src[cs, MIN]
    if src[cs, MAX] > dst[cd, MAX]:
        dst[cd, MAX] = src[cs, MAX]
    if src[cs, LAST] > dst[cd, LAST]:
        dst[cd, LAST] = src[cs, LAST]


@kernel
def window_merge(src, n_src_slots, dst_of_src, n_buckets, src_offset, dst_offset, n_dst_slots, dst):
    """Merge every cell of ``src`` into ``dst``, mapping source slot ``s`` to ``dst_of_src[s]``.

    With the identity mapping this merges two partitions; with a slot -> group mapping it rolls
    slots up (e.g. elements into their site). Resolutions must be the same in both.
    """
    for r in range(n_buckets.shape[0]):
        for p in range(n_buckets[r]):
            base_s = src_offset[r] + p * n_src_slots
            base_d = dst_offset[r] + p * n_dst_slots
            for s in range(n_src_slots):
                cell_merge(src, base_s + s, dst, base_d + dst_of_src[s])


@kernel_exact
def window_exposure_ms(width_ms, t_query_ms, weights):
    """Weighted exposure ``sum_k weights[k] d_k`` in ms of a query at ``t_query_ms``: ``d_k`` is
    the bucket width, except for the current bucket (``k = 0``), which counts only up to the
    query time (``t_query_ms - start + 1``)."""
    bq = t_query_ms // width_ms
    exposure_ms = 0.0
    for k in range(weights.shape[0]):
        d = float(width_ms)
        if k == 0:
            d = float(t_query_ms - bq * width_ms + 1)
        exposure_ms += weights[k] * d
    return exposure_ms


@kernel_exact
def window_accumulate(cells, offset, n_buckets, n_slots, bq, k_hi, k_lo, weights, slots, acc):
    """Fold the buckets of ages ``k_hi > k >= k_lo`` (age ``k`` = bucket ``bq - k``), oldest first,
    into the per-slot accumulators ``acc`` (float64 ``(5, n_q)``: weighted count, mean, M2, min,
    max; updated in place, start from :data:`ACC_EMPTY`).

    Oldest first, so that folding ``[k_hi, k_mid)`` and then ``[k_mid, k_lo)`` performs exactly
    the operations of one fold over ``[k_hi, k_lo)``: a standing query that keeps the settled
    (older) part and folds only the live buckets at query time gives bit-identical results.
    Compiled without fast-math (``kernel_exact``) so that no contraction or reassociation can
    differ between calls. Bucket-outer, slot-inner: one bucket of all slots is contiguous, so the
    ring is read sequentially (hardware prefetch) instead of one cache miss per cell.
    """
    n_q = slots.shape[0]
    wsum = acc[0]
    mean = acc[1]
    m2 = acc[2]
    lo = acc[3]
    hi = acc[4]
    for k in range(k_hi - 1, k_lo - 1, -1):
        wk = weights[k]
        if wk <= 0.0:
            continue
        b = bq - k
        fb = float(b)
        base = offset + (b % n_buckets) * n_slots
        for q in range(n_q):
            c = base + slots[q]
            if cells[c, BUCKET] != fb:
                continue
            wn = wk * cells[c, COUNT]
            tot = wsum[q] + wn
            d = cells[c, MEAN] - mean[q]
            mean[q] += d * (wn / tot)
            m2[q] += wk * cells[c, M2] + d * d * (wsum[q] * wn / tot)
            wsum[q] = tot
            if cells[c, MIN] < lo[q]:
                lo[q] = cells[c, MIN]
            if cells[c, MAX] > hi[q]:
                hi[q] = cells[c, MAX]


ACC_EMPTY = (0.0, 0.0, 0.0, math.inf, -math.inf)
"""Initial values of the five accumulator rows of :func:`window_accumulate`."""


@kernel_exact
def window_finish(acc, exposure_ms, out):
    """Write ``out`` (see :func:`window_query`) from the accumulators of :func:`window_accumulate`."""
    nan = math.nan
    for q in range(acc.shape[1]):
        ws = acc[0, q]
        if ws > 0.0:
            mean = acc[1, q]
            var = max(acc[2, q] / ws, 0.0)  # >= 0 exactly; a cell's Welford M2 may round to -1 ulp
            out[q, 0] = ws
            out[q, 1] = ws * mean
            out[q, 2] = mean
            out[q, 3] = var
            out[q, 4] = math.sqrt(var)
            out[q, 5] = acc[3, q]
            out[q, 6] = acc[4, q]
            out[q, 7] = ws * 1000.0 / exposure_ms  # exposure > 0 whenever wsum > 0
            out[q, 8] = ws * mean * 1000.0 / exposure_ms
        else:
            out[q, 0] = 0.0
            out[q, 1] = 0.0
            out[q, 2] = nan
            out[q, 3] = nan
            out[q, 4] = nan
            out[q, 5] = nan
            out[q, 6] = nan
            out[q, 7] = 0.0
            out[q, 8] = 0.0


@kernel_exact
def window_query(cells, offset, n_buckets, n_slots, width_ms, t_query_ms, weights, slots, out):
    """Weighted statistics over the last ``len(weights)`` buckets of one resolution.

    Bucket age ``k`` (``k = 0`` is the bucket holding ``t_query_ms``, ``k = 1`` the one before,
    ...) gets weight ``weights[k]``; every event in that bucket counts with that weight.

    Parameters
    ----------
    cells : float64 (total_cells, N_AGG)
    offset, n_buckets, n_slots, width_ms : int, the resolution's layout
    t_query_ms : int
    weights : float64 (n_span,), n_span <= n_buckets, weights >= 0
    slots : int64 (n_q,), the slots to report
    out : float64 (n_q, 9), filled with ``count, sum, mean, var, std, min, max, rate_per_s,
        sum_per_s``

    Notes
    -----
    With ``w_k`` the weight and ``(n_k, m_k, M2_k)`` the cell moments,
    ``count = sum w_k n_k``, ``mean = sum w_k n_k m_k / count``,
    ``var = sum w_k (M2_k + n_k (m_k - mean)^2) / count`` (weighted population variance),
    accumulated oldest bucket first with Chan's pairwise update so values near 1e9 keep their
    digits (:func:`window_accumulate`).
    ``min``/``max`` are unweighted over the buckets with ``w_k > 0``. Rates divide by the
    weighted exposure ``sum w_k d_k`` in seconds (:func:`window_exposure_ms`).
    Empty: ``count = sum = 0``, ``rate = 0``, ``mean = var = std = min = max = NaN``.
    """
    acc = np.empty((5, slots.shape[0]))
    for j in range(5):
        acc[j] = ACC_EMPTY[j]
    window_accumulate(
        cells, offset, n_buckets, n_slots, t_query_ms // width_ms, weights.shape[0], 0, weights, slots, acc
    )
    window_finish(acc, window_exposure_ms(width_ms, t_query_ms, weights), out)


@kernel
def dedup_insert(keys, ts, dedup_keys, dedup_ts, clock, status):
    """Insert record ids ``keys`` seen at ``ts`` (used to merge two id tables).

    ``status[i]`` is set to 1 when the id was already present (its time becomes the later of the
    two), else 0. The caller keeps the load <= 1/2. Returns the number of new ids.
    """
    mask = dedup_keys.shape[0] - 1
    n_new = 0
    for i in range(keys.shape[0]):
        k = keys[i]
        p = hashset_slot(k, mask)
        found = False
        while dedup_ts[p] != NO_TIME:
            if dedup_keys[p] == k:
                found = True
                break
            p = (p + 1) & mask
        if found:
            status[i] = 1
            if ts[i] > dedup_ts[p]:
                dedup_ts[p] = ts[i]
            continue
        status[i] = 0
        dedup_keys[p] = k
        dedup_ts[p] = ts[i]
        clock[CLOCK_DEDUP_FILL] += 1
        n_new += 1
    return n_new


@kernel_exact
def select_answered_calls(start_ms, answer_ms, end_ms, element_index, n_per, k, ts_out, slot_out, value_out):
    """The answered calls of a CDR batch as window events, in one pass: for every row with
    ``answer_ms >= 0`` (in order), ``ts_out = start_ms``, ``slot_out = element_index * n_per + k``,
    ``value_out = (end_ms - answer_ms) / 1000`` (the holding time in seconds).

    The inputs may be strided field views of the records; the outputs need room for every row.
    Returns ``(n, lo, hi)``: the events written and the smallest and largest slot among them
    (``lo > hi`` when none).
    """
    n = 0
    lo = _I64_MAX
    hi = NO_TIME
    for i in range(start_ms.shape[0]):
        a = answer_ms[i]
        if a >= 0:
            s = element_index[i] * n_per + k
            ts_out[n] = start_ms[i]
            slot_out[n] = s
            value_out[n] = np.float64(end_ms[i] - a) / 1000.0
            lo = min(lo, s)
            hi = max(hi, s)
            n += 1
    return n, lo, hi


@kernel_exact
def select_events(ts_ms, values, codes, code, element_index, n_per, k, ts_out, slot_out, value_out):
    """Rows of a batch as window events, in one pass: every row whose ``codes`` entry equals
    ``code`` (every row when ``codes`` is empty), in order, gives ``ts_out = ts_ms``,
    ``slot_out = element_index * n_per + k`` and ``value_out = values`` (as float64).

    Returns ``(n, lo, hi)`` as :func:`select_answered_calls`.
    """
    n = 0
    lo = _I64_MAX
    hi = NO_TIME
    every = codes.shape[0] == 0
    for i in range(ts_ms.shape[0]):
        if every or codes[i] == code:
            s = element_index[i] * n_per + k
            ts_out[n] = ts_ms[i]
            slot_out[n] = s
            value_out[n] = np.float64(values[i])
            lo = min(lo, s)
            hi = max(hi, s)
            n += 1
    return n, lo, hi
