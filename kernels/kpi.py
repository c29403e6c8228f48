"""KPI kernels: raw canonical records -> per-minute counters; window sums; roll-up (SLA lifecycles:
:mod:`kernels.sla`).

Counter layout
--------------
Every counter ring is read as a 3-D array ``ring[minute_slot, element, column]`` (float32; window
sums are accumulated in float64). The minute slot is ``absolute_minute % n_minutes``: slots are
aligned to wall-clock minutes, so two rings with the same configuration merge by slot-wise
addition. The minute rings are stored as column planes ``planes[minute_slot, column, element]``
(the kernels that index ``ring[s, e, c]`` take the transposed view): one minute of every element
stays contiguous (a few MB), a sliding window sum reads each of its columns as one contiguous
vector (:func:`kpi_running_shift_planes`), and a batch's rows write each column in element order.

* CDR ring: ``n_services * N_CDR`` columns, column ``service * N_CDR + C_*``.
* Element ring (equipment + QoS): ``N_ELEM`` columns ``E_*``.
* Latency histogram ring: one column per log bucket (see :func:`kpi_hist_bin`).
* Hour ring: ``[hour_slot, element, j]`` for a few selected (counter, service) columns that
  long windows and error-budget periods need; a minute is added to it when it leaves the minute
  ring (so rows only ever touch the minute ring, and late rows stay exact).

Row reason codes (``reason`` arrays; 0 = accepted) are set by the Python layer for routing
problems and by the kernels for bad values, so no row is dropped silently.
"""

import math
from typing import NamedTuple

import numpy as np

from ._numba import kernel, kernel_exact, prefetch_at

# ---- row reason codes ----------------------------------------------------------------------
R_OK = 0
R_UNKNOWN_ELEMENT = 1
R_TOO_LATE = 2
R_FUTURE = 3
R_BAD_CAUSE = 4
R_BAD_TIME = 5
R_BAD_SERVICE = 6
R_BAD_VALUE = 7
N_REASONS = 8

# ---- Q.850 cause classes (index table built by the Python layer) ---------------------------
CLS_OTHER = 0
CLS_NORMAL = 1
CLS_USER = 2
CLS_CONGESTION = 3
CLS_FAILURE = 4

# ---- CDR counter columns (per service) -----------------------------------------------------
C_ATTEMPTS = 0  # every seizure / attempt
C_SETUP_OK = 1  # answered, or released with a normal / user-side cause
C_ANSWERED = 2
C_DROPS = 3  # answered and released with a cause outside normal / user-side
C_BLOCKED = 4  # congestion causes
C_FAILURES = 5  # failure causes
C_NORMAL = 6  # normal clearing causes
C_USER = 7  # user-side causes
C_HOLD_S = 8  # holding seconds of answered calls (end - answer)
N_CDR = 9

# ---- element counter columns (equipment metrics + QoS probes) ------------------------------
E_EQUIP_ROWS = 0
E_AVAIL_REPORTS = 1
E_PERIOD_S = 2
E_UP_S = 3
E_UNAVAILABLE_S = 4
E_CPU_SUM = 5
E_CPU_N = 6
E_PRB_SUM = 7
E_PRB_N = 8
E_THR_SUM = 9
E_THR_N = 10
E_ERRORS = 11
E_QOS_ROWS = 12
E_LAT_SUM = 13
E_LAT_N = 14
E_JIT_SUM = 15
E_JIT_N = 16
E_LOSS_SUM = 17
E_LOSS_N = 18
E_MOS_SUM = 19
E_MOS_N = 20
E_OUTAGE_REPORTS = 21  # equipment: availability reports with unavailable time (appended after the QoS columns)
N_ELEM = 22

# METRICS codes (records.METRICS order; asserted equal by the Python layer)
M_CPU = 0
M_PRB = 1
M_THROUGHPUT = 2
M_UNAVAILABLE = 3
M_ERRORS = 4
M_TEMPERATURE = 5

# ---- SLA condition codes and lifecycle states ----------------------------------------------
COND_INSUFFICIENT = 0
COND_BREACH = 1
COND_CLEAR = 2
COND_BAND = 3  # between threshold and clear threshold: holds the current state

ST_INACTIVE = 0
ST_PENDING = 1
ST_FIRING = 2

EV_PENDING = 1
EV_FIRING = 2
EV_RESOLVED = 3
EV_CANCELLED = 4  # a pending violation that ended before firing


@kernel
def kpi_hist_bin(x, lo_ms, bins_per_octave, n_bins):
    """Log-bucket index of one latency: 0 below ``lo_ms``, ``n_bins-1`` at or above the top.

    Bucket ``b`` in ``1..n_bins-2`` covers ``[lo * 2**((b-1)/bpo), lo * 2**(b/bpo))``.
    """
    if x < lo_ms:
        return 0
    b = 1 + int(math.floor(math.log2(x / lo_ms) * bins_per_octave))
    if b > n_bins - 1:
        b = n_bins - 1
    return b


@kernel
def kpi_window_sum(ring, rows, slots, cols, out_col, out):
    """``out[r, out_col[j]] += sum over slots of ring[slot, rows[r], cols[j]]`` (float64)."""
    for k in range(slots.shape[0]):
        s = slots[k]
        for r in range(rows.shape[0]):
            e = rows[r]
            for j in range(cols.shape[0]):
                out[r, out_col[j]] += ring[s, e, cols[j]]


@kernel
def minute_active(ring, s, e, act_cols):
    """1 when minute slot ``s`` of row ``e`` has any activity (``sum(ring[s, e, act_cols]) > 0``),
    else 0: the one definition of an active minute (collection gaps are minutes without)."""
    a = 0.0
    for j in range(act_cols.shape[0]):
        a += ring[s, e, act_cols[j]]
    return 1 if a > 0.0 else 0  # a select, no branch: see kpi_running_shift


