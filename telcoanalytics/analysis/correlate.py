"""Correlation across metrics: lagged Pearson / Spearman with p-values, Benjamini-Hochberg,
"which series at which lag best explains this target", and the top-k correlated pairs among
thousands of series by blocked matrix products.
"""

from dataclasses import dataclass

import numpy as np
from scipy import special

from kernels import stats as K
from telcoanalytics.analysis._common import as_series_matrix, check_positive_int

METHODS = ("pearson", "spearman")

BEST_DTYPE = np.dtype(
    [
        ("series", np.int64),  # row of `candidates`
        ("lag", np.int64),  # steps by which the series leads the target (negative: lags it)
        ("r", np.float64),
        ("p", np.float64),
        ("q", np.float64),  # Benjamini-Hochberg adjusted p over every (series, lag) test
        ("n", np.int64),  # pairs used
    ]
)
"""Best lag per candidate series, returned by :meth:`LaggedCorrelation.best`."""

PAIR_DTYPE = np.dtype([("i", np.int64), ("j", np.int64), ("lag", np.int64), ("r", np.float64), ("n", np.int64)])
"""A correlated pair: series ``i`` at time ``t`` against series ``j`` at ``t + lag``."""


def correlation_pvalue(r, n):
    """Two-sided p-value of a correlation ``r`` from ``n`` pairs (t with ``n - 2`` d.f.).

    Exact for Pearson under normality (as ``scipy.stats.pearsonr``); the same formula is
    ``scipy.stats.spearmanr``'s for Spearman. NaN where ``n < 3`` or ``r`` is NaN.
    """
    r = np.asarray(r, dtype=np.float64)
    df = np.asarray(n, dtype=np.float64) - 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(r) * np.sqrt(df / np.maximum((1.0 - r) * (1.0 + r), 0.0))
        p = 2.0 * special.stdtr(df, -t)
    return np.where((df >= 1) & np.isfinite(r), np.where(np.abs(r) >= 1.0, 0.0, p), np.nan)


def benjamini_hochberg(p):
    """Benjamini-Hochberg adjusted p-values (q-values) of any-shaped ``p``; NaN stays NaN and
    does not count as a test.

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03, np.nan])
    array([0.03, 0.04, 0.04,  nan])
    """
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    ok = np.flatnonzero(np.isfinite(flat))
    q = np.full(flat.shape, np.nan)
    m = ok.size
    if m:
        order = ok[np.argsort(flat[ok], kind="mergesort")]
        scaled = flat[order] * m / np.arange(1, m + 1)
        q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q.reshape(p.shape)


@dataclass(frozen=True)
class LaggedCorrelation:
    """Correlations of candidate series with a target at several lags.

    ``lags`` (n_lags,), and (n_series, n_lags) arrays ``r``, ``n`` (pairs), ``p``, ``q``
    (Benjamini-Hochberg over all finite tests); ``method``.
    """

    lags: np.ndarray
    r: np.ndarray
    n: np.ndarray
    p: np.ndarray
    q: np.ndarray
    method: str

    def best(self):
        """Per series, the lag of strongest absolute correlation; rows sorted by q then -|r|."""
        absr = np.where(np.isfinite(self.r), np.abs(self.r), -1.0)
        k = absr.argmax(axis=1)
        rows = np.arange(self.r.shape[0])
        out = np.zeros(self.r.shape[0], dtype=BEST_DTYPE)
        out["series"] = rows
        out["lag"] = self.lags[k]
        out["r"] = self.r[rows, k]
        out["p"] = self.p[rows, k]
        out["q"] = self.q[rows, k]
        out["n"] = self.n[rows, k]
        order = np.lexsort((-np.nan_to_num(np.abs(out["r"]), nan=-1.0), np.nan_to_num(out["q"], nan=2.0)))
        return out[order]


def _lags(max_lag, lags):
    if lags is not None:
        lag_arr = np.atleast_1d(np.asarray(lags))
        if lag_arr.ndim != 1 or not np.issubdtype(lag_arr.dtype, np.integer):
            raise ValueError(f"lags must be a 1-D sequence of integers; got {lags!r}")
        return lag_arr.astype(np.int64)
    max_lag = check_positive_int(max_lag, "max_lag", minimum=0)
    return np.arange(-max_lag, max_lag + 1, dtype=np.int64)


