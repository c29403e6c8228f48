"""Causal score transforms for single-series benchmark scoring (NAB): range novelty and
re-fire suppression.

Both kernels read only rows up to the current one (``out[i]`` depends on ``s[: i + 1]``), so a
score built from them stays causal.
"""

import numpy as np

from ._numba import kernel


@kernel
def range_novelty(x, start, out):
    """Excess of each value over the range of all values before it, relative to that range.

    ``out[i] = max(x[i] - max(x[:i]), min(x[:i]) - x[i], 0) / (max(x[:i]) - min(x[:i]) + eps)``
    for ``i > start``, 0 otherwise, with ``eps = 1e-9 * (|max| + 1e-9)`` (a flat history makes
    any new value a large novelty instead of a division by zero). Non-finite values score 0 and
    do not enter the range. O(n) with a running minimum and maximum.

    Parameters
    ----------
    x : float64 array (n,)
    start : int
        Indices ``<= start`` get 0 (burn-in; they still enter the range).
    out : float64 array (n,)
        Written in place.

    Notes
    -----
    A value outside everything seen so far is the simplest context-free novelty: on NAB most
    labelled anomalies in server metrics are new highs or lows of the series.
    """
    n = x.shape[0]
    mx = 0.0
    mn = 0.0
    seen = False
    for i in range(n):
        v = x[i]
        if not np.isfinite(v):
            out[i] = 0.0
            continue
        if seen and i > start:
            r = mx - mn + 1e-9 * (abs(mx) + 1e-9)
            e = v - mx
            if mn - v > e:
                e = mn - v
            out[i] = e / r if e > 0.0 else 0.0
        else:
            out[i] = 0.0
        if not seen:
            mx = v
            mn = v
            seen = True
        elif v > mx:
            mx = v
        elif v < mn:
            mn = v


@kernel
def suppress_refire(s, window, out):
    """Keep a score only if it beats every score kept in the previous ``window`` rows.

    ``out[i] = s[i]`` if ``s[i] > max(out[i - window : i])`` (0 for an empty or all-zero look-back),
    else 0. Monotone deque over the kept outputs: O(n).

    Parameters
    ----------
    s : float64 array (n,), values >= 0
    window : int
        Look-back length (>= 1).
    out : float64 array (n,)
        Written in place (must not alias ``s``).

    Notes
    -----
    NAB credits only the first detection in a labelled window and charges every detection
    outside windows, so once a row has fired the following ``window`` rows fire again only on a
    stronger score (at any threshold swept, a detection is followed by at most the rows that
    beat it).
    """
    n = s.shape[0]
    cap = window + 1
    dq_i = np.empty(cap, dtype=np.int64)
    dq_v = np.empty(cap)
    head = 0
    size = 0
    for i in range(n):
        while size > 0 and dq_i[head] < i - window:
            head = (head + 1) % cap
            size -= 1
        m = dq_v[head] if size > 0 else 0.0
        o = s[i] if s[i] > m else 0.0
        out[i] = o
        while size > 0 and dq_v[(head + size - 1) % cap] <= o:
            size -= 1
        dq_i[(head + size) % cap] = i
        dq_v[(head + size) % cap] = o
        size += 1