@kernel
def kpi_window_activity(ring, rows, act_cols, win_slots, hist_slots, active, hist_active):
    """Count minutes with any activity (sum of ``act_cols`` > 0) inside and before the window."""
    for k in range(win_slots.shape[0]):
        s = win_slots[k]
        for r in range(rows.shape[0]):
            active[r] += minute_active(ring, s, rows[r], act_cols)
    for k in range(hist_slots.shape[0]):
        s = hist_slots[k]
        for r in range(rows.shape[0]):
            hist_active[r] += minute_active(ring, s, rows[r], act_cols)


@kernel
def kpi_segment_sum(x, seg, out):
    """Roll rows up to segments: ``out[seg[r], :] += x[r, :]``; rows with ``seg < 0`` are skipped."""
    for r in range(x.shape[0]):
        g = seg[r]
        if g < 0:
            continue
        for j in range(x.shape[1]):
            out[g, j] += x[r, j]


@kernel_exact
def kpi_add_hour_sum(x, j, hours, minutes, mpos):
    """``x[:, j] += hours[:, 0] + minutes[:, mpos[0]] + minutes[:, mpos[1]] + ...`` per element, the
    inner sum added left to right (the whole-hour part of a long window plus its minutes still in
    the minute ring, as ``CounterStore.hour_sums`` over all elements; exact kernel)."""
    for e in range(x.shape[0]):
        s = hours[e, 0]
        for k in range(mpos.shape[0]):
            s += minutes[e, mpos[k]]
        x[e, j] += s


@kernel
def _hist_quantile_row(counts, r, q, lo_ms, bins_per_octave, top):
    n_bins = counts.shape[1]
    total = 0.0
    for b in range(n_bins):
        total += counts[r, b]
    if total <= 0.0:
        return np.nan
    target = q * total
    cum = 0.0
    for b in range(n_bins):
        c = counts[r, b]
        if c > 0.0 and cum + c >= target:
            frac = (target - cum) / c
            if b == 0:
                return lo_ms * frac
            if b == n_bins - 1:
                return top
            return lo_ms * 2.0 ** ((b - 1 + frac) / bins_per_octave)
        cum += c
    return top


@kernel
def kpi_hist_quantile(counts, q, lo_ms, bins_per_octave, out):
    """Quantile ``q`` of each row of log-bucket counts (NaN for an empty row).

    The rank is ``q * total``; inside the bucket holding it the value is interpolated
    geometrically (linearly in the first bucket ``[0, lo)``); the open top bucket reports its
    lower edge.
    """
    top = lo_ms * 2.0 ** ((counts.shape[1] - 2) / bins_per_octave)
    for r in range(counts.shape[0]):
        out[r] = _hist_quantile_row(counts, r, q, lo_ms, bins_per_octave, top)


@kernel
def kpi_hist_quantile_rows(counts, rows, q, lo_ms, bins_per_octave, out):
    """:func:`kpi_hist_quantile` for the listed rows only (``out[rows[k]]``; others untouched)."""
    top = lo_ms * 2.0 ** ((counts.shape[1] - 2) / bins_per_octave)
    for k in range(rows.shape[0]):
        r = rows[k]
        out[r] = _hist_quantile_row(counts, r, q, lo_ms, bins_per_octave, top)


_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed int64 (Fibonacci hashing)


@kernel
def kpi_index_build(ids, table_keys, table_vals):
    """Open-addressing hash table ``id -> dense index`` (table size a power of two, keys -1 = empty).

    Ids must be unique and >= 0 (as topology element ids are); the caller sizes the table at
    least twice the number of ids.
    """
    mask = table_keys.shape[0] - 1
    for i in range(ids.shape[0]):
        k = ids[i]
        h = (int(k) * _GOLDEN) >> 17
        j = h & mask
        while table_keys[j] != -1:
            j = (j + 1) & mask
        table_keys[j] = k
        table_vals[j] = i


@kernel
def kpi_index_lookup(q, table_keys, table_vals, out):
    """Dense index of each id in ``q`` from :func:`kpi_index_build`'s table, -1 if absent."""
    mask = table_keys.shape[0] - 1
    for i in range(q.shape[0]):
        k = q[i]
        h = (int(k) * _GOLDEN) >> 17
        j = h & mask
        res = -1
        while k >= 0:
            t = table_keys[j]
            if t == k:
                res = table_vals[j]
                break
            if t == -1:
                break
            j = (j + 1) & mask
        out[i] = res


# ---- running window aggregates (incremental per tick) --------------------------------------
@kernel
def kpi_running_shift(ring, add_slots, sub_slots, cols, out):
    """``out[e, j] += sum(ring[add_slots, e, cols[j]]) - sum(ring[sub_slots, e, cols[j]])`` (float64).

    Moves a per-element running window sum by whole minutes (or hours): minutes entering the
    window are added, minutes leaving it subtracted. Exact as long as every partial sum is
    representable in float64 (always for integer counts; see ``telcoanalytics.kpi.running``).
    """
    n = out.shape[0]
    for e in range(n):
        for j in range(cols.shape[0]):
            c = cols[j]
            acc = 0.0
            for k in range(add_slots.shape[0]):
                acc += float(ring[add_slots[k], e, c])  # float64 also without JIT (NEP 50)
            for k in range(sub_slots.shape[0]):
                acc -= float(ring[sub_slots[k], e, c])
            # no "skip the write when acc == 0" branch: on sparse minutes it mispredicts about
            # as often as it is taken and made the shift slower (bench_kpi.py::test_minute_tick);
            # adding +0.0 leaves every sum unchanged (they start at +0.0
            # and a cancellation to zero rounds to +0.0, so no sum is ever -0.0)
            out[e, j] += acc


#: :func:`kpi_running_shift_many` passes over every element of an aggregate once the rows with
#: counts in its entering and leaving minutes reach ``1 / DENSE_SHIFT_DIV`` of the elements
DENSE_SHIFT_DIV = 8