def lagged_correlation(target, candidates, *, max_lag=0, lags=None, method="pearson"):
    """Correlate each candidate series with the target at lags ``-max_lag..max_lag``.

    Parameters
    ----------
    target : array_like (n_points,)
        E.g. complaint counts per hour in a region; NaN = missing.
    candidates : array_like (n_series, n_points)
        E.g. KPI series on the same time axis; NaN = missing (pairwise-complete).
    max_lag : int
        Steps each way; a positive lag means the candidate leads the target.
    lags : sequence of int, optional
        Explicit lags instead of ``max_lag`` (e.g. ``range(0, 13)`` for leads only).
    method : {"pearson", "spearman"}

    Returns
    -------
    LaggedCorrelation
        ``.best()`` answers "which series, at which lag, best explains the target".

    Examples
    --------
    >>> x = np.sin(np.arange(100) / 5.0)
    >>> res = lagged_correlation(np.roll(x, 3), np.vstack([x, np.cos(np.arange(100.0))]), max_lag=5)
    >>> b = res.best()[0]
    >>> int(b["series"]), int(b["lag"]), bool(b["r"] > 0.99)
    (0, 3, True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    y = as_series_matrix(target, "target")
    if y.shape[0] != 1:
        raise ValueError(f"target must be one series (1-D); got shape {y.shape}")
    x = as_series_matrix(candidates, "candidates")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"candidates have {x.shape[1]} points but target has {y.shape[1]}; put them on one time axis")
    lag_arr = _lags(max_lag, lags)
    if np.any(np.abs(lag_arr) >= y.shape[1] - 2):
        raise ValueError(f"lags must be smaller than the series length minus 2 ({y.shape[1] - 2})")
    r = np.empty((x.shape[0], lag_arr.size))
    n = np.empty((x.shape[0], lag_arr.size), dtype=np.int64)
    K.lagged_corr_rows(x, y[0], lag_arr, method == "spearman", r, n)
    p = correlation_pvalue(r, n)
    return LaggedCorrelation(lag_arr, r, n, p, benjamini_hochberg(p), method)


def _standardise(x):
    """Rows centred and scaled to unit norm (missing -> the row mean, i.e. 0), as float32."""
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(x, axis=1, keepdims=True) if np.isnan(x).any() else x.mean(axis=1, keepdims=True)
    z = np.nan_to_num(x - mu)
    norm = np.sqrt((z * z).sum(axis=1, keepdims=True))
    return (z / np.where(norm > 0, norm, np.inf)).astype(np.float32)


def top_correlated_pairs(values, k=100, *, max_lag=0, absolute=True, block=1024):
    """The ``k`` most correlated pairs among many series, over lags ``0..max_lag`` both ways.

    Each lag's windows are standardised once and scored by blocked float32 matrix products
    (``O(n_series^2 n_points)`` multiply-adds in BLAS, ``O(block n_series)`` memory, no list of
    every pair); the best ``2k`` candidates are then re-scored exactly in float64 over their
    pairwise-complete points and the top ``k`` returned. With missing values the screening
    treats a missing point as the row mean, so a pair can rank differently than its exact r
    would place it; without missing values the result is the exact top ``k``.

    Parameters
    ----------
    values : array_like (n_series, n_points)
    k : int
    max_lag : int
        ``lag > 0`` pairs ``i`` at ``t`` with ``j`` at ``t + lag`` (``i`` leads); both
        directions are scored. Lag 0 pairs are reported once with ``i < j``.
    absolute : bool
        Rank by ``|r|`` (default) or by ``r``.
    block : int
        Rows per matrix product.

    Returns
    -------
    numpy structured array of ``PAIR_DTYPE``, best first.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(5, 200))
    >>> x[3] = x[1] + 0.1 * rng.normal(size=200)
    >>> top = top_correlated_pairs(x, k=1)
    >>> top[["i", "j", "lag"]].tolist()
    [(1, 3, 0)]
    """
    x = as_series_matrix(values)
    k = check_positive_int(k, "k")
    block = check_positive_int(block, "block")
    max_lag = check_positive_int(max_lag, "max_lag", minimum=0)
    n_series, n_points = x.shape
    if max_lag >= n_points - 2:
        raise ValueError(f"max_lag must be below the series length minus 2 ({n_points - 2})")
    keep = 2 * k
    top_s = np.empty(0, np.float32)
    top_i = np.empty(0, np.int64)
    top_j = np.empty(0, np.int64)
    top_l = np.empty(0, np.int64)
    theta = -np.inf  # the keep-th best score so far: a block's cells at or below it cannot enter
    for lag in range(max_lag + 1):
        head = _standardise(x[:, : n_points - lag])
        tail = head if lag == 0 else _standardise(x[:, lag:])
        for a in range(0, n_series, block):
            b = min(a + block, n_series)
            c = head[a:b] @ tail.T
            if absolute:
                np.abs(c, out=c)
            if lag == 0:  # each unordered pair once: keep j > i
                c[:, :a] = -np.inf
                sq = c[:, a:b]
                sq[np.tril_indices(b - a)] = -np.inf
            else:
                c[np.arange(b - a), np.arange(a, b)] = -np.inf
            flat = c.ravel()
            sel = np.flatnonzero(flat > theta)
            if sel.size > keep:
                sel = sel[np.argpartition(-flat[sel], keep - 1)[:keep]]
            top_s = np.concatenate([top_s, flat[sel]])
            top_i = np.concatenate([top_i, a + sel // n_series])
            top_j = np.concatenate([top_j, sel % n_series])
            top_l = np.concatenate([top_l, np.full(sel.size, lag, np.int64)])
            if top_s.size > keep:
                best = np.argpartition(-top_s, keep - 1)[:keep]
                top_s, top_i, top_j, top_l = top_s[best], top_i[best], top_j[best], top_l[best]
            if top_s.size == keep:
                theta = top_s.min()
    ok = np.isfinite(top_s)
    top_i, top_j, top_l = top_i[ok], top_j[ok], top_l[ok]
    r = np.empty(top_i.size)
    n = np.empty(top_i.size, dtype=np.int64)
    K.pair_corr_rows(x, top_i, top_j, top_l, r, n)
    out = np.zeros(top_i.size, dtype=PAIR_DTYPE)
    out["i"], out["j"], out["lag"], out["r"], out["n"] = top_i, top_j, top_l, r, n
    rank = np.nan_to_num(np.abs(r) if absolute else r, nan=-np.inf)
    order = np.lexsort((out["lag"], out["j"], out["i"], -rank))
    return out[order][:k]
