"""Row validation in one compiled pass per source (first failing check per row).

The checks and their order are those of ``telcoanalytics.ingest.ingestor`` (its module docstring); the
caller passes the reason codes, so this module knows nothing of the quarantine's numbering.
Times are int64 ms; a check is "bad" exactly when the NumPy expression in ``ingest`` is True.

Element lookup
--------------
The ``*_check_route`` kernels find each row's dense element index
in an int32 table ``lut`` described by ``route`` (``[id_lo, id_hi, code, field]``, optionally
followed by ``[shift, n_dir]``):

* four entries, a flat table: ``lut[id - id_lo + 1]`` for an id in ``id_lo .. id_hi`` (ids that
  fill most of their range);
* six entries, a paged table (ids in a few dense runs far apart, e.g. a region prefix before a
  sequence number): ``lut[:n_dir]`` maps page ``(id - id_lo) >> shift`` to a page number ``p``
  (-1: no id there) and the page's entries follow at ``lut[n_dir + (p << shift) + ((id - id_lo) &
  (2**shift - 1))]``.

Either way an entry is the dense index, -1 for an id not known. (:func:`lookup_mark_unknown`
takes the flat table only.) Without a topology the caller passes ``_NO_ROUTE``-like arguments: an
empty id range, every index -1, code 0 (nothing marked).
"""

import numpy as np

from ._numba import kernel

# field index written to ``out_field`` (the caller maps it to a name)
F_START, F_END, F_ANSWER, F_CAUSE, F_SERVICE, F_BYTES_UP, F_BYTES_DOWN = range(7)
CDR_CHECK_FIELDS = ("start_ms", "end_ms", "answer_ms", "cause", "service", "bytes_up", "bytes_down")


# entries of the ``limits`` argument of cdr_check_route
L_LO_MS, L_HI_MS, L_CAUSE_LO, L_CAUSE_HI, L_N_SERVICES, L_MAX_CALL_MS, L_MAX_BYTES, L_NO_TIME = range(8)