@kernel
def kpi_running_shift_many(ring, row_used, add_slot, sub_slots, col_ptr, cols, outs):
    """:func:`kpi_running_shift` of several running sums of one ring moved by one minute at once.

    Aggregate ``i`` sums ring columns ``cols[col_ptr[i]:col_ptr[i + 1]]`` into ``outs[i]``; the
    minute entering every window is ``add_slot`` (-1: none), the one leaving window ``i`` is
    ``sub_slots[i]`` (-1: none). Per cell the same arithmetic as :func:`kpi_running_shift` with
    one slot in and one out (``acc = 0 + in - out``, ``out += acc``).

    Per aggregate, one of two passes, by the share of elements whose entering or leaving row may
    hold counts (``row_used[slot, e]``): when few do (fewer than ``n / DENSE_SHIFT_DIV`` rows
    counted in the two), only those elements are touched; otherwise every element, in one
    sequential pass without per-element tests (scattered reads of a few rows of a large ring cost
    more than reading all rows in order). Both give the same sums: a row known empty holds zeros,
    so an element without counts in either row adds ``(0.0 + 0.0) - 0.0 = +0.0``, which changes
    no sum (a running sum is never ``-0.0``: it starts at ``+0.0`` and only ``+0.0`` or non-zero
    changes are added).
    """
    n = ring.shape[1]
    n_add = np.count_nonzero(row_used[add_slot]) if add_slot >= 0 else 0
    dense = np.zeros(len(outs), np.bool_)
    for i in range(len(outs)):
        s = sub_slots[i]
        n_sub = np.count_nonzero(row_used[s]) if s >= 0 else 0
        dense[i] = (n_add + n_sub) * DENSE_SHIFT_DIV >= n
    for i in range(len(outs)):  # dense aggregates: every element, in order
        if not dense[i]:
            continue
        out = outs[i]
        s = sub_slots[i]
        j0 = col_ptr[i]
        for e in range(n):
            for j in range(j0, col_ptr[i + 1]):
                c = cols[j]
                acc = 0.0
                if add_slot >= 0:
                    acc += float(ring[add_slot, e, c])
                if s >= 0:
                    acc -= float(ring[s, e, c])
                out[e, j - j0] += acc
    for e in range(n):  # the others: the elements with counts, the entering row read once for all
        a_used = add_slot >= 0 and row_used[add_slot, e]
        for i in range(len(outs)):
            if dense[i]:
                continue
            out = outs[i]
            s = sub_slots[i]
            s_used = s >= 0 and row_used[s, e]
            if not (a_used or s_used):
                continue
            j0 = col_ptr[i]
            for j in range(j0, col_ptr[i + 1]):
                c = cols[j]
                acc = 0.0
                if a_used:  # a row known empty adds +0.0 (not read): the same acc
                    acc += float(ring[add_slot, e, c])
                if s_used:
                    acc -= float(ring[s, e, c])
                out[e, j - j0] += acc


@kernel_exact
def kpi_running_shift_planes(planes, add_slot, sub_slots, col_ptr, cols, outs_t):
    """:func:`kpi_running_shift_many` over a ring stored as column planes, every element.

    ``planes[slot, column, element]`` is the physical layout of a counter ring (the logical
    ``ring[slot, element, column]`` is ``planes.transpose(0, 2, 1)``); ``outs_t[i]`` is running
    sum ``i`` stored column by column (``(n_cols_i, n_elements)`` C-contiguous: the transpose of
    a Fortran-ordered ``(n_elements, n_cols_i)`` sum). Sum ``i`` gets, per element and column
    ``j``, ``outs_t[i][j, e] += (0.0 + planes[add_slot, cols[col_ptr[i] + j], e]) -
    planes[sub_slots[i], cols[...], e]`` (a slot ``-1`` drops its term): the arithmetic of
    :func:`kpi_running_shift_many`. Each column is two contiguous float32 vectors in and one
    float64 vector in and out, so the pass reads only the columns the sums hold (not whole cell
    rows) and vectorises; an element without counts in either slot adds ``+0.0`` (no change: a
    running sum is never ``-0.0``). Exact kernel (no reassociation).
    """
    n = planes.shape[2]
    for i in range(len(outs_t)):
        out = outs_t[i]
        s = sub_slots[i]
        if add_slot < 0 and s < 0:
            continue
        j0 = col_ptr[i]
        for j in range(j0, col_ptr[i + 1]):
            o = out[j - j0]
            c = cols[j]
            if add_slot >= 0 and s >= 0:
                a = planes[add_slot, c]
                u = planes[s, c]
                for e in range(n):
                    o[e] += (0.0 + float(a[e])) - float(u[e])  # float64 also without JIT (NEP 50)
            elif add_slot >= 0:
                a = planes[add_slot, c]
                for e in range(n):
                    o[e] += 0.0 + float(a[e])
            else:
                u = planes[s, c]
                for e in range(n):
                    o[e] += 0.0 - float(u[e])


@kernel_exact
def kpi_sum_columns(x, js, out):
    """``out[r] = x[r, js[0]] + x[r, js[1]] + ...`` added left to right (float64; exact kernel, no
    reassociation, so it equals adding the columns one after another with numpy). Reads each row
    once instead of one strided pass over ``x`` per column."""
    for r in range(x.shape[0]):
        acc = x[r, js[0]]
        for k in range(1, js.shape[0]):
            acc += x[r, js[k]]
        out[r] = acc


@kernel
def kpi_running_activity(ring, add_slots, sub_slots, act_cols, out):
    """``out[e] +=`` (minutes of ``add_slots`` with activity) - (those of ``sub_slots``).

    A minute is active for element ``e`` when ``sum(ring[slot, e, act_cols]) > 0``.
    """
    n = out.shape[0]
    for e in range(n):
        d = 0
        for k in range(add_slots.shape[0]):
            d += minute_active(ring, add_slots[k], e, act_cols)
        for k in range(sub_slots.shape[0]):
            d -= minute_active(ring, sub_slots[k], e, act_cols)
        out[e] += d


