"""Correlation across metrics: lagged Pearson / Spearman with p-values, Benjamini-Hochberg,
"which series at which lag best explains this target", and the top-k correlated pairs among
thousands of series by blocked matrix products.
"""

from dataclasses import dataclass

import numpy as np
from scipy import fft as sp_fft
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
    z = np.empty(x.shape, np.float32)
    for a in range(0, x.shape[0], 1024):  # in chunks: float64 temporaries of 1,024 rows only
        c = x[a : a + 1024]
        missing = np.isnan(c).any()
        mu = np.nanmean(c, axis=1, keepdims=True) if missing else c.mean(axis=1, keepdims=True)
        d = c - mu
        if missing:
            d[np.isnan(d)] = 0.0
        norm = np.sqrt(np.einsum("ij,ij->i", d, d))[:, None]
        z[a : a + 1024] = d / np.where(norm > 0, norm, np.inf)
    return z


class _TopKeep:
    """The ``keep`` best (score, i, j, lag) seen so far; ``theta`` is the keep-th best score (or
    -inf while fewer are held): a pair scoring at or below it cannot enter."""

    def __init__(self, keep):
        self.keep = keep
        self.s = np.empty(0, np.float32)
        self.i = self.j = self.lag = np.empty(0, np.int64)
        self.theta = -np.inf

    def add(self, score, i, j, lag):
        sel = np.flatnonzero(score > self.theta)
        if sel.size > self.keep:
            sel = sel[np.argpartition(-score[sel], self.keep - 1)[: self.keep]]
        self.s = np.concatenate([self.s, score[sel]])
        self.i = np.concatenate([self.i, i[sel]])
        self.j = np.concatenate([self.j, j[sel]])
        self.lag = np.concatenate([self.lag, np.full(sel.size, lag, np.int64)])
        if self.s.size > self.keep:
            best = np.argpartition(-self.s, self.keep - 1)[: self.keep]
            self.s, self.i, self.j, self.lag = self.s[best], self.i[best], self.j[best], self.lag[best]
        if self.s.size == self.keep:
            self.theta = float(self.s.min())