@kernel
def cdr_check_route(rows, limits, codes, out_code, out_field, lut, route, out_index):
    """First failing check of every CDR row, then the lookup of ``element_id`` in one pass (see
    :func:`equip_check_route`: ``out_index`` gets every row's dense element index, -1 for an id
    not known, and a row that passes every check with index -1 gets ``route[2]`` and ``route[3]``).

    Parameters
    ----------
    rows : structured array (n,) with ``start_ms``, ``end_ms``, ``answer_ms`` (int64), ``cause``,
        ``service`` (ints), ``bytes_up``, ``bytes_down`` (int64): ``records.CDR_DTYPE`` (one
        argument, not one per field: a compiled call costs about as much per array argument as
        the checks of a small batch)
    limits : int64 (8,)
        ``[lo_ms, hi_ms)`` accepted event times, ``cause_lo..cause_hi`` accepted Q.850 causes,
        ``n_services`` known service codes, the longest call (ms), the most bytes per record,
        and the answer time meaning "not answered" (see the ``L_*`` indices).
    codes : int64 (6,), reason codes for time out of range, end before start (or negative
        duration), answer outside the call, bad cause, out of domain, negative counter
    out_code : int8 (n,), updated in place
        Rows already non-zero (failed an earlier check) are left as they are; the others get
        0 or their first failing reason code.
    out_field : int8 (n,), index into ``CDR_CHECK_FIELDS`` of the failing field (set with the code)
    lut, route : the element table (module docstring), out_index : int64 (n,), written

    Returns
    -------
    int
        Number of rows that failed a check here.
    """
    lo_ms, hi_ms = limits[L_LO_MS], limits[L_HI_MS]
    cause_lo, cause_hi, n_services = limits[L_CAUSE_LO], limits[L_CAUSE_HI], limits[L_N_SERVICES]
    max_call, max_bytes, no_time = limits[L_MAX_CALL_MS], limits[L_MAX_BYTES], limits[L_NO_TIME]
    id_lo, id_hi = route[0], route[1]
    paged = route.shape[0] > 4
    shift = route[4] if paged else 0
    n_dir = route[5] if paged else 0
    pmask = (np.int64(1) << shift) - 1
    n_bad = 0
    for i in range(rows.shape[0]):
        row = rows[i]
        e = row["element_id"]
        idx = -1
        if e >= id_lo and e <= id_hi:
            if paged:
                d = e - id_lo
                pg = lut[d >> shift]
                if pg >= 0:
                    idx = lut[n_dir + (np.int64(pg) << shift) + (d & pmask)]
            else:
                idx = lut[e - id_lo + 1]
        out_index[i] = idx
        if out_code[i] != 0:
            continue
        s = row["start_ms"]
        e = row["end_ms"]
        a = row["answer_ms"]
        c = 0
        f = -1
        if s < lo_ms or s >= hi_ms:
            c, f = codes[0], F_START
        elif e < lo_ms or e >= hi_ms:
            c, f = codes[0], F_END
        elif e < s:
            c, f = codes[1], F_END
        elif a >= 0 and (a < s or a > e):
            c, f = codes[2], F_ANSWER
        elif row["cause"] < cause_lo or row["cause"] > cause_hi:
            c, f = codes[3], F_CAUSE
        elif row["service"] < 0 or row["service"] >= n_services:
            c, f = codes[4], F_SERVICE
        elif e - s > max_call:
            c, f = codes[4], F_END
        elif a < 0 and a != no_time:
            c, f = codes[4], F_ANSWER
        elif row["bytes_up"] > max_bytes:
            c, f = codes[4], F_BYTES_UP
        elif row["bytes_down"] > max_bytes:
            c, f = codes[4], F_BYTES_DOWN
        elif row["bytes_up"] < 0:
            c, f = codes[5], F_BYTES_UP
        elif row["bytes_down"] < 0:
            c, f = codes[5], F_BYTES_DOWN
        elif idx < 0:
            c, f = route[2], route[3]
        if c != 0:
            out_code[i] = c
            out_field[i] = f
            n_bad += 1
    return n_bad


# field index written by equip_check_route
E_VALUE, E_TS, E_METRIC = range(3)
EQUIP_CHECK_FIELDS = ("value", "ts_ms", "metric_id")


# field index written by flow_check_route
W_TS, W_BYTES, W_PACKETS, W_FLOWS = range(4)
FLOW_CHECK_FIELDS = ("ts_ms", "bytes", "packets", "flows")


# field index written by complaint_check_route
K_LAT, K_LON, K_TS, K_CATEGORY = range(4)
COMPLAINT_CHECK_FIELDS = ("lat", "lon", "ts_ms", "category")


# field index written by qos_check_route
Q_TS, Q_LATENCY, Q_JITTER, Q_LOSS, Q_MOS = range(5)
QOS_CHECK_FIELDS = ("ts_ms", "latency_ms", "jitter_ms", "loss_pct", "mos")


@kernel
def mark_negative(x, code, out_code, out_field, field):
    """Rows not failed yet (``out_code == 0``) whose ``x`` is negative get ``code`` and ``field``
    (e.g. an element id the topology does not know: index -1). Returns how many."""
    n = 0
    for i in range(x.shape[0]):
        if out_code[i] == 0 and x[i] < 0:
            out_code[i] = code
            out_field[i] = field
            n += 1
    return n


@kernel
def mark_flagged(flag, code, out_code, out_field, field):
    """Rows not failed yet whose ``flag`` is set get ``code`` and ``field``. Returns how many."""
    n = 0
    for i in range(flag.shape[0]):
        if out_code[i] == 0 and flag[i]:
            out_code[i] = code
            out_field[i] = field
            n += 1
    return n