@kernel_exact
def kpi_flush_hour(cdr, elem, s, used, spec, hour, hs, runs):
    """Minute slot ``s`` of the minute rings into hour slot ``hs``: hour column ``j`` of each element
    ``+=`` the float32 sum of its ring columns, added left to right (``ring[s][:, cols].sum(axis=1)``
    for fewer than 8 columns, then the float32 ``+=``), and each cell's change (new - old, float64)
    to the running hour sums of ``runs`` whose columns include ``j``.

    ``used``: (cdr rows, elem rows) of slot ``s`` that may hold counts (the others are zeros, whose
    sum changes no cell: the hour ring is never ``-0.0``); ``spec``: (group per hour column, 0 cdr
    / 1 elem; column pointers; ring columns); ``runs``: (hour column -> position map per sum, with
    ``-1`` for a column it does not hold; outputs).
    """
    used_cdr, used_elem = used
    grp, ptr, cols = spec
    colmap, outs = runs
    for e in range(hour.shape[1]):
        uc = used_cdr[e]
        ue = used_elem[e]
        if not (uc or ue):
            continue
        for j in range(grp.shape[0]):
            if grp[j] == 0:
                if not uc:
                    continue
                ring = cdr
            else:
                if not ue:
                    continue
                ring = elem
            v = ring[s, e, cols[ptr[j]]]
            for q in range(ptr[j] + 1, ptr[j + 1]):
                v = v + ring[s, e, cols[q]]
            old = hour[hs, e, j]
            hour[hs, e, j] = old + v
            # "+ 0.0": keeps the subtraction in float64 (see _add_row)
            d = (float(hour[hs, e, j]) + 0.0) - (float(old) + 0.0)
            for k in range(colmap.shape[0]):
                p = colmap[k, j]
                if p >= 0:
                    outs[k][e, p] += d


@kernel
def kpi_act_cells(elem, minute, reason, late_bound, lo, hi, minute_ring, n_elements):
    """The ring cells (slot, element, minute) that the accepted rows (``reason == 0``) of a batch
    for minutes in ``(late_bound, ...)`` and ``[lo, hi)`` will write, each once (sorted by slot,
    then element): the cells whose activity a batch may change inside running activity counts."""
    keys = np.empty(elem.shape[0], np.int64)
    k = 0
    for i in range(elem.shape[0]):
        m = minute[i]
        if reason[i] == 0 and m > late_bound and m >= lo and m < hi:
            keys[k] = (m % minute_ring) * n_elements + elem[i]
            k += 1
    keys = np.unique(keys[:k])
    cs = keys // n_elements
    ce = keys - cs * n_elements
    cm = np.empty(keys.shape[0], np.int64)
    for i in range(elem.shape[0]):  # each cell's minute (one per cell: the ring holds one per slot)
        m = minute[i]
        if reason[i] == 0 and m > late_bound and m >= lo and m < hi:
            key = (m % minute_ring) * n_elements + elem[i]
            cm[np.searchsorted(keys, key)] = m
    return cs, ce, cm


@kernel
def kpi_act_count(ring, cs, ce, cm, run_lo, run_hi, col_ptr, cols, sign, outs):
    """``outs[k][ce[i]] += sign * minute_active(ring, cs[i], ce[i], cols_k)`` for every cell ``i``
    whose minute ``cm[i]`` lies in running activity count ``k``'s interval ``[run_lo[k], run_hi[k])``
    (``cols_k = cols[col_ptr[k]:col_ptr[k + 1]]``): called with -1 before a batch writes the cells
    and +1 after, it adds each cell's change of activity to the counts covering it."""
    for k in range(run_lo.shape[0]):
        out = outs[k]
        act_cols = cols[col_ptr[k] : col_ptr[k + 1]]
        for i in range(cs.shape[0]):
            if run_lo[k] <= cm[i] and cm[i] < run_hi[k]:
                out[ce[i]] += sign * minute_active(ring, cs[i], ce[i], act_cols)


@kernel
def kpi_status(value, samples, min_samples, n_act, n_exp, gap_fraction, n_el, status, out_value):
    """Status per node (ok 0 / insufficient 1 / collection gap 2 / no scope 3, later ones win)
    and the value kept only where ok (NaN elsewhere)."""
    for i in range(value.shape[0]):
        v = value[i]
        s = 0
        if samples[i] < min_samples or not math.isfinite(v) or samples[i] <= 0.0:
            s = 1
        if n_exp[i] > 0.0 and n_act[i] < gap_fraction * n_exp[i]:
            s = 2
        if n_el[i] == 0.0:
            s = 3
        status[i] = s
        out_value[i] = v if s == 0 else np.nan


# ---- window series for re-evaluation (one pass per counter set, all ticks at once) -----------
@kernel
def kpi_window_series(ring, rows, cols, out_col, ptr, slots, signs, out):
    """Window sums of ``rows`` at consecutive ticks, each tick's window moved from the previous one.

    ``out[k, r, out_col[j]] = out[k - 1, r, out_col[j]] + sum over i in ptr[k]:ptr[k+1] of
    signs[i] * ring[slots[i], rows[r], cols[j]]`` with ``out[-1] = 0`` (float64): tick 0 lists its
    whole window (sign +1), later ticks the slots entering (+1) and leaving (-1) their window, so a
    series of ``K`` ticks over windows of ``w`` slots reads ``w + 2 K`` slots instead of ``w K``.
    """
    n_k = ptr.shape[0] - 1
    for k in range(n_k):
        for r in range(rows.shape[0]):
            for j in range(out.shape[2]):
                out[k, r, j] = out[k - 1, r, j] if k > 0 else 0.0
        for i in range(ptr[k], ptr[k + 1]):
            s = slots[i]
            sg = float(signs[i])
            for r in range(rows.shape[0]):
                e = rows[r]
                for j in range(cols.shape[0]):
                    out[k, r, out_col[j]] += sg * float(ring[s, e, cols[j]])  # float64 also without JIT


@kernel
def kpi_activity_series(ring, rows, act_cols, ptr, slots, signs, out):
    """Active minutes (sum of ``act_cols`` > 0) of ``rows`` in windows moved tick by tick, as in
    :func:`kpi_window_series`: ``out[k, r] = out[k - 1, r] + sum of signs[i] * active(slots[i], r)``."""
    n_k = ptr.shape[0] - 1
    for k in range(n_k):
        for r in range(rows.shape[0]):
            out[k, r] = out[k - 1, r] if k > 0 else 0
        for i in range(ptr[k], ptr[k + 1]):
            s = slots[i]
            for r in range(rows.shape[0]):
                out[k, r] += signs[i] * minute_active(ring, s, rows[r], act_cols)


