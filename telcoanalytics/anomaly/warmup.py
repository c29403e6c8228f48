"""Warm a network detector up on history before live data, as a deployment restores yesterday.

The history is fed in event-time order, one step (an hour by default) at a time, with a silence
check at the end of each step, so silences and thresholds learn as they would have live. What
the history itself finds is discarded.
"""

from __future__ import annotations

import numpy as np


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
    """
    if step_ms <= 0:
        raise ValueError(f"step_ms must be positive, got {step_ms}")
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    o = np.argsort(ts_ms, kind="stable")
    ts, e, m, v = ts_ms[o], np.asarray(elem)[o], np.asarray(metric)[o], np.asarray(value)[o]
    lo = 0
    for t_end in range(int(start_ms) + step_ms, int(until_ms) + step_ms, step_ms):
        k = int(np.searchsorted(ts, min(t_end, until_ms), side="left"))
        net.update(ts[lo:k], e[lo:k], m[lo:k], v[lo:k])
        net.check_silence(min(t_end, until_ms))
        lo = k
    net.update(ts[lo:], e[lo:], m[lo:], v[lo:])
    return len(ts)
