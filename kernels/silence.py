"""Silence kernels: the first report after each element's silence."""

from kernels._numba import kernel


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