@kernel
def lookup_mark_unknown(q, lut, id_lo, id_hi, out, code, out_code, out_field, field):
    """The dense index of each element id and the ``unknown_element`` mark in one pass (what
    ``np.take(lut, q - shift, mode="clip")`` followed by :func:`mark_negative` do in two).

    ``out[i]`` = ``lut[q[i] - id_lo + 1]`` for an id in ``id_lo .. id_hi`` (the table of
    ``telcoanalytics.ingest.ingestor._ElementLookup``: index, or -1 for an id not known), else -1;
    rows not failed yet (``out_code == 0``) whose index is -1 get ``code`` and ``field``.
    Returns how many rows were marked.
    """
    n_bad = 0
    for i in range(q.shape[0]):
        v = q[i]
        idx = -1
        if v >= id_lo and v <= id_hi:
            idx = lut[v - id_lo + 1]
        out[i] = idx
        if idx < 0 and out_code[i] == 0:
            out_code[i] = code
            out_field[i] = field
            n_bad += 1
    return n_bad


# ---- the row checks and the element lookup in one pass (each row read once) -----------------------
@kernel
def equip_check_route(rows, limits, value_lo, value_hi, is_counter, codes, out_code, out_field, lut, route, out_index):
    """The row checks below then :func:`lookup_mark_unknown` of ``element_id``, in one pass:
    ``out_index[i]`` the dense index of the row's element (``lut`` and ``route = [id_lo, id_hi,
    code, field]`` as in :func:`lookup_mark_unknown`; -1 for an id not known), and a row that
    passes every check but whose index is -1 gets ``code`` and ``field``. The same marks as the
    two calls one after the other. (The checks are written out here: a helper per row called
    from both kernels compiles about 9x slower.)

    The row checks mark the first failing check of every equipment row (the order of ``telcoanalytics.ingest.ingestor``).

    Parameters
    ----------
    rows : structured array (n,) with ``ts_ms`` (int64), ``metric_id`` (int), ``value`` (float64)
    limits : int64 (2,), the accepted event-time range ``[lo_ms, hi_ms)``
    value_lo, value_hi : float64 (m,), inclusive value range of each known metric code
    is_counter : bool (m,), counters below zero are ``negative_counter`` (else ``out_of_domain``)
    codes : int64 (4,), reason codes for non-finite, time out of range, out of domain, negative counter
    out_code, out_field : int8 (n,), updated in place as in :func:`cdr_first_failure` (field
        indices into ``EQUIP_CHECK_FIELDS``)

    Returns
    -------
    int
        Number of rows that failed a check here.
    """
    lo_ms, hi_ms = limits[0], limits[1]
    m_known = value_lo.shape[0]
    id_lo, id_hi = route[0], route[1]
    paged = route.shape[0] > 4
    shift = route[4] if paged else 0
    n_dir = route[5] if paged else 0
    pmask = (np.int64(1) << shift) - 1
    n_bad = 0
    for i in range(rows.shape[0]):
        row = rows[i]
        e = row["element_id"]
        idx = -1
        if e >= id_lo and e <= id_hi:
            if paged:
                d = e - id_lo
                pg = lut[d >> shift]
                if pg >= 0:
                    idx = lut[n_dir + (np.int64(pg) << shift) + (d & pmask)]
            else:
                idx = lut[e - id_lo + 1]
        out_index[i] = idx
        if out_code[i] != 0:
            continue
        v = row["value"]
        t = row["ts_ms"]
        m = row["metric_id"]
        c = 0
        f = -1
        if not np.isfinite(v):
            c, f = codes[0], E_VALUE
        elif t < lo_ms or t >= hi_ms:
            c, f = codes[1], E_TS
        elif m < 0 or m >= m_known:
            c, f = codes[2], E_METRIC
        elif v > value_hi[m] or (v < value_lo[m] and not is_counter[m]):
            c, f = codes[2], E_VALUE
        elif v < 0 and is_counter[m]:
            c, f = codes[3], E_VALUE
        elif idx < 0:
            c, f = route[2], route[3]
        if c != 0:
            out_code[i] = c
            out_field[i] = f
            n_bad += 1
    return n_bad


