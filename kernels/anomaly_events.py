"""Event preparation for the network anomaly detector: a batch's rows as time-ordered
``(ts, element, metric, value)`` events, and their slots and scored values, in single passes."""

import numpy as np

from kernels._numba import kernel


@kernel
def gather_events(order, ts, elem, metric, value, out_ts, out_elem, out_metric, out_value):
    """Events ``order[k]`` of the columns into position ``k`` of the outputs (metric as int64)."""
    for k in range(order.shape[0]):
        i = order[k]
        out_ts[k] = ts[i]
        out_elem[k] = elem[i]
        out_metric[k] = metric[i]
        out_value[k] = value[i]


@kernel
def pair_events(order, ts, elem, first, second, m_first, m_second, out_ts, out_elem, out_metric, out_value):
    """Two values per row (metrics ``m_first``, ``m_second``) as events in the order a stable sort
    by time of all first values followed by all second values gives: ``order`` is the rows'
    stable time order; each run of rows at one time yields its first values, then its second
    values. Outputs hold ``2 * len(order)`` events."""
    n = order.shape[0]
    k = 0
    a = 0
    while a < n:
        t = ts[order[a]]
        b = a + 1
        while b < n and ts[order[b]] == t:
            b += 1
        for j in range(a, b):
            i = order[j]
            out_ts[k] = t
            out_elem[k] = elem[i]
            out_metric[k] = m_first
            out_value[k] = first[i]
            k += 1
        for j in range(a, b):
            i = order[j]
            out_ts[k] = t
            out_elem[k] = elem[i]
            out_metric[k] = m_second
            out_value[k] = second[i]
            k += 1
        a = b


@kernel
def is_sorted(ts):
    """Whether ``ts`` is non-decreasing."""
    for i in range(1, ts.shape[0]):
        if ts[i] < ts[i - 1]:
            return False
    return True


@kernel
def step_order(keys, bounds, order, starts):
    """Events grouped by step, in their order within each step (a stable counting sort).

    Parameters
    ----------
    keys : int64 array (n,), any layout
        Event ``k``'s key (an event time, or a position in rows sorted by time).
    bounds : int64 array (m,), non-decreasing
        Event ``k`` is in step ``b`` = the number of bounds at or below ``keys[k]`` (0..m).
    order : int64 (n,)
        Written: the events ``k`` step by step.
    starts : int64 (m + 2,)
        Written: step ``b``'s events are ``order[starts[b]:starts[b + 1]]``.
    """
    n = keys.shape[0]
    m = bounds.shape[0]
    for b in range(m + 2):
        starts[b] = 0
    # the step of the previous event is reused while keys stay in its span (keys come nearly
    # sorted: a binary search per step change, not per event)
    for rep in range(2):
        b = -1
        lo = np.int64(0)
        hi = np.int64(0)
        for k in range(n):
            x = keys[k]
            if b < 0 or (b > 0 and x < lo) or (b < m and x >= hi):
                # b = number of bounds <= x
                a = 0
                z = m
                while a < z:
                    c = (a + z) >> 1
                    if bounds[c] <= x:
                        a = c + 1
                    else:
                        z = c
                b = a
                if b > 0:
                    lo = bounds[b - 1]
                if b < m:
                    hi = bounds[b]
            if rep == 0:
                starts[b + 1] += 1
            else:
                order[starts[b]] = k
                starts[b] += 1
        if rep == 0:
            for b2 in range(m + 1):  # each step's first position (the second pass moves them on)
                starts[b2 + 1] += starts[b2]
    # after the second pass starts[b] is step b's end: back to starts
    for b in range(m + 1, 0, -1):
        starts[b] = starts[b - 1]
    starts[0] = 0


@kernel
def _slot_of(key, mask):
    return (key ^ (key >> 16) ^ (key >> 32)) & mask


@kernel
def id_table(ids, dense, keys, vals):
    """Fill an open-addressing table of ``ids -> dense`` (``vals`` all -1 on entry, its length a
    power of two above ``len(ids)``; an id given twice keeps its first value; ids with dense -1
    are left out, so they look up as unknown, -1)."""
    mask = vals.shape[0] - 1
    for j in range(ids.shape[0]):
        if dense[j] < 0:
            continue
        x = ids[j]
        h = _slot_of(x, mask)
        while vals[h] >= 0 and keys[h] != x:
            h = (h + 1) & mask
        if vals[h] < 0:
            keys[h] = x
            vals[h] = dense[j]


@kernel
def _look_up(x, keys, vals, mask):
    h = _slot_of(x, mask)
    while vals[h] >= 0:
        if keys[h] == x:
            return vals[h]
        h = (h + 1) & mask
    return -1