@kernel
def kpi_prefix_gather(ring, rows, slots, cols, out_col, out):
    """Cumulative per-minute sums of ``rows``: ``out[:, k + 1] = out[:, k] + ring[slots[k], rows, cols]``.

    ``out`` is ``(n_out, len(slots) + 1, len(rows))`` float64 (one contiguous minute-by-row plane
    per output column) with ``out[:, 0] = 0``; ring column ``cols[j]`` adds into output
    ``out_col[j]``; ``slots[k] < 0`` marks a minute the ring does not hold (adds nothing). A window
    ``[a, b)`` of minutes is then ``out[j, b] - out[j, a]`` (one read of each ring cell for any
    number of windows and ticks).
    """
    n_out = out.shape[0]
    n_r = rows.shape[0]
    acc = np.zeros((n_r, n_out))  # running sums, row-major: one cache line per row
    for j in range(n_out):
        for r in range(n_r):
            out[j, 0, r] = 0.0
    for k in range(slots.shape[0]):
        s = slots[k]
        if s >= 0:
            for r in range(n_r):
                e = rows[r]
                for j in range(cols.shape[0]):
                    acc[r, out_col[j]] += float(ring[s, e, cols[j]])  # float64 also without JIT
        for j in range(n_out):
            for r in range(n_r):
                out[j, k + 1, r] = acc[r, j]


# ---- fused ratio KPI of a tick (all elements, running window sums) ---------------------------
# The NamedTuples name the fields of the tuples ``kpi_ratio_nodes`` takes; callers pass plain tuples
# (Numba dispatches those through its C fast path, see kernels.cube), the kernel unpacks by position.


class RatioPlan(NamedTuple):
    """Where a ratio KPI's counters are in the running sums, and which are numerator, denominator, samples."""

    col_ptr: np.ndarray  # int64 (n_k + 1,): counter k's columns are cols[col_ptr[k]:col_ptr[k + 1]]
    cols: np.ndarray  # int64: columns of ``x``
    num_k: np.ndarray  # int64: numerator counters
    den_k: np.ndarray  # int64: denominator counters
    samp_k: int  # the samples counter


class StatusParams(NamedTuple):
    """Parameters of a KPI's value and status (:func:`kpi_status`)."""

    scale: float
    min_samples: float
    gap_fraction: float


class NodeResult(NamedTuple):
    """Per-node outputs of :func:`kpi_ratio_nodes`."""

    agg: np.ndarray  # float64 (n_nodes, n_k + n_extra), zeroed by the caller: rolled-up sums
    value: np.ndarray  # float64 (n_nodes,)
    samples: np.ndarray  # float64 (n_nodes,)
    status: np.ndarray  # int8 (n_nodes,)


@kernel_exact
def kpi_ratio_nodes(out, plan, params, x, extra, seg, n_el):
    """Value, samples and status per node of a ratio KPI from per-element running sums, in one pass.

    Counter ``k`` of an element is ``x[r, cols[col_ptr[k]]] + x[r, cols[col_ptr[k] + 1]] + ...``
    (its per-service columns, left to right); rows roll up to node ``seg[r]`` (``< 0``: skipped)
    into ``agg[:, k]`` (zeroed by the caller), followed by the ``extra`` columns (active and
    expected minutes when the source has collection gaps, else none). Per node: numerator
    ``0 + agg[num_k[0]] + ...``, denominator likewise, ``value = scale * num / den`` (NaN where
    ``den == 0``), ``samples = agg[samp_k]``, then :func:`kpi_status` (without extra columns no
    node is a gap). Exact kernel: the same additions in the same order as
    :func:`kpi_sum_columns`, :func:`kpi_segment_sum` and the numpy value formula, so the result
    is bit-identical to computing them one after another.

    Parameters
    ----------
    out : NodeResult
        ``agg`` (zeroed by the caller), ``value``, ``samples``, ``status``, written.
    plan : RatioPlan
        The KPI's columns and counters.
    params : StatusParams
        Scale, minimum samples and collection-gap fraction.
    x : float64 (n_elements, n_cols)
        Per-element running window sums.
    extra : float64 (n_elements, 0 or 2)
        Active and expected minutes per element when the source has collection gaps.
    seg : int64 (n_elements,)
        Node of each element (``< 0``: outside the scope).
    n_el : float64 (n_nodes,)
        Elements per node in scope (0: the node is out of scope).
    """
    agg, value, samples, status = out
    col_ptr, cols, num_k, den_k, samp_k = plan
    scale, min_samples, gap_fraction = params
    n_k = col_ptr.shape[0] - 1
    n_x = extra.shape[1]
    # counter by counter (each node's sum still adds its rows in row order): independent rows
    # pipeline, and a counter's columns are read with fixed offsets
    for k in range(n_k):
        j0 = col_ptr[k]
        m = col_ptr[k + 1] - j0
        c0 = cols[j0]
        if m == 4:
            c1, c2, c3 = cols[j0 + 1], cols[j0 + 2], cols[j0 + 3]
            for r in range(x.shape[0]):
                g = seg[r]
                if g >= 0:
                    agg[g, k] += ((x[r, c0] + x[r, c1]) + x[r, c2]) + x[r, c3]
        else:
            for r in range(x.shape[0]):
                g = seg[r]
                if g >= 0:
                    acc = x[r, c0]
                    for j in range(j0 + 1, j0 + m):
                        acc += x[r, cols[j]]
                    agg[g, k] += acc
    for j in range(n_x):
        for r in range(x.shape[0]):
            g = seg[r]
            if g >= 0:
                agg[g, n_k + j] += extra[r, j]
    single = num_k.shape[0] == 1 and den_k.shape[0] == 1
    a0, b0 = num_k[0], den_k[0]
    for i in range(agg.shape[0]):
        if single:
            num = 0.0 + agg[i, a0]
            den = 0.0 + agg[i, b0]
        else:
            num = 0.0
            for k in range(num_k.shape[0]):
                num += agg[i, num_k[k]]
            den = 0.0
            for k in range(den_k.shape[0]):
                den += agg[i, den_k[k]]
        # selects instead of branches (nodes without data are common: a branch mispredicts)
        has = den != 0.0
        v = scale * num / (den if has else 1.0)
        sm = agg[i, samp_k]
        samples[i] = sm
        bad = (sm < min_samples) | (not has) | (not math.isfinite(v)) | (sm <= 0.0)
        s = 1 if bad else 0
        if n_x == 2:
            e = agg[i, n_k + 1]
            s = 2 if ((e > 0.0) & (agg[i, n_k] < gap_fraction * e)) else s
        s = 3 if n_el[i] == 0.0 else s
        status[i] = s
        value[i] = v if s == 0 else np.nan


