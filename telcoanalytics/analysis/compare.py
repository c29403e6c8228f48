"""Before/after comparison around a change (software upgrade, re-homing, new site).

For each KPI series: the effect (after minus before) with a confidence interval, seasonally
matched by comparing the same hours of the week; Welch's t and Mann-Whitney U on the raw before
and after points; and difference-in-differences against untouched control series.
"""

import numpy as np
from scipy import special

from kernels import stats as K
from telcoanalytics.analysis._common import MS_PER_HOUR, as_series_matrix, as_time_ms, check_level, check_positive_int

MS_PER_WEEK = 7 * 24 * MS_PER_HOUR

EFFECT_DTYPE = np.dtype(
    [
        ("effect", np.float64),  # seasonally matched after - before
        ("lo", np.float64),  # confidence interval of the effect
        ("hi", np.float64),
        ("se", np.float64),
        ("df", np.float64),  # degrees of freedom of the interval (matched buckets - 1)
        ("n_buckets", np.int64),  # season buckets seen both before and after
        ("n_before", np.int64),
        ("n_after", np.int64),
        ("mean_before", np.float64),
        ("mean_after", np.float64),
        ("welch_t", np.float64),  # Welch's t of the raw after vs before points
        ("welch_df", np.float64),
        ("welch_p", np.float64),
        ("mw_u", np.float64),  # Mann-Whitney U of the after points
        ("mw_p", np.float64),  # two-sided, normal approximation with tie and continuity corrections
    ]
)
"""One row per series, returned by :func:`before_after` and :func:`difference_in_differences`."""


