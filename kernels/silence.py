"""Silence kernels: the first report after each element's silence."""

import numpy as np

from kernels._numba import kernel, kernel_exact


@kernel
def resume_update(ts_ms, elem, back_from, back_ts):
    """Record, per element, the earliest report after the time it is watched from.

    Parameters
    ----------
    ts_ms, elem : int64 arrays (n,)
        Report event times and dense element indices, in any order.
    back_from : int64 (n_elem,)
        Watch reports later than this time (-1: the element is not watched).
    back_ts : int64 (n_elem,)
        Updated in place: the earliest watched report so far (-1: none yet).

    Examples
    --------
    >>> import numpy as np
    >>> back = np.array([-1, -1])
    >>> resume_update(np.array([50, 40, 30, 70]), np.array([0, 0, 0, 1]), np.array([35, -1]), back)
    >>> back.tolist()
    [40, -1]
    """
    for i in range(ts_ms.shape[0]):
        e = elem[i]
        t = ts_ms[i]
        s = back_from[e]
        if s >= 0 and t > s:
            b = back_ts[e]
            if b < 0 or t < b:
                back_ts[e] = t


@kernel_exact
def check_due(
    now_ms,
    gap_factor,
    slack_ms,
    min_reports,
    last_ts,
    gap_ms,
    n_reports,
    silent_since,
    back_from,
    back_ts,
    flag_gap_ms,
    newly,
    resumed,
):
    """Flag the elements whose next report is overdue at ``now_ms``, clear those that reported again.

    An element with at least ``min_reports`` reports is silent when ``now_ms`` is past
    ``last_ts + ceil(gap_factor * gap_ms) + slack_ms``. Newly silent ones (``silent_since < 0``)
    get ``silent_since = back_from = last_ts``, ``back_ts = -1`` and ``flag_gap_ms = gap_ms``;
    flagged ones no longer silent get ``silent_since = -1``. Their indices go to ``newly`` and
    ``resumed`` (ascending).

    Returns
    -------
    (n_newly, n_resumed, watching)
        Counts written, and whether any element is watched (``back_from >= 0``).
    """
    n_new = 0
    n_res = 0
    watching = False
    for e in range(last_ts.shape[0]):
        silent = False
        if n_reports[e] >= min_reports:
            due = last_ts[e] + np.int64(np.ceil(gap_factor * gap_ms[e])) + slack_ms
            silent = due >= 0 and now_ms > due
        if silent:
            if silent_since[e] < 0:
                silent_since[e] = last_ts[e]
                back_from[e] = last_ts[e]
                back_ts[e] = -1
                flag_gap_ms[e] = gap_ms[e]
                newly[n_new] = e
                n_new += 1
        elif silent_since[e] >= 0:
            silent_since[e] = -1
            resumed[n_res] = e
            n_res += 1
        if back_from[e] >= 0:
            watching = True
    return n_new, n_res, watching