# ---- one-pass batch add (minute slot, element, counters, histogram, running sums together) ----
MINUTE_MS = 60_000


@kernel
def kpi_add_scan(t, elem, check_future, future_ms, minute, reason):
    """First pass of an add: each row's minute (``t // MINUTE_MS``, floored), ``R_UNKNOWN_ELEMENT``
    where ``elem < 0``, ``R_FUTURE`` where ``check_future`` and ``t > future_ms``. Returns the
    number of rows still accepted and the lowest and highest of their minutes (0, 0 when none)."""
    n_ok = 0
    lo = 0
    hi = 0
    for i in range(t.shape[0]):
        m = t[i] // MINUTE_MS
        minute[i] = m
        if elem[i] < 0:
            reason[i] = R_UNKNOWN_ELEMENT
        elif check_future and t[i] > future_ms:
            reason[i] = R_FUTURE
        else:
            if n_ok == 0 or m < lo:
                lo = m
            if n_ok == 0 or m > hi:
                hi = m
            n_ok += 1
    return n_ok, lo, hi


@kernel
def _add_slot(m, lo, lo_slot, n_slots):
    """Slot of minute ``m`` given the slot of minute ``lo <= m`` (no division for the usual rows)."""
    d = m - lo
    if d < n_slots:
        s = lo_slot + d
        return s - n_slots if s >= n_slots else s
    return m % n_slots


@kernel
def _run_cover(runs):
    """The smallest interval of minutes holding every running interval of ``runs`` (empty: none)."""
    run_lo, run_hi = runs[0], runs[1]
    lo = 0
    hi = 0
    for k in range(run_lo.shape[0]):
        if k == 0 or run_lo[k] < lo:
            lo = run_lo[k]
        if k == 0 or run_hi[k] > hi:
            hi = run_hi[k]
    return lo, hi


@kernel_exact
def _add_row(ring, s, e, m, tc, tv, nt, dv, runs):
    """Add increments ``tv[:nt]`` to columns ``tc[:nt]`` of cell row ``ring[s, e]`` (float32 cells,
    float64 increments, rounded as ``+=`` rounds them), then each cell's change (new - old, exact
    in float64) to every running sum of ``runs`` whose interval holds minute ``m`` and whose
    columns include the cell's (``runs``: intervals, ring column -> position maps, outputs
    transposed: ``outs_t[k][j, e]`` is column ``j`` of element ``e``, so sums stored column by
    column and row by row are passed alike, as ``out.T``)."""
    run_lo, run_hi, colmap, outs_t = runs
    for q in range(nt):
        c = tc[q]
        old = ring[s, e, c]
        ring[s, e, c] = old + tv[q]
        # "+ 0.0": LLVM narrows fpext(a) - fpext(b) to a float32 subtraction, which rounds the change
        # (tests/kpi/test_add_kernels.py); a sum with 0.0 is not an fpext, so the subtraction stays float64
        dv[q] = (float(ring[s, e, c]) + 0.0) - (float(old) + 0.0)
    for k in range(run_lo.shape[0]):
        if run_lo[k] <= m and m < run_hi[k]:
            out_t = outs_t[k]
            for q in range(nt):
                j = colmap[k, tc[q]]
                if j >= 0:
                    out_t[j, e] += dv[q]


#: rows ahead whose ring cells the add kernels prefetch (the cells of a minute's rows are scattered
#: over the column planes of a slot: a few cache misses per row once the rule evaluation between two
#: batches has pushed the slot out of the cache)
ADD_PREFETCH_AHEAD = 8


@kernel
def _ahead_slot(minute, reason, j, late_bound, lo, lo_slot, n_slots):
    """Slot of row ``j``'s minute for a prefetch, -1 when the row is rejected or too late (no write)."""
    if reason[j] != R_OK:
        return -1
    m = minute[j]
    if m <= late_bound:
        return -1
    return _add_slot(m, lo, lo_slot, n_slots)