@kernel
def flow_check_route(rows, limits, codes, out_code, out_field, lut, route, out_index):
    """The row checks below then the lookup of ``src_element_id``, in one pass (see
    :func:`equip_check_route`).

    The row checks mark the first failing check of every flow row: time out of range, then a counter above its maximum
    (bytes, packets, flows in that order: ``out_of_domain``), then one below zero
    (``negative_counter``).

    Parameters
    ----------
    rows : structured array (n,) with int64 ``ts_ms``, ``bytes``, ``packets``, ``flows``
    limits : int64 (5,), ``[lo_ms, hi_ms, max_bytes, max_packets, max_flows]``
    codes : int64 (3,), reason codes for time out of range, out of domain, negative counter
    out_code, out_field : int8 (n,), updated in place as in :func:`cdr_first_failure` (field
        indices into ``FLOW_CHECK_FIELDS``)

    Returns
    -------
    int
        Number of rows that failed a check here.
    """
    lo_ms, hi_ms = limits[0], limits[1]
    max_b, max_p, max_w = limits[2], limits[3], limits[4]
    id_lo, id_hi = route[0], route[1]
    paged = route.shape[0] > 4
    shift = route[4] if paged else 0
    n_dir = route[5] if paged else 0
    pmask = (np.int64(1) << shift) - 1
    n_bad = 0
    ts, src = rows["ts_ms"], rows["src_element_id"]
    col_b, col_p, col_w = rows["bytes"], rows["packets"], rows["flows"]
    for i in range(rows.shape[0]):
        e = src[i]
        idx = -1
        if e >= id_lo and e <= id_hi:
            if paged:
                d = e - id_lo
                pg = lut[d >> shift]
                if pg >= 0:
                    idx = lut[n_dir + (np.int64(pg) << shift) + (d & pmask)]
            else:
                idx = lut[e - id_lo + 1]
        out_index[i] = idx
        t = ts[i]
        b, p, w = col_b[i], col_p[i], col_w[i]
        # one test, without branches, for the common row that passes every check (bitwise or: no
        # short-circuit jumps); only a failing row walks the checks in order
        if not (
            (t < lo_ms)
            | (t >= hi_ms)
            | (b > max_b)
            | (p > max_p)
            | (w > max_w)
            | (b < 0)
            | (p < 0)
            | (w < 0)
            | (idx < 0)
        ):
            continue
        if out_code[i] != 0:
            continue
        c = 0
        f = -1
        if t < lo_ms or t >= hi_ms:
            c, f = codes[0], W_TS
        elif b > max_b:
            c, f = codes[1], W_BYTES
        elif p > max_p:
            c, f = codes[1], W_PACKETS
        elif w > max_w:
            c, f = codes[1], W_FLOWS
        elif b < 0:
            c, f = codes[2], W_BYTES
        elif p < 0:
            c, f = codes[2], W_PACKETS
        elif w < 0:
            c, f = codes[2], W_FLOWS
        elif idx < 0:
            c, f = route[2], route[3]
        if c != 0:
            out_code[i] = c
            out_field[i] = f
            n_bad += 1
    return n_bad


