"""Trend kernels: Mann-Kendall score with ties, exact Theil-Sen order statistics, rank ACF factors.

Every kernel works on one row of a 2-D ``(n_series, n_points)`` array with NaN as missing and
loops over the rows; the Python layer (``telcoanalytics.analysis.trend``) validates and turns
scores into p-values.

The Mann-Kendall score is the count of concordant minus discordant pairs, found in
``O(n log n)`` by a merge sort that counts inversions (Knight 1966). Theil-Sen slopes are exact
order statistics of all ``n (n - 1) / 2`` pairwise slopes, selected without forming them: a
deterministic sample of pairs brackets the wanted rank, the number of slopes below each end of
the bracket is an inversion count of ``y - s t`` (``O(n log n)``), and only the slopes inside
the bracket are enumerated (Dillencourt, Mount & Netanyahu 1992; Matousek 1991). For long
series the default is a sampled Theil-Sen instead: the same order statistics among a fixed
number of uniformly drawn pairs (``_sampled_slopes``; the error bound is in
``telcoanalytics.analysis.trend.trend``). Order statistics of a materialised array (seasonal
slopes, the sample, medians) come from a sampled window and binning (``_order_stats``).
"""

import numpy as np

from kernels._numba import kernel, kernel_exact
from kernels.stats import _average_ranks  # ranks with ties averaged (its tie term unused here)

kernel_rows = kernel
"""Decorator of the per-row drivers. Serial like every kernel of the package (``parallel=True``
made the first compile of these kernels take minutes); ``nogil`` lets a caller run row blocks
from its own threads."""

kernel_rows_exact = kernel_exact
"""Per-row driver without fast math: ``y - slope * t`` rounded as NumPy does (no fused
multiply-add), so ties in the detrended values are the same as in ``pymannkendall``."""

TREND_COLS = 8
"""Columns of the ``out`` array of the row drivers: n, S, var S, pairs (Kendall tau denominator),
slope, slope lower bound, slope upper bound, intercept."""

_G1 = 0.7548776662466927  # R2 low-discrepancy sequence (Roberts 2018): deterministic pair samples
_G2 = 0.5698402909980532


@kernel
def _merge_count(a, tmp, strict):
    """Sort ``a`` in place (bottom-up merge sort); return the number of pairs ``i < j`` with
    ``a[i] > a[j]`` (``strict``) or ``a[i] >= a[j]`` (not strict)."""
    n = a.shape[0]
    inv = 0
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            j = mid
            k = lo
            while i < mid and j < hi:  # branch-free merge: the CPU cannot predict the comparisons
                ai = a[i]
                aj = a[j]
                right_first = (ai > aj) if strict else (ai >= aj)
                tmp[k] = aj if right_first else ai
                inv += (mid - i) if right_first else 0
                j += right_first
                i += 1 - int(right_first)
                k += 1
            while i < mid:
                tmp[k] = a[i]
                i += 1
                k += 1
            while j < hi:
                tmp[k] = a[j]
                j += 1
                k += 1
        for k in range(n):
            a[k] = tmp[k]
        width *= 2
    return inv


@kernel
def _tie_sums(sorted_vals):
    """Sum of ``t (t - 1) / 2`` and of ``t (t - 1) (2 t + 5)`` over groups of equal values."""
    n = sorted_vals.shape[0]
    pairs = 0.0
    var_term = 0.0
    i = 0
    while i < n:
        j = i + 1
        while j < n and sorted_vals[j] == sorted_vals[i]:
            j += 1
        t = float(j - i)
        pairs += t * (t - 1.0) / 2.0
        var_term += t * (t - 1.0) * (2.0 * t + 5.0)
        i = j
    return pairs, var_term


@kernel
def _mk_compressed(y, tmp):
    """Mann-Kendall ``(S, var S, tie var term)`` of the 1-D finite ``y`` (sorted in place)."""
    n = y.shape[0]
    n_f = float(n)
    discordant = _merge_count(y, tmp, True)
    tied_pairs, tie_var = _tie_sums(y)
    s = n_f * (n_f - 1.0) / 2.0 - tied_pairs - 2.0 * discordant
    var_s = (n_f * (n_f - 1.0) * (2.0 * n_f + 5.0) - tie_var) / 18.0
    return s, var_s, tie_var