@kernel
def kpi_add_cdr(elem, minute, route, used, fields, cause_class, reason, ring, runs, acc):
    """Second pass of a CDR add, one pass over the rows: routing (``R_TOO_LATE`` at or before
    minute ``route[0]``; the slot from ``route[1:]`` = lowest minute and its slot; the slot's minute
    and the "may hold counts" marks ``used`` = (slot minutes, slot mask, slot x element mask) set),
    the checks and counters of a call record (bad service, cause or times set ``reason``; per
    service: attempts, setup ok, answered, drops, blocked, failures, normal, user, holding
    seconds of answered calls), the running sums of the minutes already inside a window (:func:`_add_row`), and each accepted
    row's element and minute into ``acc`` (a pair of arrays). ``fields``: start, answer and end
    ms, service, cause. Returns the accepted count."""
    start_ms, answer_ms, end_ms, service, cause = fields
    late_bound, lo, lo_slot = route
    slot_minute, slot_used, row_used = used
    n_slots = slot_minute.shape[0]
    n_services = ring.shape[2] // N_CDR
    tc = np.zeros(N_CDR, np.int64)
    tv = np.zeros(N_CDR)
    dv = np.zeros(N_CDR)
    cover_lo, cover_hi = _run_cover(runs)
    n_rows = elem.shape[0]
    n = 0
    for i in range(n_rows):
        j = i + ADD_PREFETCH_AHEAD
        if j < n_rows:  # the cells most rows write (attempt, setup, answer, normal clearing, holding time)
            sj = _ahead_slot(minute, reason, j, late_bound, lo, lo_slot, n_slots)
            svj = service[j]
            if sj >= 0 and svj >= 0 and svj < n_services:
                ej = elem[j]
                rs = ring[sj]
                bj = svj * N_CDR
                prefetch_at(rs, ej, bj + C_ATTEMPTS)
                prefetch_at(rs, ej, bj + C_SETUP_OK)
                prefetch_at(rs, ej, bj + C_ANSWERED)
                prefetch_at(rs, ej, bj + C_NORMAL)
                prefetch_at(rs, ej, bj + C_HOLD_S)
                prefetch_at(row_used, sj, ej)
        if reason[i] != R_OK:
            continue
        m = minute[i]
        if m <= late_bound:
            reason[i] = R_TOO_LATE
            continue
        s = _add_slot(m, lo, lo_slot, n_slots)
        e = elem[i]
        slot_minute[s] = m
        slot_used[s] = True
        row_used[s, e] = True
        sv = service[i]
        if sv < 0 or sv >= n_services:
            reason[i] = R_BAD_SERVICE
            continue
        ca = cause[i]
        if ca < 1 or ca >= cause_class.shape[0]:
            reason[i] = R_BAD_CAUSE
            continue
        st = start_ms[i]
        an = answer_ms[i]
        en = end_ms[i]
        answered = an >= 0
        if en < st or (answered and (an < st or en < an)):
            reason[i] = R_BAD_TIME
            continue
        cls = cause_class[ca]
        ok_cause = cls == CLS_NORMAL or cls == CLS_USER
        base = sv * N_CDR
        # the non-zero counters (adding 0 changes no cell and no sum)
        tc[0] = base + C_ATTEMPTS
        tv[0] = 1.0
        nt = 1
        if answered or ok_cause:
            tc[nt] = base + C_SETUP_OK
            tv[nt] = 1.0
            nt += 1
        if answered:
            tc[nt] = base + C_ANSWERED
            tv[nt] = 1.0
            nt += 1
            if not ok_cause:
                tc[nt] = base + C_DROPS
                tv[nt] = 1.0
                nt += 1
        if cls == CLS_CONGESTION:
            tc[nt] = base + C_BLOCKED
            tv[nt] = 1.0
            nt += 1
        elif cls == CLS_FAILURE:
            tc[nt] = base + C_FAILURES
            tv[nt] = 1.0
            nt += 1
        elif cls == CLS_NORMAL:
            tc[nt] = base + C_NORMAL
            tv[nt] = 1.0
            nt += 1
        elif cls == CLS_USER:
            tc[nt] = base + C_USER
            tv[nt] = 1.0
            nt += 1
        if answered:
            h = (en - an) / 1000.0
            if h != 0.0:
                tc[nt] = base + C_HOLD_S
                tv[nt] = h
                nt += 1
        if cover_lo <= m and m < cover_hi:
            _add_row(ring, s, e, m, tc, tv, nt, dv, runs)
        else:  # outside every running interval: the cells only
            for q in range(nt):
                ring[s, e, tc[q]] += tv[q]
        acc[0][n] = e
        acc[1][n] = m
        n += 1
    return n


@kernel
def kpi_add_equip(elem, minute, route, used, fields, pm_interval_s, reason, ring, runs, acc):
    """Second pass of an equipment add (as :func:`kpi_add_cdr`); ``fields``: metric id, value.

    ``unavailable_s`` is clipped to ``[0, pm_interval_s]`` and adds one reporting period (and one
    outage report when it is above 0); negative values of count/utilisation metrics and NaN/inf
    values set ``R_BAD_VALUE`` (temperature may be negative; only its row is counted). Returns the
    accepted count."""
    metric_id, value = fields
    late_bound, lo, lo_slot = route
    slot_minute, slot_used, row_used = used
    n_slots = slot_minute.shape[0]
    tc = np.zeros(N_ELEM, np.int64)
    tv = np.zeros(N_ELEM)
    dv = np.zeros(N_ELEM)
    cover_lo, cover_hi = _run_cover(runs)
    n_rows = elem.shape[0]
    n = 0
    for i in range(n_rows):
        j = i + ADD_PREFETCH_AHEAD
        if j < n_rows:  # the row count and the metric's first two cells
            sj = _ahead_slot(minute, reason, j, late_bound, lo, lo_slot, n_slots)
            mj = metric_id[j]
            if sj >= 0 and mj >= 0 and mj <= M_TEMPERATURE:
                ej = elem[j]
                rs = ring[sj]
                prefetch_at(rs, ej, E_EQUIP_ROWS)
                if mj == M_UNAVAILABLE:
                    prefetch_at(rs, ej, E_AVAIL_REPORTS)
                    prefetch_at(rs, ej, E_PERIOD_S)
                    prefetch_at(rs, ej, E_UP_S)
                elif mj != M_TEMPERATURE:
                    cj = (
                        E_CPU_SUM
                        if mj == M_CPU
                        else (E_PRB_SUM if mj == M_PRB else (E_THR_SUM if mj == M_THROUGHPUT else E_ERRORS))
                    )
                    prefetch_at(rs, ej, cj)
                    prefetch_at(rs, ej, cj + 1)
                prefetch_at(row_used, sj, ej)
        if reason[i] != R_OK:
            continue
        m = minute[i]
        if m <= late_bound:
            reason[i] = R_TOO_LATE
            continue
        s = _add_slot(m, lo, lo_slot, n_slots)
        e = elem[i]
        slot_minute[s] = m
        slot_used[s] = True
        row_used[s, e] = True
        m_id = metric_id[i]
        v = value[i]
        if not math.isfinite(v) or m_id < 0 or m_id > M_TEMPERATURE or (v < 0.0 and m_id != M_TEMPERATURE):
            reason[i] = R_BAD_VALUE
            continue
        # the non-zero counters, in column order
        tc[0] = E_EQUIP_ROWS
        tv[0] = 1.0
        nt = 1
        if m_id == M_UNAVAILABLE:
            u = min(v, pm_interval_s)
            tc[1] = E_AVAIL_REPORTS
            tv[1] = 1.0
            nt = 2
            if pm_interval_s != 0.0:
                tc[nt] = E_PERIOD_S
                tv[nt] = pm_interval_s
                nt += 1
            if pm_interval_s - u != 0.0:
                tc[nt] = E_UP_S
                tv[nt] = pm_interval_s - u
                nt += 1
            if u != 0.0:
                tc[nt] = E_UNAVAILABLE_S
                tv[nt] = u
                nt += 1
            if u > 0.0:
                tc[nt] = E_OUTAGE_REPORTS
                tv[nt] = 1.0
                nt += 1
        elif m_id == M_CPU or m_id == M_PRB or m_id == M_THROUGHPUT:
            c = E_CPU_SUM if m_id == M_CPU else (E_PRB_SUM if m_id == M_PRB else E_THR_SUM)
            if v != 0.0:
                tc[nt] = c
                tv[nt] = v
                nt += 1
            tc[nt] = c + 1
            tv[nt] = 1.0
            nt += 1
        elif m_id == M_ERRORS and v != 0.0:
            tc[nt] = E_ERRORS
            tv[nt] = v
            nt += 1
        if cover_lo <= m and m < cover_hi:
            _add_row(ring, s, e, m, tc, tv, nt, dv, runs)
        else:  # outside every running interval: the cells only
            for q in range(nt):
                ring[s, e, tc[q]] += tv[q]
        acc[0][n] = e
        acc[1][n] = m
        n += 1
    return n


