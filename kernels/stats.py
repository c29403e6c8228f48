"""Correlation and comparison kernels: lagged Pearson / Spearman per row against a target,
exact pairwise-complete Pearson for chosen pairs, per-bucket moments and Mann-Whitney U.

Rows are series (NaN = missing); the Python layer (``telcoanalytics.analysis.correlate`` and
``.compare``) validates and turns statistics into p-values.
"""

import numpy as np

from kernels._numba import kernel

kernel_rows = kernel  # serial, as every kernel of the package (see kernels/trend.py)

MW_COLS = 4  # U of the first group, tie term sum(t^3 - t), n first, n second


@kernel
def _pearson(a, b):
    """Pearson r of two equal-length finite 1-D arrays (two-pass, as SciPy); NaN if constant."""
    n = a.shape[0]
    if n < 2:
        return np.nan
    ma = 0.0
    mb = 0.0
    for i in range(n):
        ma += a[i]
        mb += b[i]
    ma /= n
    mb /= n
    sab = 0.0
    saa = 0.0
    sbb = 0.0
    for i in range(n):
        da = a[i] - ma
        db = b[i] - mb
        sab += da * db
        saa += da * da
        sbb += db * db
    if saa <= 0.0 or sbb <= 0.0:
        return np.nan
    r = sab / np.sqrt(saa * sbb)
    return min(max(r, -1.0), 1.0)


@kernel
def _average_ranks(v, out):
    """Ranks 1..n with ties at their average rank (``scipy.stats.rankdata``)."""
    n = v.shape[0]
    order = np.argsort(v, kind="mergesort")
    i = 0
    tie_term = 0.0
    while i < n:
        j = i + 1
        while j < n and v[order[j]] == v[order[i]]:
            j += 1
        rank = 0.5 * (i + j - 1) + 1.0
        for k in range(i, j):
            out[order[k]] = rank
        t = float(j - i)
        tie_term += t * t * t - t
        i = j
    return tie_term


@kernel
def _overlap(x, y, lag, a, b):
    """Pairs ``(x_t, y_{t+lag})`` with both finite into ``a``, ``b``; returns how many."""
    n = x.shape[0]
    c = 0
    for t in range(max(0, -lag), min(n, n - lag)):
        xv = x[t]
        yv = y[t + lag]
        if np.isfinite(xv) and np.isfinite(yv):
            a[c] = xv
            b[c] = yv
            c += 1
    return c


@kernel_rows
def lagged_corr_rows(X, y, lags, rank, r_out, n_out):
    """Correlation of each row of ``X`` with ``y`` at each lag (pairwise complete).

    Lag ``k`` pairs ``X[i, t]`` with ``y[t + k]``: a positive lag means the row leads the target.
    With ``rank`` the overlapping values are ranked first (Spearman). Writes ``r_out`` and
    ``n_out`` (n_series, n_lags).
    """
    n = y.shape[0]
    for i in range(X.shape[0]):
        a = np.empty(n)
        b = np.empty(n)
        ra = np.empty(n)
        rb = np.empty(n)
        for k in range(lags.shape[0]):
            c = _overlap(X[i], y, lags[k], a, b)
            n_out[i, k] = c
            if rank and c >= 2:
                _average_ranks(a[:c], ra[:c])
                _average_ranks(b[:c], rb[:c])
                r_out[i, k] = _pearson(ra[:c], rb[:c])
            else:
                r_out[i, k] = _pearson(a[:c], b[:c])


@kernel_rows
def pair_corr_rows(X, first, second, lags, r_out, n_out):
    """Exact pairwise-complete Pearson r of ``X[first[p], t]`` with ``X[second[p], t + lags[p]]``."""
    n = X.shape[1]
    for p in range(first.shape[0]):
        a = np.empty(n)
        b = np.empty(n)
        c = _overlap(X[first[p]], X[second[p]], lags[p], a, b)
        n_out[p] = c
        r_out[p] = _pearson(a[:c], b[:c])