@kernel
def qos_check_route(rows, limits, bounds, codes, out_code, out_field, lut, route, out_index):
    """The row checks below then the lookup of ``element_id``, in one pass (see
    :func:`equip_check_route`).

    The row checks mark the first failing check of every QoS row: a non-finite latency, jitter or loss (an infinite
    MOS; NaN MOS means not measured), time out of range, then a value outside its bounds.

    Parameters
    ----------
    rows : structured array (n,) with ``ts_ms`` (int64), ``latency_ms``, ``jitter_ms``,
        ``loss_pct``, ``mos`` (float64)
    limits : int64 (2,), the accepted event-time range ``[lo_ms, hi_ms)``
    bounds : float64 (4, 2), inclusive ``(lo, hi)`` of latency, jitter, loss and MOS
    codes : int64 (3,), reason codes for non-finite, time out of range, out of domain
    out_code, out_field : int8 (n,), updated in place as in :func:`cdr_first_failure` (field
        indices into ``QOS_CHECK_FIELDS``)

    Returns
    -------
    int
        Number of rows that failed a check here.
    """
    lo_ms, hi_ms = limits[0], limits[1]
    id_lo, id_hi = route[0], route[1]
    paged = route.shape[0] > 4
    shift = route[4] if paged else 0
    n_dir = route[5] if paged else 0
    pmask = (np.int64(1) << shift) - 1
    n_bad = 0
    for i in range(rows.shape[0]):
        row = rows[i]
        e = row["element_id"]
        idx = -1
        if e >= id_lo and e <= id_hi:
            if paged:
                d = e - id_lo
                pg = lut[d >> shift]
                if pg >= 0:
                    idx = lut[n_dir + (np.int64(pg) << shift) + (d & pmask)]
            else:
                idx = lut[e - id_lo + 1]
        out_index[i] = idx
        if out_code[i] != 0:
            continue
        a, j, p, m = row["latency_ms"], row["jitter_ms"], row["loss_pct"], row["mos"]
        t = row["ts_ms"]
        c = 0
        f = -1
        if not np.isfinite(a):
            c, f = codes[0], Q_LATENCY
        elif not np.isfinite(j):
            c, f = codes[0], Q_JITTER
        elif not np.isfinite(p):
            c, f = codes[0], Q_LOSS
        elif np.isinf(m):
            c, f = codes[0], Q_MOS
        elif t < lo_ms or t >= hi_ms:
            c, f = codes[1], Q_TS
        elif a < bounds[0, 0] or a > bounds[0, 1]:
            c, f = codes[2], Q_LATENCY
        elif j < bounds[1, 0] or j > bounds[1, 1]:
            c, f = codes[2], Q_JITTER
        elif p < bounds[2, 0] or p > bounds[2, 1]:
            c, f = codes[2], Q_LOSS
        elif m < bounds[3, 0] or m > bounds[3, 1]:  # NaN compares False: not measured is allowed
            c, f = codes[2], Q_MOS
        elif idx < 0:
            c, f = route[2], route[3]
        if c != 0:
            out_code[i] = c
            out_field[i] = f
            n_bad += 1
    return n_bad


@kernel
def complaint_check_route(rows, limits, n_categories, codes, out_code, out_field, lut, route, out_index):
    """The row checks below then the lookup of ``element_id``, in one pass (see
    :func:`equip_check_route`; a complaint without a cell, ``element_id = -1``, has index -1).

    The row checks mark the first failing check of every complaint row: an infinite latitude or
    longitude (NaN: no location given), time out of range, a category code outside
    ``0 .. n_categories - 1``, a latitude outside +-90 or only one of latitude and longitude
    given, a longitude outside +-180.

    Parameters
    ----------
    rows : structured array (n,) with ``ts_ms`` (int64), ``element_id`` (int64), ``lat``, ``lon``
        (float64), ``category`` (int)
    limits : int64 (2,), the accepted event-time range ``[lo_ms, hi_ms)``
    n_categories : int, known category codes
    codes : int64 (3,), reason codes for non-finite, time out of range, out of domain
    out_code, out_field : int8 (n,), updated in place as in :func:`cdr_check_route` (field
        indices into ``COMPLAINT_CHECK_FIELDS``)
    lut, route : the element table (module docstring), out_index : int64 (n,), written

    Returns
    -------
    int
        Number of rows that failed a check here.
    """
    lo_ms, hi_ms = limits[0], limits[1]
    id_lo, id_hi = route[0], route[1]
    paged = route.shape[0] > 4
    shift = route[4] if paged else 0
    n_dir = route[5] if paged else 0
    pmask = (np.int64(1) << shift) - 1
    n_bad = 0
    for i in range(rows.shape[0]):
        row = rows[i]
        e = row["element_id"]
        idx = -1
        if e >= id_lo and e <= id_hi:
            if paged:
                d = e - id_lo
                pg = lut[d >> shift]
                if pg >= 0:
                    idx = lut[n_dir + (np.int64(pg) << shift) + (d & pmask)]
            else:
                idx = lut[e - id_lo + 1]
        out_index[i] = idx
        if out_code[i] != 0:
            continue
        la, lo = row["lat"], row["lon"]
        t = row["ts_ms"]
        k = row["category"]
        c = 0
        f = -1
        if np.isinf(la):
            c, f = codes[0], K_LAT
        elif np.isinf(lo):
            c, f = codes[0], K_LON
        elif t < lo_ms or t >= hi_ms:
            c, f = codes[1], K_TS
        elif k < 0 or k >= n_categories:
            c, f = codes[2], K_CATEGORY
        elif la < -90.0 or la > 90.0 or np.isnan(la) != np.isnan(lo):
            c, f = codes[2], K_LAT
        elif lo < -180.0 or lo > 180.0:
            c, f = codes[2], K_LON
        elif idx < 0:
            c, f = route[2], route[3]
        if c != 0:
            out_code[i] = c
            out_field[i] = f
            n_bad += 1
    return n_bad