@kernel
def kpi_add_qos(elem, minute, route, used, fields, hist_params, reason, ring, hist_ring, runs, acc):
    """Second pass of a QoS add (as :func:`kpi_add_cdr`). Each measure counts only when finite and
    in range (latency/jitter >= 0, loss in 0..100, MOS in 1..5), a finite latency also in its
    histogram bucket (:func:`kpi_hist_bin`); a row with no usable measure gets ``R_BAD_VALUE``.
    ``used``: the element ring's marks then the
    histogram ring's; ``fields``: latency, jitter, loss, MOS; ``hist_params``: (lo_ms, bins per
    octave); ``runs``: the element ring's running sums, then the histogram ring's. Returns the
    accepted count."""
    latency_ms, jitter_ms, loss_pct, mos = fields
    lo_ms, bins_per_octave = hist_params
    late_bound, lo, lo_slot = route
    (slot_minute, slot_used, row_used), (hist_slot_used, hist_row_used) = used
    runs_e, runs_h = runs
    n_slots = slot_minute.shape[0]
    n_bins = hist_ring.shape[2]
    tc = np.zeros(N_ELEM, np.int64)
    tv = np.zeros(N_ELEM)
    dv = np.zeros(N_ELEM)
    cover_lo, cover_hi = _run_cover(runs_e)
    hcover_lo, hcover_hi = _run_cover(runs_h)
    n_rows = elem.shape[0]
    n = 0
    for i in range(n_rows):
        j = i + ADD_PREFETCH_AHEAD
        if j < n_rows:  # the measure cells (one per column plane), the latency bucket, the row marks
            sj = _ahead_slot(minute, reason, j, late_bound, lo, lo_slot, n_slots)
            if sj >= 0:
                ej = elem[j]
                rs = ring[sj]
                for c in range(E_QOS_ROWS, E_MOS_N + 1):
                    prefetch_at(rs, ej, c)
                la_j = latency_ms[j]
                if math.isfinite(la_j) and la_j >= 0.0:
                    prefetch_at(hist_ring[sj], ej, kpi_hist_bin(la_j, lo_ms, bins_per_octave, n_bins))
                prefetch_at(row_used, sj, ej)
                prefetch_at(hist_row_used, sj, ej)
        if reason[i] != R_OK:
            continue
        m = minute[i]
        if m <= late_bound:
            reason[i] = R_TOO_LATE
            continue
        s = _add_slot(m, lo, lo_slot, n_slots)
        e = elem[i]
        slot_minute[s] = m
        slot_used[s] = True
        row_used[s, e] = True
        hist_slot_used[s] = True
        hist_row_used[s, e] = True
        la = latency_ms[i]
        ji = jitter_ms[i]
        lo_p = loss_pct[i]
        mo = mos[i]
        # the non-zero counters, in column order (E_QOS_ROWS first)
        nt = 1
        ok_la = math.isfinite(la) and la >= 0.0
        if ok_la:
            if la != 0.0:
                tc[nt] = E_LAT_SUM
                tv[nt] = la
                nt += 1
            tc[nt] = E_LAT_N
            tv[nt] = 1.0
            nt += 1
        if math.isfinite(ji) and ji >= 0.0:
            if ji != 0.0:
                tc[nt] = E_JIT_SUM
                tv[nt] = ji
                nt += 1
            tc[nt] = E_JIT_N
            tv[nt] = 1.0
            nt += 1
        if math.isfinite(lo_p) and lo_p >= 0.0 and lo_p <= 100.0:
            if lo_p != 0.0:
                tc[nt] = E_LOSS_SUM
                tv[nt] = lo_p
                nt += 1
            tc[nt] = E_LOSS_N
            tv[nt] = 1.0
            nt += 1
        if math.isfinite(mo) and mo >= 1.0 and mo <= 5.0:
            tc[nt] = E_MOS_SUM
            tv[nt] = mo
            nt += 1
            tc[nt] = E_MOS_N
            tv[nt] = 1.0
            nt += 1
        if nt == 1:
            reason[i] = R_BAD_VALUE
            continue
        tc[0] = E_QOS_ROWS
        tv[0] = 1.0
        if cover_lo <= m and m < cover_hi:
            _add_row(ring, s, e, m, tc, tv, nt, dv, runs_e)
        else:
            for q in range(nt):
                ring[s, e, tc[q]] += tv[q]
        if ok_la:
            b = kpi_hist_bin(la, lo_ms, bins_per_octave, n_bins)
            if hcover_lo <= m and m < hcover_hi:
                tc[0] = b
                _add_row(hist_ring, s, e, m, tc, tv, 1, dv, runs_h)
            else:
                hist_ring[s, e, b] += 1.0
        acc[0][n] = e
        acc[1][n] = m
        n += 1
    return n