@kernel
def gather_rows(p, ts, el, metric, value, keys, vals, out_ts, out_elem, out_metric, out_value):
    """Events of rows ``p`` (one per row): time, dense element (``el`` looked up in the
    :func:`id_table` ``keys``/``vals``, -1 if unknown), metric as int64 and value."""
    mask = vals.shape[0] - 1
    prev = np.int64(0)
    e = _look_up(prev, keys, vals, mask)
    for k in range(p.shape[0]):
        i = p[k]
        x = np.int64(el[i])
        if x != prev:  # a row's metrics come together: one look-up per run of an element
            e = _look_up(x, keys, vals, mask)
            prev = x
        out_ts[k] = ts[i]
        out_elem[k] = e
        out_metric[k] = metric[i]
        out_value[k] = value[i]


@kernel
def gather_pairs(p, ts, el, first, second, m_first, m_second, keys, vals, out_ts, out_elem, out_metric, out_value):
    """Two events of each of rows ``p``: the first values of all rows (metric ``m_first``), then the
    second values (``m_second``); elements looked up as in :func:`gather_rows`. Outputs hold
    ``2 * len(p)`` events."""
    mask = vals.shape[0] - 1
    n = p.shape[0]
    for k in range(n):
        i = p[k]
        t = ts[i]
        e = _look_up(np.int64(el[i]), keys, vals, mask)
        out_ts[k] = t
        out_ts[n + k] = t
        out_elem[k] = e
        out_elem[n + k] = e
        out_metric[k] = m_first
        out_metric[n + k] = m_second
        out_value[k] = first[i]
        out_value[n + k] = second[i]


@kernel
def prepare_events(
    elem, metric, value, n_elements, n_metrics, log_offset, alive_metric, slot, scored, log_pos, log_arg
):
    """Check the events' element and metric indices, and compute their slots and scored values.

    Parameters
    ----------
    elem, metric : int64 arrays (n,)
        Dense element index and metric index of each event.
    value : float64 (n,)
    n_elements, n_metrics : int
    log_offset : float64 (n_metrics,)
        Metrics scored as ``log(max(x, 0) + c)`` have ``c`` here, the others NaN.
    alive_metric : bool (n_metrics,)
        Metrics whose reports count as the element being alive.
    slot, scored : int64 / float64 arrays (n,)
        Written: ``elem * n_metrics + metric`` and the value (log-transformed events get their
        argument ``max(x, 0) + c`` here and their position in ``log_pos``; the caller takes the
        logarithm, so that it is NumPy's).
    log_pos, log_arg : int64 / float64 arrays (n,)
        Written: positions and arguments of the log-transformed events (the first ``n_log``).

    Returns
    -------
    (bad_elem, bad_metric, n_log, n_alive) : int
        First event index whose element or metric is out of range (-1: none; when either is found
        the outputs are incomplete), log-transformed events, events of alive metrics.
    """
    n_log = 0
    n_alive = 0
    for i in range(elem.shape[0]):
        e = elem[i]
        m = metric[i]
        if e < 0 or e >= n_elements:
            return i, -1, n_log, n_alive
        if m < 0 or m >= n_metrics:
            return -1, i, n_log, n_alive
        slot[i] = e * n_metrics + m
        if alive_metric[m]:
            n_alive += 1
        c = log_offset[m]
        x = value[i]
        if np.isnan(c):
            scored[i] = x
        else:
            if not x >= 0.0 and not np.isnan(x):  # np.maximum(x, 0): NaN stays NaN
                x = 0.0
            scored[i] = x + c
            log_pos[n_log] = i
            log_arg[n_log] = x + c
            n_log += 1
    return -1, -1, n_log, n_alive


@kernel
def name_codes(chars, names, out):
    """Which of ``names`` each fixed-width string equals: the index of the first equal one, else -1.

    Parameters
    ----------
    chars : uint8 (n, w)
        The bytes of a fixed-width NumPy string column, one row per string (a ``U`` field of a
        structured array viewed as bytes).
    names : uint8 (k, w)
        The names in the same encoding and width, zero-padded.
    out : int64 (n,)
        Written: the codes.

    Examples
    --------
    >>> import numpy as np
    >>> col = np.array(["loss", "lat", "loss", ""], dtype="U4")
    >>> out = np.empty(4, np.int64)
    >>> name_codes(col.view(np.uint8).reshape(4, 16), np.array(["lat", "loss"], "U4").view(np.uint8).reshape(2, 16), out)
    >>> out.tolist()
    [1, 0, 1, -1]
    """
    n, w = chars.shape
    k = names.shape[0]
    for i in range(n):
        code = -1
        for j in range(k):
            c = 0
            while c < w and chars[i, c] == names[j, c]:
                c += 1
            if c == w:
                code = j
                break
        out[i] = code


# field kinds of json_text
JSON_INT = 0
JSON_FLOAT = 1
JSON_STR = 2
JSON_BOOL = 3


