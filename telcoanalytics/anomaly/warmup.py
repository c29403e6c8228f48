"""Warm a network detector up on history before live data, as a deployment restores yesterday.

The history is fed in event-time order, one step (an hour by default) at a time, with a silence
check at the end of each step, so silences and thresholds learn as they would have live. What
the history itself finds is discarded.

The events are grouped by step first (a counting sort) and each step is put in time order on its
own, so no array of the whole history's size is built beyond one index per event: a step's events
are those of a stable sort of the whole history by time, in the same order.
"""

from __future__ import annotations

import numpy as np

from kernels import anomaly_events as _ke


def warm_up(net, ts_ms, elem, metric, value, start_ms: int, until_ms: int, step_ms: int = 3_600_000) -> int:
    """Feed ``(ts_ms, elem, metric, value)`` into ``net`` step by step up to ``until_ms`` (events at or
    after ``until_ms`` last, in one update).

    Parameters
    ----------
    net : NetworkAnomalyDetector
    ts_ms, elem, metric, value : 1-D arrays of one length
        Event time (int64 ms), dense element index, metric id and value; any order.
    start_ms, until_ms : int
        The span of the history; the last step ends at ``until_ms``.
    step_ms : int
        Length of a step (default one hour).

    Returns
    -------
    int
        Events fed.

    Raises
    ------
    ValueError
        If ``step_ms`` is not positive or the arrays differ in length.
    """
    _check_step(step_ms)
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    elem, metric, value = np.asarray(elem), np.asarray(metric), np.asarray(value)
    n = len(ts_ms)
    if not len(elem) == len(metric) == len(value) == n:
        raise ValueError(
            f"ts_ms, elem, metric and value must have one length, got {n}, {len(elem)}, {len(metric)}, {len(value)}"
        )
    part = (ts_ms, None, lambda p: [(ts_ms[p], elem[p], metric[p], value[p])])
    return warm_up_parts(net, [part], start_ms, until_ms, step_ms)


def warm_up_parts(net, parts, start_ms: int, until_ms: int, step_ms: int = 3_600_000) -> int:
    """:func:`warm_up` of events given in parts, gathered a step at a time.

    Parameters
    ----------
    net : NetworkAnomalyDetector
    parts : sequence of ``(ts, index, gather)``
        ``ts`` holds int64 event times (any layout, e.g. a field of structured rows); the part's
        events are ``ts[index]`` in that order (``index`` None: all of ``ts``). ``gather(p)``
        returns, for int64 positions ``p`` into ``ts``, a list of ``(ts, elem, metric, value)``
        event arrays (one row of ``ts`` may give several events, e.g. two metrics).
    start_ms, until_ms, step_ms : int
        As in :func:`warm_up`.

    Returns
    -------
    int
        Events fed.

    Notes
    -----
    The events fed, and their order, are those of :func:`warm_up` given all of them at once: the
    parts one after the other, each part's groups of ``gather`` in turn (a row's first event with
    the others of the first group), sorted stably by time.
    """
    _check_step(step_ms)
    start_ms, until_ms, step_ms = int(start_ms), int(until_ms), int(step_ms)
    ends = np.array([min(t, until_ms) for t in range(start_ms + step_ms, until_ms + step_ms, step_ms)], dtype=np.int64)
    n_steps = len(ends)
    grouped = []
    for ts, index, gather in parts:
        if index is None:  # the events are the times themselves
            keys, bounds = ts, ends
        else:
            index = np.asarray(index, dtype=np.int64)
            if _ke.is_sorted(ts):  # rows in time order: a row's step follows from its position
                keys, bounds = index, np.searchsorted(ts, ends, side="left").astype(np.int64)
            else:
                keys, bounds = ts[index], ends
        order, starts = np.empty(len(keys), dtype=np.int64), np.empty(n_steps + 2, dtype=np.int64)
        _ke.step_order(keys, bounds, order, starts)
        grouped.append((order, starts, gather, index))
    n_fed = 0
    for b in range(n_steps + 1):
        cols = []
        for order, starts, gather, index in grouped:
            at = order[starts[b] : starts[b + 1]]
            cols += gather(at if index is None else index[at])
        if len(cols) == 1:
            ts, e, m, v = cols[0]
        else:
            ts, e, m, v = (np.concatenate([c[k] for c in cols]) for k in range(4))
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        if not _ke.is_sorted(ts):
            o = np.argsort(ts, kind="stable")
            ts, e, m, v = ts[o], e[o], m[o], v[o]
        net.update(ts, e, m, v)
        n_fed += len(ts)
        if b < n_steps:
            net.check_silence(int(ends[b]))
    return n_fed


def _check_step(step_ms) -> None:
    if step_ms <= 0:
        raise ValueError(f"step_ms must be positive, got {step_ms}")