@kernel
def _count_le(t, y, slope, u, tmp):
    """Number of pairs ``i < j`` whose slope ``(y_j - y_i) / (t_j - t_i)`` is ``<= slope``."""
    n = y.shape[0]
    if slope == -np.inf:
        return 0
    if slope == np.inf:
        return n * (n - 1) // 2
    for i in range(n):
        u[i] = y[i] - slope * t[i]
    return _merge_count(u, tmp, False)


@kernel
def _select(a, lo, hi, r):
    """Quickselect: reorder ``a[lo:hi]`` so that ``a[r]`` is its ``r - lo``-th smallest."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        x0 = a[lo]
        x1 = a[mid]
        x2 = a[hi - 1]
        pivot = max(min(x0, x1), min(max(x0, x1), x2))
        i = lo
        j = hi - 1
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                tmp = a[i]
                a[i] = a[j]
                a[j] = tmp
                i += 1
                j -= 1
        if r <= j:
            hi = j + 1
        elif r >= i:
            lo = i
        else:
            return


@kernel
def _order_stats(a, n, ranks, out):
    """The values of the 0-based ``ranks`` (int64 array) of ``a[:n]`` into ``out`` (``a`` unchanged).

    Above 1,024 values a strided sample of 256 gives a window that holds the wanted ranks with
    a margin of three binomial standard deviations (Floyd & Rivest 1975); one branch-free pass
    counts the values below it and copies those inside. The copies are binned by value into
    about four per bin (the bin index is monotone in the value, so bins are ordered) and each
    wanted rank is selected among the few values of its bin. A window that misses the ranks
    (an unlucky sample) falls back to the whole array, so the result is always exact.
    """
    buf = np.empty(n)
    m = 0
    off = 0
    hit = False
    lo = 0.0
    hi = 0.0
    if n > 1024:
        n_s = 256
        samp = np.empty(n_s)
        for i in range(n_s):
            samp[i] = a[(i * n) // n_s]
        samp.sort()
        k_min = ranks.min()
        k_max = ranks.max()
        q_lo = k_min / n
        q_hi = (k_max + 1.0) / n
        i_lo = int(q_lo * n_s - 3.0 * np.sqrt(n_s * max(q_lo * (1.0 - q_lo), 0.01)) - 2.0)
        i_hi = int(q_hi * n_s + 3.0 * np.sqrt(n_s * max(q_hi * (1.0 - q_hi), 0.01)) + 2.0)
        lo = samp[max(i_lo, 0)]
        hi = samp[min(i_hi, n_s - 1)]
        below = 0
        for i in range(n):
            v = a[i]
            below += v < lo
            buf[m] = v
            m += (v >= lo) & (v <= hi)
        hit = below <= k_min and k_max < below + m
        off = below
    if not hit:
        buf[:n] = a[:n]
        m = n
        off = 0
        lo = np.min(buf[:m])
        hi = np.max(buf[:m])
    n_bins = min(max(m >> 2, 1), 4096)
    scale = n_bins / (hi - lo) if hi > lo else 0.0
    top = n_bins - 1.0
    bins = np.empty(m, dtype=np.int32)
    start = np.zeros(n_bins + 1, dtype=np.int64)
    for i in range(m):
        k = int(min((buf[i] - lo) * scale, top))
        bins[i] = k
        start[k + 1] += 1
    for k in range(n_bins):
        start[k + 1] += start[k]
    tmp = np.empty(m)
    for q in range(ranks.shape[0]):
        r = ranks[q] - off
        k = np.searchsorted(start, r, side="right") - 1
        c = 0
        for i in range(m):
            tmp[c] = buf[i]
            c += bins[i] == k
        r_in = r - start[k]
        _select(tmp, 0, c, r_in)
        out[q] = tmp[r_in]


@kernel
def _median_sorted(v):
    """Median of a sorted 1-D array."""
    m = v.shape[0]
    return 0.5 * (v[(m - 1) // 2] + v[m // 2])


@kernel
def _enumerate_between(t, y, lo_slope, hi_slope, work, out):
    """Write to ``out`` the slopes of all pairs with ``lo_slope < slope <= hi_slope``; return
    how many. The pairs in the bracket are exactly the (non-strict) inversions of ``y - hi t``
    taken in the order of ``y - lo t`` (ties broken latest first); a merge sort enumerates them.
    ``work`` is an int64 array of length ``2 n``."""
    n = y.shape[0]
    ids = work[:n]
    ids_tmp = work[n : 2 * n]
    lo_key = np.empty(n)
    for i in range(n):
        lo_key[i] = y[i] - lo_slope * t[i] if lo_slope != -np.inf else t[i]
    latest_first = np.argsort(-t)
    ids[:] = latest_first[np.argsort(lo_key[latest_first], kind="mergesort")]
    vals = np.empty(n)
    vals_tmp = np.empty(n)
    for i in range(n):
        vals[i] = y[ids[i]] - hi_slope * t[ids[i]] if hi_slope != np.inf else -t[ids[i]]
    n_out = 0
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            j = mid
            k = lo
            while i < mid and j < hi:
                if vals[i] >= vals[j]:
                    b = ids[j]
                    for p in range(i, mid):
                        a = ids[p]
                        out[n_out] = (y[b] - y[a]) / (t[b] - t[a])
                        n_out += 1
                    vals_tmp[k] = vals[j]
                    ids_tmp[k] = b
                    j += 1
                else:
                    vals_tmp[k] = vals[i]
                    ids_tmp[k] = ids[i]
                    i += 1
                k += 1
            while i < mid:
                vals_tmp[k] = vals[i]
                ids_tmp[k] = ids[i]
                i += 1
                k += 1
            while j < hi:
                vals_tmp[k] = vals[j]
                ids_tmp[k] = ids[j]
                j += 1
                k += 1
        vals[:] = vals_tmp
        ids[:] = ids_tmp
        width *= 2
    return n_out


@kernel
def _sample_slope(t, y, k, n):
    """Slope of the ``k``-th pair of a deterministic low-discrepancy sample of pairs."""
    a = int(((k + 0.5) * _G1) % 1.0 * n)
    b = int(((k + 0.5) * _G2) % 1.0 * n)
    if a == b:
        b = (a + 1) % n
    if a > b:
        a, b = b, a
    return (y[b] - y[a]) / (t[b] - t[a])


@kernel
def slope_ranks(t, y, k_lo, k_hi, sample_factor):
    """Slopes of rank ``k_lo`` and ``k_hi`` (0-based, ``k_hi - k_lo`` small) among all pairwise
    slopes of the finite 1-D ``y`` at strictly increasing times ``t``.

    A sample of ``sample_factor * n`` pairs brackets the ranks; inversion counts locate the
    bracket ends and only the slopes inside it are formed. Falls back to a wider bracket when the
    sample misses. The counts compare ``y - s t`` in floating point, so slopes that differ from a
    bracket end by less than about ``eps (max|y| + |s| max t) / min dt`` may be ranked on either
    side of it: the result is then off by at most that much (exact otherwise).
    """
    n = y.shape[0]
    n_pairs = n * (n - 1) // 2
    m = min(n_pairs, sample_factor * n)
    if n_pairs <= 8 * n or m >= n_pairs:
        allp = np.empty(n_pairs)
        c = 0
        for i in range(n - 1):
            for j in range(i + 1, n):
                allp[c] = (y[j] - y[i]) / (t[j] - t[i])
                c += 1
        _select(allp, 0, n_pairs, k_lo)
        _select(allp, k_lo, n_pairs, k_hi)
        return allp[k_lo], allp[k_hi]
    sample = np.empty(m)
    for k in range(m):
        sample[k] = _sample_slope(t, y, k, n)
    q_lo = k_lo / n_pairs
    q_hi = (k_hi + 1.0) / n_pairs
    half = 2.0 * np.sqrt(max(q_lo * (1.0 - q_lo), 1.0 / m) / m) + 1.0 / m
    p_lo = int((q_lo - half) * m) - 1
    p_hi = int((q_hi + 1.0 * (half + 1.0 / m)) * m) + 1
    u = np.empty(n)
    tmp = np.empty(n)
    lo_slope = -np.inf
    hi_slope = np.inf
    if p_lo >= 0:
        _select(sample, 0, m, p_lo)
        lo_slope = sample[p_lo]
    if p_hi < m:
        _select(sample, max(p_lo, 0), m, p_hi)
        hi_slope = sample[p_hi]
    c_lo = _count_le(t, y, lo_slope, u, tmp)
    if c_lo > k_lo:
        lo_slope = -np.inf
        c_lo = 0
    c_hi = _count_le(t, y, hi_slope, u, tmp)
    if c_hi <= k_hi:
        hi_slope = np.inf
        c_hi = n_pairs
    work = np.empty(2 * n, dtype=np.int64)
    out = np.empty(c_hi - c_lo + n)
    n_out = _enumerate_between(t, y, lo_slope, hi_slope, work, out)
    r_lo = min(max(k_lo - c_lo, 0), n_out - 1)
    r_hi = min(max(k_hi - c_lo, 0), n_out - 1)
    _select(out, 0, n_out, r_lo)
    _select(out, r_lo, n_out, r_hi)
    return out[r_lo], out[r_hi]


_LCG_MUL = 6364136223846793005
_LCG_ADD = 1442695040888963407
_MASK62 = (1 << 62) - 1
SAMPLE_SEED = 0x2545F4914F6CDD1D & _MASK62
"""Seed of the pair sample of the sampled Theil-Sen (the same pairs for every series of a length)."""


@kernel
def _sampled_slopes(t, y, seed, out):
    """Slopes of ``out.shape[0]`` pairs ``i < j`` drawn uniformly with replacement (a 64-bit
    linear congruential generator, its top bits; reduced to 62 bits so plain Python, where the
    kernels run without JIT, gives the same numbers as compiled int64 arithmetic)."""
    n = y.shape[0]
    x = seed
    for k in range(out.shape[0]):
        i = 0
        j = 0
        while i == j:
            x = (x * _LCG_MUL + _LCG_ADD) & _MASK62
            i = ((x >> 30) * n) >> 32  # top 32 bits scaled to 0..n-1 (no division)
            x = (x * _LCG_MUL + _LCG_ADD) & _MASK62
            j = ((x >> 30) * n) >> 32
        if i > j:
            i, j = j, i
        out[k] = (y[j] - y[i]) / (t[j] - t[i])


@kernel
def _sample_rank(k, n_pairs, n_sample):
    """The rank in a sample of ``n_sample`` that estimates rank ``k`` of ``n_pairs``."""
    return min(int(k * (n_sample - 1.0) / (n_pairs - 1.0) + 0.5), n_sample - 1)


@kernel
def _ci_ranks(n_pairs, var_s, z_ci):
    """Ranks of the slope confidence bounds (Sen 1968, eq. 2.6; as ``scipy.stats.theilslopes``)."""
    sigma = np.sqrt(var_s)
    r_hi = min(int(np.rint((n_pairs + z_ci * sigma) / 2.0)), n_pairs - 1)
    r_lo = max(int(np.rint((n_pairs - z_ci * sigma) / 2.0)) - 1, 0)
    return r_lo, r_hi


@kernel
def _median_of(v):
    """Median of a 1-D finite array (``v`` unchanged)."""
    m = v.shape[0]
    ranks = np.array([(m - 1) // 2, m // 2])
    vals = np.empty(2)
    _order_stats(v, m, ranks, vals)
    return 0.5 * (vals[0] + vals[1])


@kernel
def _trend_one(t, y, z_ci, sample_factor, want_ci, max_pairs, row):
    """Mann-Kendall and Theil-Sen of one compressed series into ``row`` (see ``TREND_COLS``).
    With ``max_pairs > 0`` and more pairs than that, the slope and its bounds are order
    statistics of ``max_pairs`` sampled pairs (``_sampled_slopes``); otherwise exact."""
    n = y.shape[0]
    row[0] = n
    if n < 3:
        row[1:] = np.nan
        return
    sorted_y = y.copy()
    s, var_s, _ = _mk_compressed(sorted_y, np.empty(n))
    n_pairs = n * (n - 1) // 2
    row[1] = s
    row[2] = var_s
    row[3] = n_pairs
    h = n_pairs // 2
    h0 = h - 1 + n_pairs % 2
    row[5] = np.nan
    row[6] = np.nan
    r_lo, r_hi = _ci_ranks(n_pairs, var_s, z_ci)
    if 0 < max_pairs < n_pairs:
        sample = np.empty(max_pairs)
        _sampled_slopes(t, y, SAMPLE_SEED, sample)
        s0 = _sample_rank(h0, n_pairs, max_pairs)
        s1 = _sample_rank(h, n_pairs, max_pairs)
        s_lo = _sample_rank(r_lo, n_pairs, max_pairs) if want_ci else s0
        s_hi = _sample_rank(r_hi, n_pairs, max_pairs) if want_ci else s1
        vals = np.empty(4)
        _order_stats(sample, max_pairs, np.array([s_lo, s0, s1, s_hi]), vals)
        row[4] = 0.5 * (vals[1] + vals[2])
        if want_ci:
            row[5] = vals[0]
            row[6] = vals[3]
    else:
        a, b = slope_ranks(t, y, h0, h, sample_factor)
        row[4] = 0.5 * (a + b)
        if want_ci:
            row[5] = slope_ranks(t, y, r_lo, r_lo, sample_factor)[0]
            row[6] = slope_ranks(t, y, r_hi, r_hi, sample_factor)[0]
    row[7] = _median_of(y) - _median_sorted(t) * row[4]


@kernel_rows
def trend_rows(Y, t, z_ci, sample_factor, want_ci, max_pairs, out):
    """Mann-Kendall score (with ties) and Theil-Sen slope with its confidence bounds per row.

    Parameters
    ----------
    Y : float64 (n_series, n_points), NaN = missing
    t : float64 (n_points,), strictly increasing times
    z_ci : float, the normal quantile of the slope interval (1.96 for 95 %)
    sample_factor : int, pairs sampled per point to bracket a slope rank (speed only)
    want_ci : bool
    max_pairs : int, 0 for the exact slope; else the pairs sampled when a series has more
    out : float64 (n_series, TREND_COLS), written
    """
    for r in range(Y.shape[0]):
        valid = np.isfinite(Y[r])
        _trend_one(t[valid], Y[r][valid], z_ci, sample_factor, want_ci, max_pairs, out[r])


@kernel
def _mk_small(v, nv, work):
    """Mann-Kendall ``(S, var S)`` of ``v[:nv]`` by direct pair counting (short seasons),
    branch-free: ``S`` adds ``[v_b > v_a] - [v_b < v_a]`` over pairs; a value tied with
    ``e - 1`` others adds ``(e - 1)(2e + 5)`` to the tie term, which sums ``t (t - 1)(2t + 5)``
    over groups of ``t`` ties. ``work`` is unused (kept for the callers' buffers)."""
    s = 0
    tie_var = 0
    for a in range(nv):
        va = v[a]
        eq = 0
        for b in range(nv):
            vb = v[b]
            eq += vb == va
            if b > a:
                s += int(vb > va) - int(vb < va)
        tie_var += (eq - 1) * (2 * eq + 5)
    n_f = float(nv)
    return float(s), (n_f * (n_f - 1.0) * (2.0 * n_f + 5.0) - tie_var) / 18.0


@kernel
def _seasonal_whole(t, y, period, slopes):
    """Seasonal ``(S, var S)`` of a series of whole cycles with no missing point, the slopes of
    all within-phase pairs into ``slopes``: each pair of cycles is compared at every phase in
    one contiguous (SIMD) loop. Ties as ``_mk_small``: a value tied with ``E`` others of its
    phase adds ``E (2E + 7)`` to the tie term."""
    n_cyc = y.shape[0] // period
    s = np.zeros(period)
    eq = np.zeros((n_cyc, period))
    c = 0
    for a in range(n_cyc - 1):
        ya = y[a * period : (a + 1) * period]
        ta = t[a * period : (a + 1) * period]
        for b in range(a + 1, n_cyc):
            yb = y[b * period : (b + 1) * period]
            tb = t[b * period : (b + 1) * period]
            eqa = eq[a]
            eqb = eq[b]
            for j in range(period):
                d = yb[j] - ya[j]
                s[j] += (1.0 if d > 0.0 else 0.0) - (1.0 if d < 0.0 else 0.0)
                tie = 1.0 if d == 0.0 else 0.0
                eqa[j] += tie
                eqb[j] += tie
                slopes[c + j] = d / (tb[j] - ta[j])
            c += period
    tie_var = 0.0
    for a in range(n_cyc):
        for j in range(period):
            tie_var += eq[a, j] * (2.0 * eq[a, j] + 7.0)
    n_f = float(n_cyc)
    return s.sum(), (period * n_f * (n_f - 1.0) * (2.0 * n_f + 5.0) - tie_var) / 18.0


@kernel
def _seasonal_one(t, y, period, z_ci, want_ci, row):
    """Seasonal Mann-Kendall (Hirsch & Slack 1984) and seasonal Sen slope of one series."""
    n_cycles = (y.shape[0] + period - 1) // period
    n_finite = 0
    for i in range(y.shape[0]):
        n_finite += np.isfinite(y[i])
    if n_finite == y.shape[0] and y.shape[0] % period == 0:  # whole cycles, nothing missing
        n_tot = n_finite
        pairs_tot = period * (n_cycles * (n_cycles - 1) // 2)
        slopes = np.empty(pairs_tot)
        s_tot, var_tot = _seasonal_whole(t, y, period, slopes)
    else:
        s_tot, var_tot, n_tot, pairs_tot, slopes = _seasonal_gaps(t, y, period, n_cycles)
    row[0] = n_tot
    row[1] = s_tot
    row[2] = var_tot
    row[3] = pairs_tot
    row[4:] = np.nan
    if pairs_tot == 0:
        return
    h = pairs_tot // 2
    h0 = h - 1 + pairs_tot % 2
    r_lo, r_hi = _ci_ranks(pairs_tot, var_tot, z_ci)
    if not want_ci:
        r_lo, r_hi = h0, h
    vals = np.empty(4)
    _order_stats(slopes, pairs_tot, np.array([r_lo, h0, h, r_hi]), vals)
    row[4] = 0.5 * (vals[1] + vals[2])
    if want_ci:
        row[5] = vals[0]
        row[6] = vals[3]
    if n_tot == y.shape[0]:
        row[7] = _median_of(y) - _median_sorted(t) * row[4]
    else:
        valid = np.isfinite(y)
        row[7] = _median_of(y[valid]) - _median_sorted(t[valid]) * row[4]


@kernel
def _seasonal_gaps(t, y, period, n_cycles):
    """``(S, var S, n, pairs, slopes)`` of a series with missing points or a partial cycle,
    phase by phase (``_mk_small``, or the merge count above 64 points per phase)."""
    vy = np.empty(n_cycles)
    vt = np.empty(n_cycles)
    work = np.empty(n_cycles)
    s_tot = 0.0
    var_tot = 0.0
    pairs_tot = 0
    n_tot = 0
    for j in range(period):
        nj = 0
        for i in range(j, y.shape[0], period):
            if np.isfinite(y[i]):
                nj += 1
        n_tot += nj
        if nj >= 2:
            pairs_tot += nj * (nj - 1) // 2
    slopes = np.empty(pairs_tot)
    c = 0
    for j in range(period):
        nj = 0
        for i in range(j, y.shape[0], period):
            if np.isfinite(y[i]):
                vy[nj] = y[i]
                vt[nj] = t[i]
                nj += 1
        if nj < 2:
            continue
        if nj <= 64:
            s, var_s = _mk_small(vy, nj, work)
        else:
            s, var_s, _ = _mk_compressed(vy[:nj].copy(), np.empty(nj))
        s_tot += s
        var_tot += var_s
        for a in range(nj - 1):
            for b in range(a + 1, nj):
                slopes[c] = (vy[b] - vy[a]) / (vt[b] - vt[a])
                c += 1
    return s_tot, var_tot, n_tot, pairs_tot, slopes


@kernel_rows
def seasonal_trend_rows(Y, t, period, z_ci, want_ci, out):
    """Seasonal Mann-Kendall and seasonal Sen slope per row: season ``j`` holds the points
    ``j, j + period, ...``; S and var S add over seasons, the slope is the median of all
    within-season pairwise slopes. Same ``out`` layout as ``trend_rows``."""
    for r in range(Y.shape[0]):
        _seasonal_one(t, Y[r], period, z_ci, want_ci, out[r])


@kernel_rows_exact
def detrended_rows(Y, t, slope, use_ranks, out):
    """Per row: the finite values minus ``slope * t`` (as ranks when ``use_ranks``), centred,
    packed to the left of ``out`` (zeros after); returns nothing. Input of the ACF that the
    Hamed-Rao / Yue-Wang variance corrections need."""
    for r in range(Y.shape[0]):
        valid = np.isfinite(Y[r])
        y = Y[r][valid]
        n = y.shape[0]
        d = y - slope[r] * (t[valid] + 1.0)  # the +1 (a shift) as pymannkendall: identical ties
        out[r, :] = 0.0
        if n == 0:
            continue
        if use_ranks:
            _average_ranks(d, out[r, :n])
        else:
            out[r, :n] = d
        out[r, :n] -= np.mean(out[r, :n])