@kernel
def json_text(raw, kind, off, width, col, ints, ftext, n_float, prefix, pstart, out):
    """The JSON lines of structured rows (one object per row, ``\\n`` between rows, none after the
    last), as ``json.dumps(dict(zip(names, row.tolist())))`` writes them, into ``out``.

    Parameters
    ----------
    raw : uint8 (n, itemsize)
        The rows' bytes (a C-contiguous structured array viewed as bytes); read for strings.
    kind, off, width, col : int64 arrays (n_fields,)
        Per field: its kind (``JSON_INT``, ``JSON_FLOAT``, ``JSON_STR`` (``U``, UTF-32 code units)
        or ``JSON_BOOL``), its byte offset in a row, its width in characters (strings) and its
        index among the fields of its kind (int and bool fields: the row of ``ints``; floats: the
        column of ``ftext``).
    ints : int64 (n_ints, n)
        The int and bool fields' values.
    ftext : uint8
        The ASCII ``repr`` of every float value, column by column, joined by ``,``
        (``nan``, ``inf``, ``-inf`` are written ``null``, ``Infinity``, ``-Infinity``).
    n_float : int
        Float fields.
    prefix, pstart : uint8 / int64 (n_fields + 1,)
        The text before each field's value (``{"name": `` for the first, ``, "name": `` for the
        others) is ``prefix[pstart[f]:pstart[f + 1]]``.
    out : uint8
        Written: the text; large enough (see :func:`telcoanalytics.anomaly.jsonl.json_text_of_records`).

    Returns
    -------
    int
        Bytes written, or -1 when a string holds a character JSON escapes (control characters,
        ``"``, ``\\``, non-ASCII): the caller then formats the rows another way.
    """
    n = raw.shape[0]
    n_fields = kind.shape[0]
    # start of each float's text in ftext (token t = column * n + row)
    fpos = np.empty(n_float * n + 1, dtype=np.int64)
    fpos[0] = 0
    k = 0
    for i in range(ftext.shape[0]):
        if ftext[i] == 44:  # ","
            k += 1
            fpos[k] = i + 1
    fpos[n_float * n] = ftext.shape[0] + 1
    digits = np.empty(20, dtype=np.uint8)
    o = 0
    for r in range(n):
        if r > 0:
            out[o] = 10
            o += 1
        for f in range(n_fields):
            for b in range(pstart[f], pstart[f + 1]):
                out[o] = prefix[b]
                o += 1
            kd = kind[f]
            if kd == JSON_INT:
                v = ints[col[f], r]
                if v < 0:
                    out[o] = 45  # "-"
                    o += 1
                nd = 0
                while True:  # digits of |v|, last first (a negative v is never negated: int64 min)
                    if v >= 0:
                        d = v % 10
                        v = v // 10
                    else:
                        d = -(v % -10)
                        v = (v + d) // 10
                    digits[nd] = 48 + d
                    nd += 1
                    if v == 0:
                        break
                for q in range(nd - 1, -1, -1):
                    out[o] = digits[q]
                    o += 1
            elif kd == JSON_BOOL:
                if ints[col[f], r] != 0:
                    for c in (116, 114, 117, 101):  # true
                        out[o] = c
                        o += 1
                else:
                    for c in (102, 97, 108, 115, 101):  # false
                        out[o] = c
                        o += 1
            elif kd == JSON_FLOAT:
                t = col[f] * n + r
                s, e = fpos[t], fpos[t + 1] - 1
                neg = ftext[s] == 45
                first = ftext[s + 1] if neg and e - s > 1 else ftext[s]
                if first == 110:  # nan
                    for c in (110, 117, 108, 108):  # null
                        out[o] = c
                        o += 1
                elif first == 105:  # inf, -inf
                    if neg:
                        out[o] = 45
                        o += 1
                    for c in (73, 110, 102, 105, 110, 105, 116, 121):  # Infinity
                        out[o] = c
                        o += 1
                else:
                    for b in range(s, e):
                        out[o] = ftext[b]
                        o += 1
            else:  # a U string: its characters up to the last non-NUL one, plain ASCII only
                a = off[f]
                m = width[f]
                while m > 0:  # numpy drops trailing NULs
                    z = a + 4 * m - 4
                    if (raw[r, z] | raw[r, z + 1] | raw[r, z + 2] | raw[r, z + 3]) != 0:
                        break
                    m -= 1
                out[o] = 34
                o += 1
                for c in range(m):
                    ch = raw[r, a + 4 * c]
                    if (raw[r, a + 4 * c + 1] | raw[r, a + 4 * c + 2] | raw[r, a + 4 * c + 3]) != 0:
                        return -1
                    if ch < 32 or ch > 126 or ch == 34 or ch == 92:
                        return -1
                    out[o] = ch
                    o += 1
                out[o] = 34
                o += 1
        out[o] = 125  # "}"
        o += 1
    return o