@kernel_rows
def bucket_moments_rows(Y, bucket, side, n_buckets, out):
    """Count, mean and sum of squared deviations per (row, side, bucket).

    ``bucket`` (n_points, int64) is each point's bucket (-1 = ignore), ``side`` (n_points, int64)
    0 before / 1 after / -1 ignore; ``out`` (n_series, 2, n_buckets, 3) is written (Welford).
    """
    for r in range(Y.shape[0]):
        o = out[r]
        o[:] = 0.0
        for t in range(Y.shape[1]):
            v = Y[r, t]
            g = bucket[t]
            s = side[t]
            if g < 0 or s < 0 or not np.isfinite(v):
                continue
            cnt = o[s, g, 0] + 1.0
            d = v - o[s, g, 1]
            o[s, g, 0] = cnt
            o[s, g, 1] += d / cnt
            o[s, g, 2] += d * (v - o[s, g, 1])


@kernel_rows
def mann_whitney_rows(Y, side, out):
    """Mann-Whitney U of the "after" points (side 1) against the "before" points (side 0) per row.

    Writes ``out`` (n_series, MW_COLS): ``U1 = R1 - n1 (n1 + 1) / 2`` with ``R1`` the rank sum of
    the after points in the pooled sample (average ranks for ties), ``sum (t^3 - t)`` over tie
    groups, ``n1``, ``n2``.
    """
    for r in range(Y.shape[0]):
        n1 = 0
        n2 = 0
        for t in range(Y.shape[1]):
            if np.isfinite(Y[r, t]):
                if side[t] == 1:
                    n1 += 1
                elif side[t] == 0:
                    n2 += 1
        pooled = np.empty(n1 + n2)
        c = 0
        for t in range(Y.shape[1]):  # after points first
            if side[t] == 1 and np.isfinite(Y[r, t]):
                pooled[c] = Y[r, t]
                c += 1
        for t in range(Y.shape[1]):
            if side[t] == 0 and np.isfinite(Y[r, t]):
                pooled[c] = Y[r, t]
                c += 1
        ranks = np.empty(n1 + n2)
        tie_term = _average_ranks(pooled, ranks)
        r1 = 0.0
        for k in range(n1):
            r1 += ranks[k]
        out[r, 0] = r1 - n1 * (n1 + 1.0) / 2.0
        out[r, 1] = tie_term
        out[r, 2] = n1
        out[r, 3] = n2


@kernel
def _valid_pair(i, j, lag0):
    """Lag 0 counts each unordered pair once (``j > i``); other lags every ordered pair ``i != j``."""
    return j > i if lag0 else j != i


@kernel_rows
def sketch_best(C, row0, col0, lag0, absolute, best_j):
    """Per row ``r`` of the block ``C`` (series ``row0 + r`` against series ``col0 + c``), the
    series of the highest (absolute) sketch score among valid pairs into ``best_j[r]`` (-1 if
    none)."""
    for r in range(C.shape[0]):
        i = row0 + r
        best = -np.inf
        arg = -1
        for j in range(col0, col0 + C.shape[1]):
            v = abs(C[r, j - col0]) if absolute else C[r, j - col0]
            if v > best and _valid_pair(i, j, lag0):
                best = v
                arg = j
        best_j[r] = arg


@kernel_rows
def sketch_candidates(C, row0, col0, res_rows, res_cols, lag0, absolute, theta, out_i, out_j):
    """Pairs of the block (series ``row0 + r`` against ``col0 + c``) whose correlation can reach
    ``theta``: ``score(C) + res_i res_j >= theta`` (``score`` = ``|C|`` or ``C``; ``res_cols``
    indexed by series), valid pairs only, into ``out_i``, ``out_j``; returns how many, or -1
    when they do not fit (the caller then scores the whole block)."""
    cap = out_i.shape[0]
    c = 0
    for r in range(C.shape[0]):
        i = row0 + r
        ri = res_rows[r]
        for j in range(col0, col0 + C.shape[1]):
            v = abs(C[r, j - col0]) if absolute else C[r, j - col0]
            if v + ri * res_cols[j] >= theta and _valid_pair(i, j, lag0):
                if c == cap:
                    return -1
                out_i[c] = i
                out_j[c] = j
                c += 1
    return c


@kernel_rows
def pair_dots(A, B, first, second, out):
    """``out[p] = <A[first[p]], B[second[p]]>`` in float32 (rows of standardised windows)."""
    for p in range(first.shape[0]):
        a = A[first[p]]
        b = B[second[p]]
        s = np.float32(0.0)
        for t in range(a.shape[0]):
            s += a[t] * b[t]
        out[p] = s