def welch_t(mean1, var1, n1, mean2, var2, n2):
    """Welch's t, Welch-Satterthwaite d.f. and two-sided p of ``mean1 - mean2`` (arrays).

    ``var`` are unbiased sample variances; as ``scipy.stats.ttest_ind(equal_var=False)``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        v1 = var1 / n1
        v2 = var2 / n2
        t = (mean1 - mean2) / np.sqrt(v1 + v2)
        df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
        p = 2.0 * special.stdtr(df, -np.abs(t))
    return t, df, p


def mann_whitney_p(u1, tie_term, n1, n2):
    """Two-sided p of Mann-Whitney ``U1`` by the normal approximation with tie correction and
    continuity correction (``scipy.stats.mannwhitneyu(method="asymptotic")``)."""
    n = n1 + n2
    u = np.maximum(u1, n1 * n2 - u1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0))))
        z = (u - n1 * n2 / 2.0 - 0.5) / sd
    return np.clip(2.0 * special.ndtr(-z), 0.0, 1.0)


def _sides(t_ms, change_ms, window_ms, gap_ms):
    side = np.full(t_ms.shape, -1, dtype=np.int64)
    side[(t_ms >= change_ms - gap_ms - window_ms) & (t_ms < change_ms - gap_ms)] = 0
    side[(t_ms >= change_ms + gap_ms) & (t_ms < change_ms + gap_ms + window_ms)] = 1
    return side


def before_after(
    values,
    times,
    change_time,
    *,
    window_ms=2 * MS_PER_WEEK,
    gap_ms=0,
    bucket_ms=MS_PER_HOUR,
    season_ms=MS_PER_WEEK,
    level=0.95,
    hac_lags=None,
):
    """Effect of a change on each series, seasonally matched, with Welch and Mann-Whitney tests.

    Parameters
    ----------
    values : array_like (n_points,) or (n_series, n_points)
        One KPI per row on the time axis ``times``; NaN = missing.
    times : array_like of datetime64 or int64 ms (n_points,)
    change_time : datetime64 or int64 ms
    window_ms : int
        Length compared on each side (default two weeks).
    gap_ms : int
        Time left out on each side of the change (a maintenance window, a settling period).
    bucket_ms, season_ms : int
        Points are matched by their bucket within the season: by default the hour of the week
        (``season_ms`` a multiple of ``bucket_ms``; buckets are aligned to the epoch, UTC).
    level : float
        Confidence level of the interval.
    hac_lags : int, optional
        Neighbouring buckets in the Newey-West variance; None: ``floor(4 (B / 100)^(2/9))``
        for ``B`` buckets per season (4 for the hours of a week), 0 for independent buckets.

    Returns
    -------
    numpy structured array of ``EFFECT_DTYPE``, one row per series.

    Notes
    -----
    Per season bucket ``b`` seen on both sides, ``d_b`` is the mean after minus the mean before;
    the effect is the mean of the ``d_b`` and its interval a t interval with ``B - 1`` d.f. from
    their Newey-West spread (matched pairs: a weekly pattern cancels, noise correlated within a
    bucket stays inside one ``d_b`` and noise shared by neighbouring buckets is in the variance). Welch's t and Mann-Whitney U compare the raw points and ignore the
    season.

    Examples
    --------
    >>> t = np.arange(0, 4 * MS_PER_WEEK, MS_PER_HOUR)
    >>> y = 10.0 + np.sin(2 * np.pi * t / MS_PER_WEEK) + (t >= 2 * MS_PER_WEEK) * 0.5
    >>> y = y + np.random.default_rng(0).normal(0, 0.1, t.size)
    >>> r = before_after(y, t, 2 * MS_PER_WEEK)
    >>> bool(r["lo"][0] < 0.5 < r["hi"][0]), int(r["n_buckets"][0])
    (True, 168)
    """
    y = as_series_matrix(values)
    t_ms, _ = as_time_ms(times, y.shape[1])
    if t_ms.size == 0:
        raise ValueError("times is empty")
    change_ms = _change_ms(change_time)
    window_ms = check_positive_int(window_ms, "window_ms")
    gap_ms = check_positive_int(gap_ms, "gap_ms", minimum=0)
    bucket_ms = check_positive_int(bucket_ms, "bucket_ms")
    season_ms = check_positive_int(season_ms, "season_ms")
    level = check_level(level, "level")
    if season_ms % bucket_ms:
        raise ValueError(f"season_ms={season_ms} must be a multiple of bucket_ms={bucket_ms}")
    side = _sides(t_ms, change_ms, window_ms, gap_ms)
    if not (side == 0).any() or not (side == 1).any():
        raise ValueError(
            f"no points on {'before' if not (side == 0).any() else 'after'} side of change_time within window_ms; "
            "check change_time against times, or widen window_ms"
        )
    n_buckets = season_ms // bucket_ms
    if hac_lags is None:
        hac_lags = int(4 * (n_buckets / 100.0) ** (2.0 / 9.0))
    hac_lags = min(check_positive_int(hac_lags, "hac_lags", minimum=0), n_buckets - 1)
    bucket = (t_ms % season_ms) // bucket_ms
    mom = np.empty((y.shape[0], 2, n_buckets, 3))
    K.bucket_moments_rows(y, bucket, side, n_buckets, mom)
    out = np.zeros(y.shape[0], dtype=EFFECT_DTYPE)
    _matched(mom, level, out, hac_lags)
    one = np.empty((y.shape[0], 2, 1, 3))
    K.bucket_moments_rows(y, np.zeros_like(bucket), side, 1, one)
    cnt_b, mean_b, m2_b = one[:, 0, 0, 0], one[:, 0, 0, 1], one[:, 0, 0, 2]
    cnt_a, mean_a, m2_a = one[:, 1, 0, 0], one[:, 1, 0, 1], one[:, 1, 0, 2]
    out["n_before"], out["n_after"] = cnt_b, cnt_a
    with np.errstate(divide="ignore", invalid="ignore"):
        out["mean_before"] = np.where(cnt_b > 0, mean_b, np.nan)
        out["mean_after"] = np.where(cnt_a > 0, mean_a, np.nan)
        out["welch_t"], out["welch_df"], out["welch_p"] = welch_t(
            mean_a, m2_a / (cnt_a - 1), cnt_a, mean_b, m2_b / (cnt_b - 1), cnt_b
        )
    mw = np.empty((y.shape[0], K.MW_COLS))
    K.mann_whitney_rows(y, side, mw)
    out["mw_u"] = mw[:, 0]
    out["mw_p"] = mann_whitney_p(mw[:, 0], mw[:, 1], mw[:, 2], mw[:, 3])
    return out


def _change_ms(change_time):
    c = np.asarray(change_time)
    if np.issubdtype(c.dtype, np.datetime64):
        return int(c.astype("datetime64[ms]").astype(np.int64))
    if np.issubdtype(c.dtype, np.integer) and c.ndim == 0:
        return int(c)
    raise TypeError(f"change_time must be a datetime64 or int64 ms scalar; got {change_time!r}")


def _matched(mom, level, out, hac_lags):
    """Matched-bucket effect and t interval from per-bucket moments ``mom`` (rows, 2, B, 3).

    The variance of the mean of the ``d_b`` is Newey-West (Bartlett weights over ``hac_lags``
    neighbouring buckets, with the small-sample factor ``B / (B - 1)``): neighbouring buckets
    share slow noise.
    """
    both = (mom[:, 0, :, 0] > 0) & (mom[:, 1, :, 0] > 0)
    d = np.where(both, mom[:, 1, :, 1] - mom[:, 0, :, 1], 0.0)
    nb = both.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = d.sum(axis=1) / nb
        dev = np.where(both, d - effect[:, None], 0.0)
        long_run = (dev * dev).sum(axis=1)
        for k in range(1, hac_lags + 1):
            long_run += 2.0 * (1.0 - k / (hac_lags + 1.0)) * (dev[:, :-k] * dev[:, k:]).sum(axis=1)
        se = np.sqrt(np.maximum(long_run, 0.0) / (nb - 1) / nb)
    df = (nb - 1).astype(np.float64)
    tq = np.where(df >= 1, special.stdtrit(np.maximum(df, 1), 0.5 + level / 2.0), np.nan)
    out["effect"] = effect
    out["se"] = np.where(nb >= 2, se, np.nan)
    out["df"] = df
    out["lo"] = effect - tq * out["se"]
    out["hi"] = effect + tq * out["se"]
    out["n_buckets"] = nb


def difference_in_differences(values, controls, times, change_time, **kwargs):
    """Before/after effect of each series net of the same change in control series.

    Parameters
    ----------
    values : array_like (n_points,) or (n_series, n_points)
        Series of the changed elements.
    controls : array_like (n_controls, n_points) or (n_series, n_controls, n_points)
        Untouched neighbouring elements' series of the same KPI: one control set shared by all
        rows, or one per row. Their mean at each time (NaN-aware) is subtracted first.
    times, change_time, **kwargs
        As :func:`before_after`.

    Returns
    -------
    numpy structured array of ``EFFECT_DTYPE``: the fields describe the differenced series
    ``values - mean(controls)``, so ``effect`` is the difference-in-differences estimate.

    Examples
    --------
    >>> t = np.arange(0, 4 * MS_PER_WEEK, MS_PER_HOUR)
    >>> shock = (t >= 2 * MS_PER_WEEK) * 3.0  # hits everyone (e.g. a holiday)
    >>> noise = np.random.default_rng(0).normal(0, 0.1, (3, t.size))
    >>> treated = 10 + shock + (t >= 2 * MS_PER_WEEK) * 0.5 + noise[0]
    >>> r = difference_in_differences(treated, 10 + shock + noise[1:], t, 2 * MS_PER_WEEK)
    >>> bool(r["lo"][0] < 0.5 < r["hi"][0])
    True
    """
    y = as_series_matrix(values)
    c = np.asarray(controls, dtype=np.float64)
    if c.ndim == 2:
        c = np.broadcast_to(c, (y.shape[0],) + c.shape)
    if c.ndim != 3 or c.shape[0] != y.shape[0] or c.shape[2] != y.shape[1] or c.shape[1] == 0:
        raise ValueError(
            f"controls must be (n_controls, {y.shape[1]}) or ({y.shape[0]}, n_controls, {y.shape[1]}); got {c.shape}"
        )
    if np.isinf(c).any():
        raise ValueError("controls contain an infinite value; use NaN for a missing value")
    cnt = np.isfinite(c).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        control_mean = np.where(cnt > 0, np.nansum(c, axis=1) / cnt, np.nan)
    return before_after(y - control_mean, times, change_time, **kwargs)