def _score_block(top, head, tail, a, b, lag, absolute):
    """Exact (float32) scores of rows ``a:b`` against every series by one matrix product."""
    n_series = tail.shape[0]
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
    sel = np.flatnonzero(flat > top.theta)
    top.add(flat[sel], a + sel // n_series, sel % n_series, lag)


def _sketch(z, freq_sets):
    """Orthonormal projections of the unit rows ``z`` on the real Fourier basis at each set of
    ``freq_sets`` (float32 coordinates, from one float32 FFT) and the norms of what they miss:
    for unit ``x``, ``y`` with sketches ``u``, ``v`` and residual norms ``e``, ``f``,
    ``|<x, y> - <u, v>| <= e f`` (Cauchy-Schwarz)."""
    n = z.shape[1]
    energy = np.einsum("ij,ij->i", z, z, dtype=np.float64)
    out = []
    for freqs in freq_sets:
        out.append((np.empty((z.shape[0], 2 * freqs.size), np.float32), np.empty(z.shape[0], np.float32)))
    for a in range(0, z.shape[0], 2048):
        b = min(a + 2048, z.shape[0])
        spec = sp_fft.rfft(z[a:b], axis=1) * np.float32(np.sqrt(2.0 / n))
        for freqs, (u, res) in zip(freq_sets, out, strict=True):
            u[a:b, : freqs.size] = spec.real[:, freqs]
            u[a:b, freqs.size :] = spec.imag[:, freqs]
            missed = energy[a:b] - np.einsum("ij,ij->i", u[a:b], u[a:b], dtype=np.float64)
            res[a:b] = np.sqrt(np.maximum(missed, 0.0))
    return out


CANDIDATE_CAP = 1 << 20
"""Candidate pairs per block of rows above which the block is scored whole by a matrix product."""

PRUNE_SLACK = 1e-3
"""Added to every pruning bound: covers float32 rounding of the sketches and scores (errors of
order 1e-6), so no pair that the full screen would keep is pruned."""


def _pruned_screen(windows, keep, absolute, block, dims):
    """The screen of ``_full_screen`` (the same ``keep`` best float32 scores) with most pairs
    never scored: each lag's windows are sketched on the ``dims / 2`` Fourier frequencies of
    most energy (and on 8 times as many, the fine sketch); a first pass scores each series'
    best lag-0 sketch partner exactly, whose keep-th best score is a floor of the final keep-th
    best; a second pass keeps the pairs whose bound ``|<u, v>| + e f`` reaches the current
    threshold (a block with too many is scored whole by a matrix product), bounds those again
    from the fine sketch, and scores exactly the pairs that still can reach it. Returns the
    screen and the number of pairs scored exactly."""
    sketches = []
    for lag, head, tail in windows:
        n = head.shape[1]
        n_freq = min(dims // 2, max((n - 1) // 2, 1))
        sample = head[:: max(head.shape[0] // 512, 1)].astype(np.float64)  # frequencies chosen on 512 rows
        power = np.abs(np.fft.rfft(sample, axis=1)[:, 1 : (n + 1) // 2]) ** 2
        ranked = np.argsort(-power.sum(axis=0), kind="stable")
        freq_sets = [1 + np.sort(ranked[:n_f]) for n_f in (n_freq, min(8 * n_freq, ranked.size))]  # coarse, fine
        heads = _sketch(head, freq_sets)
        tails = heads if lag == 0 else _sketch(tail, freq_sets)
        sketches.append([h + t for h, t in zip(heads, tails, strict=True)])
    n_series = windows[0][1].shape[0]
    # the floor: each series' best lag-0 partner by sketch, scored exactly (a subset of the
    # pairs, so its keep-th best is at most the final keep-th best)
    floor = _TopKeep(keep)
    lag, head, tail = windows[0]
    sh, rh, st, rt = sketches[0][0]
    best_j = np.empty(n_series, np.int64)
    for a in range(0, n_series, block):
        b = min(a + block, n_series)
        K.sketch_best(sh[a:b] @ st[a:].T, a, a, True, absolute, best_j[a:b])
    i = np.flatnonzero(best_j >= 0)
    score = np.empty(i.size, np.float32)
    K.pair_dots(head, tail, i, best_j[i], score)
    floor.add(np.abs(score) if absolute else score, i, best_j[i], 0)
    top = _TopKeep(keep)
    out_i = np.empty(CANDIDATE_CAP, np.int64)
    out_j = np.empty(CANDIDATE_CAP, np.int64)
    n_scored = 0
    for (lag, head, tail), ((sh, rh, st, rt), (fh, fe, ft, ff)) in zip(windows, sketches, strict=True):
        for a in range(0, n_series, block):
            b = min(a + block, n_series)
            col0 = a if lag == 0 else 0  # lag 0: pairs j > i only, so columns from the block on
            theta = max(floor.theta, top.theta) - PRUNE_SLACK
            c = K.sketch_candidates(
                sh[a:b] @ st[col0:].T, a, col0, rh[a:b], rt, lag == 0, absolute, theta, out_i, out_j
            )
            if c < 0:
                _score_block(top, head, tail, a, b, lag, absolute)
                n_scored += (b - a) * (n_series - col0)
                continue
            order = np.argsort(out_j[:c], kind="stable")  # by column: each tail row read once per block
            ci, cj = out_i[:c][order], out_j[:c][order]
            fine = np.empty(c, np.float32)  # the bound again from the fine sketch (8x the coordinates)
            K.pair_dots(fh, ft, ci, cj, fine)
            keep_c = (np.abs(fine) if absolute else fine) + fe[ci] * ff[cj] >= theta
            ci, cj = ci[keep_c], cj[keep_c]
            c = ci.size
            score = np.empty(c, np.float32)
            K.pair_dots(head, tail, ci, cj, score)
            top.add(np.abs(score) if absolute else score, ci, cj, lag)
            n_scored += c
    return top, n_scored


def top_correlated_pairs(values, k=100, *, max_lag=0, absolute=True, block=1024, prune=True, sketch_dims=64):
    """The ``k`` most correlated pairs among many series, over lags ``0..max_lag`` both ways.

    Each lag's windows are standardised once. Without pruning every pair is scored by blocked
    float32 matrix products (``O(n_series^2 n_points)`` multiply-adds in BLAS, ``O(block
    n_series)`` memory, no list of every pair). With pruning (the default) each window is first
    projected on the ``sketch_dims / 2`` Fourier frequencies that hold most of the series'
    energy; for unit-norm series the sketch inner product is within ``e_i e_j`` of the
    correlation (``e``: the norm the projection misses, Cauchy-Schwarz), so a pair whose bound
    cannot reach the current ``2k``-th best score is never scored, and the screen keeps the same
    ``2k`` pairs as without pruning (the bound is exact; a slack of ``PRUNE_SLACK`` covers
    rounding). How much it saves depends on how much energy the sketch captures: strongly
    periodic KPIs prune well, white noise not at all (then every block is scored whole, as
    without pruning). The best ``2k`` candidates are then re-scored exactly in float64 over
    their pairwise-complete points and the top ``k`` returned. With missing values the screening
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
    prune : bool
        Bound the correlations from Fourier sketches and score only the pairs that can enter
        (same result); False scores every pair.
    sketch_dims : int
        Coordinates per sketch (even; pairs of cosine and sine coefficients).

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
    sketch_dims = check_positive_int(sketch_dims, "sketch_dims", minimum=2)
    n_series, n_points = x.shape
    if max_lag >= n_points - 2:
        raise ValueError(f"max_lag must be below the series length minus 2 ({n_points - 2})")
    windows = []
    for lag in range(max_lag + 1):
        head = _standardise(x[:, : n_points - lag])
        windows.append((lag, head, head if lag == 0 else _standardise(x[:, lag:])))
    if prune:
        top, _ = _pruned_screen(windows, 2 * k, absolute, block, sketch_dims)
    else:
        top = _TopKeep(2 * k)
        for lag, head, tail in windows:
            for a in range(0, n_series, block):
                _score_block(top, head, tail, a, min(a + block, n_series), lag, absolute)
    ok = np.isfinite(top.s)
    top_i, top_j, top_l = top.i[ok], top.j[ok], top.lag[ok]
    r = np.empty(top_i.size)
    n = np.empty(top_i.size, dtype=np.int64)
    K.pair_corr_rows(x, top_i, top_j, top_l, r, n)
    out = np.zeros(top_i.size, dtype=PAIR_DTYPE)
    out["i"], out["j"], out["lag"], out["r"], out["n"] = top_i, top_j, top_l, r, n
    rank = np.nan_to_num(np.abs(r) if absolute else r, nan=-np.inf)
    order = np.lexsort((out["lag"], out["j"], out["i"], -rank))
    return out[order][:k]