# ---- the rejected rows of a batch ------------------------------------------------------------------
@kernel
def rejected_rows(code, counts):
    """Indices (ascending, int64) of the rows whose first-failure ``code`` (int8, C-contiguous,
    codes ``0 .. len(counts) - 1``) is not 0, with ``counts[c]`` += the rows of each code: what
    ``np.flatnonzero(code != 0)`` and ``np.bincount`` give, in two passes that skip eight
    accepted rows (zero codes) at a time, without the mask arrays."""
    n = code.shape[0]
    m = n - n % 8
    words = code[:m].view(np.uint64)
    k = 0
    for j in range(words.shape[0]):
        if words[j] != 0:
            for i in range(8 * j, 8 * j + 8):
                if code[i] != 0:
                    k += 1
    for i in range(m, n):
        if code[i] != 0:
            k += 1
    out = np.empty(k, dtype=np.int64)
    k = 0
    for j in range(words.shape[0]):
        if words[j] != 0:
            for i in range(8 * j, 8 * j + 8):
                c = code[i]
                if c != 0:
                    out[k] = i
                    counts[c] += 1
                    k += 1
    for i in range(m, n):
        c = code[i]
        if c != 0:
            out[k] = i
            counts[c] += 1
            k += 1
    return out


# ---- after the checks: the pipeline's event-time clock and the routing counts, in one pass ---------
@kernel
def clock_route(t, recent, k, idx, route, node, counts, out_recent):
    """One pass over an accepted batch for the pipeline (``telcoanalytics.ingest.clock.EventClock``
    and the routing counts of ``telcoanalytics.pipeline.pipeline.Pipeline``).

    Parameters
    ----------
    t : int64 (n,), event times of the batch (arrival order)
    recent : int64 (m,), the clock's last event times (oldest first)
    k : int, the clock candidate is the ``k``-th largest of the window (``outliers + 1``)
    idx : int64 (n,), dense element index of each row
    route : int64, node of each element at the route level (-1: retired)
    node : int64 (n,), written: ``route[idx]``
    counts : int64 (n_nodes + 1,), ``counts[node + 1] += 1`` for every row
    out_recent : int64 (w,), written: the last ``w`` of ``recent`` then ``t`` (``w`` is the
        caller's ``min(window, m + n)``)

    Returns
    -------
    (int, int)
        The ``k``-th largest of ``out_recent`` (int64 min when it holds fewer than ``k``) and the
        largest of ``t`` (int64 min for an empty batch).
    """
    n = t.shape[0]
    w = out_recent.shape[0]
    from_t = min(n, w)
    from_recent = w - from_t
    m = recent.shape[0]
    for j in range(from_recent):
        out_recent[j] = recent[m - from_recent + j]
    for j in range(from_t):
        out_recent[from_recent + j] = t[n - from_t + j]
    none = np.iinfo(np.int64).min
    cand = none
    if w >= k:
        cand = np.sort(out_recent)[w - k]
    t_max = none
    for i in range(n):
        if t[i] > t_max:
            t_max = t[i]
        nd = route[idx[i]]
        node[i] = nd
        counts[nd + 1] += 1
    return cand, t_max
