"""Trend: Mann-Kendall, Theil-Sen, seasonal Mann-Kendall against SciPy and pymannkendall; error
rates over many seeds."""

import numpy as np
import pymannkendall as pmk
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from kernels import trend as K
from telcoanalytics.analysis import TREND_DTYPE, deseasonalise, trend

# Tolerances: S, var S and exact order statistics are sums/selections of the same floats as
# the references, so 1e-12 relative; p-values come from different normal-tail routines
# (pymannkendall computes 1 - cdf, which loses everything below 1e-16), so p is compared with
# an absolute 1e-12.
RTOL = 1e-12


def _series(rng, n, slope=0.0, ar=0.0, ties=False):
    e = rng.normal(size=n)
    for i in range(1, n):
        e[i] += ar * e[i - 1]
    y = slope * np.arange(n) + e
    return np.round(y * 2) / 2 if ties else y


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("slope", [0.0, 0.02])
def test_against_pymannkendall(rng, ties, slope):
    y = _series(rng, 120, slope=slope, ar=0.4, ties=ties)
    cases = [
        (None, None, pmk.original_test(y)),
        ("hamed_rao", "all", pmk.hamed_rao_modification_test(y)),
        ("hamed_rao", None, pmk.hamed_rao_modification_test(y, lag=3)),
        ("yue_wang", "all", pmk.yue_wang_modification_test(y)),
        ("yue_wang", None, pmk.yue_wang_modification_test(y, lag=1)),
        ("yue_wang", 2, pmk.yue_wang_modification_test(y, lag=2)),
    ]
    for correction, lag, ref in cases:
        r = trend(y, correction=correction, lag=lag)[0]
        np.testing.assert_allclose(r["s"], ref.s, rtol=RTOL)
        np.testing.assert_allclose(r["var_s"], ref.var_s, rtol=1e-10, err_msg=str(correction))
        np.testing.assert_allclose(r["z"], ref.z, rtol=1e-10)
        np.testing.assert_allclose(r["p"], ref.p, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(r["tau"], ref.Tau, rtol=RTOL)
        np.testing.assert_allclose(r["slope"], ref.slope, rtol=RTOL)
        np.testing.assert_allclose(r["intercept"], ref.intercept, rtol=1e-10, atol=1e-12)
        assert r["direction"] == {"increasing": 1, "decreasing": -1, "no trend": 0}[ref.trend]


def test_against_scipy_theilslopes_and_kendalltau(rng):
    for n, ties in [(40, False), (300, False), (300, True)]:
        y = _series(rng, n, slope=0.01, ties=ties)
        t = np.arange(n, dtype=np.float64) * 3.0
        r = trend(y, t.astype(np.int64), correction=None, per_ms=1, max_pairs=None)[0]
        ref = stats.theilslopes(y, t, alpha=0.95)
        np.testing.assert_allclose(
            [r["slope"], r["slope_lo"], r["slope_hi"]], [ref.slope, ref.low_slope, ref.high_slope], rtol=RTOL
        )
        np.testing.assert_allclose(r["intercept"], ref.intercept, rtol=1e-10)
        kt = stats.kendalltau(t, y, method="asymptotic")
        n_pairs = n * (n - 1) / 2
        _, counts = np.unique(y, return_counts=True)
        tied = (counts * (counts - 1) / 2).sum()
        np.testing.assert_allclose(r["s"] / np.sqrt(n_pairs * (n_pairs - tied)), kt.statistic, rtol=RTOL)
        z_plain = r["s"] / np.sqrt(r["var_s"])  # kendalltau has no continuity correction
        np.testing.assert_allclose(2 * stats.norm.sf(abs(z_plain)), kt.pvalue, rtol=1e-9)


def test_missing_values_skipped_as_pymannkendall(rng):
    y = _series(rng, 90, slope=0.03)
    y[[3, 40, 41, 77]] = np.nan
    r = trend(y, correction=None)[0]
    ref = pmk.original_test(y)
    assert r["n"] == 86
    np.testing.assert_allclose([r["s"], r["var_s"], r["z"]], [ref.s, ref.var_s, ref.z], rtol=RTOL)
    np.testing.assert_allclose(r["slope"], pmk.sens_slope(y).slope, rtol=RTOL)


def test_seasonal_against_pymannkendall(rng):
    period = 12
    y = _series(rng, 12 * 9 + 5, slope=0.01) + np.tile(np.sin(np.arange(period)), 10)[: 12 * 9 + 5] * 3
    y = np.round(y, 1)
    y[[5, 30]] = np.nan
    r = trend(y, period=period)[0]
    ref = pmk.seasonal_test(y, period=period)
    np.testing.assert_allclose([r["s"], r["var_s"], r["z"], r["tau"]], [ref.s, ref.var_s, ref.z, ref.Tau], rtol=RTOL)
    np.testing.assert_allclose(r["p"], ref.p, rtol=1e-6, atol=1e-12)
    # pymannkendall's seasonal slope is per cycle, ours per point
    np.testing.assert_allclose(r["slope"] * period, pmk.seasonal_sens_slope(y, period=period).slope, rtol=RTOL)
    assert r["slope_lo"] <= r["slope"] <= r["slope_hi"]


def test_seasonal_long_seasons_and_empty_rows(rng):
    # more than 64 points per season: whole cycles by the phase-vectorised path; with a missing
    # point, the merge-sort path per phase; an all-NaN row gives NaN
    y = np.vstack([_series(rng, 140, slope=0.01), np.full(140, np.nan)])
    y_gap = y[0].copy()
    y_gap[17] = np.nan
    ref_gap = pmk.seasonal_test(y_gap, period=2)
    np.testing.assert_allclose(
        trend(y_gap, period=2)[["s", "var_s"]].tolist()[0], [ref_gap.s, ref_gap.var_s], rtol=RTOL
    )
    r = trend(y, period=2, ci=False)
    for correction in ("hamed_rao", "yue_wang"):
        rc = trend(y, correction=correction)
        assert rc["variance_factor"][1] == 1.0 and np.isnan(rc["p"][1])
    ref = pmk.seasonal_test(y[0], period=2)
    np.testing.assert_allclose([r["s"][0], r["var_s"][0]], [ref.s, ref.var_s], rtol=RTOL)
    assert np.isnan(r["slope_lo"][0]) and r["n"][1] == 0 and np.isnan(r["slope"][1]) and r["direction"][1] == 0


def test_short_series_and_times(rng):
    r = trend(np.array([[1.0, 2.0, np.nan, np.nan], [1.0, 2.0, 3.0, 5.0]]))
    assert r["n"].tolist() == [2, 4] and np.isnan(r["z"][0]) and r.dtype == TREND_DTYPE
    t = np.datetime64("2026-01-01T00:00") + np.arange(4) * np.timedelta64(30, "m")
    r2 = trend([1.0, 2.0, 3.0, 4.0], t, correction=None)
    assert r2["slope"][0] == pytest.approx(2.0)  # per hour: 1 per half hour
    assert r2["intercept"][0] == pytest.approx(1.0)


def test_deseasonalise(rng):
    y = np.tile([0.0, 10.0, 20.0], 5) + 0.1 * np.arange(15)
    d = deseasonalise(y, 3)
    assert d.shape == (1, 15)
    np.testing.assert_allclose(np.diff(d[0, ::3]), 0.3, rtol=1e-12)
    assert np.isnan(deseasonalise([np.nan, 1.0, np.nan, 2.0], 2)[0, 0])


@given(
    st.lists(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]) | st.floats(-5, 5), min_size=3, max_size=60),
    st.floats(0.0, 1.0),
    st.integers(1, 4),
)
def test_slope_ranks_match_sorted_pair_slopes(values, q, sample_factor):
    y = np.array(values)
    n = y.size
    t = np.cumsum(np.arange(1, n + 1) % 3 + 1.0)  # irregular, strictly increasing
    slopes = np.sort(np.concatenate([(y[i + 1 :] - y[i]) / (t[i + 1 :] - t[i]) for i in range(n - 1)]))
    k = int(q * (slopes.size - 1))
    k2 = min(k + 1, slopes.size - 1)
    a, b = K.slope_ranks(t, y, k, k2, sample_factor)
    # exact up to the rounding of the bracket counts on y - s t (documented in slope_ranks): pairs
    # whose slopes differ by less than that from a bracket end may be ranked on either side of it
    tol = 8 * np.finfo(float).eps * (np.abs(y).max() + np.abs(slopes).max() * t[-1]) / np.diff(t).min()
    assert abs(a - slopes[k]) <= tol and abs(b - slopes[k2]) <= tol
    if tol < np.diff(np.unique(slopes)).min(initial=np.inf) / 2:  # ranks apart by more than rounding: exact
        assert (a, b) == (slopes[k], slopes[k2])
    s_ref = sum(np.sign(y[i + 1 :] - y[i]).sum() for i in range(n - 1))
    assert K._mk_compressed(y.copy(), np.empty(n))[0] == s_ref


def test_slope_ranks_when_the_sample_misses():
    # all pairwise slopes equal: every sampled bracket end has count > rank, so the kernel
    # must widen to an open bracket and still answer exactly
    t = np.arange(50.0)
    y = 2.0 * t
    assert K.slope_ranks(t, y, 10, 11, 2) == (2.0, 2.0)
    assert K.slope_ranks(t, y, 600, 601, 2) == (2.0, 2.0)
    # a tied series whose sample puts the upper bracket end below the wanted rank (found by search)
    y3 = np.array([0, -1, 1, -1, 2, 0, -1, 0, 1, 0, 0, 0, 0, -1, 1, 1, 1, -1], dtype=np.float64)
    t3 = np.arange(18.0)
    ref = np.sort(np.concatenate([(y3[i + 1 :] - y3[i]) / (t3[i + 1 :] - t3[i]) for i in range(17)]))
    assert K.slope_ranks(t3, y3, 35, 35, 2) == (ref[35], ref[35])
    y2 = np.where(t < 49, 0.0, 1.0)  # every slope 0 except the pairs with the last point
    n_pairs = 50 * 49 // 2
    assert K.slope_ranks(t, y2, n_pairs - 49, n_pairs - 1, 1) == (1.0 / 49, 1.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(values=np.ones((2, 2, 2))), "1-D"),
        (dict(values=[1.0, np.inf, 2.0]), "infinite"),
        (dict(values=["a", "b"]), "numeric"),
        (dict(values=[1.0, 2.0, 3.0], times=[0, 2, 1]), "strictly increasing"),
        (dict(values=[1.0, 2.0, 3.0], times=[0.0, 1.0, 2.0]), "datetime64"),
        (dict(values=[1.0, 2.0, 3.0], times=[0, 1]), "one time per point"),
        (dict(values=[1.0, 2.0, 3.0], correction="bogus"), "correction"),
        (dict(values=[1.0, 2.0, 3.0], alpha=1.5), "alpha"),
        (dict(values=[1.0, 2.0, 3.0], lag=0), "lag"),
        (dict(values=[1.0, 2.0, 3.0], lag="some"), "lag"),
        (dict(values=[1.0, 2.0, 3.0], period=2), "two cycles"),
        (dict(values=[1.0, 2.0, 3.0, 4.0], period=True), "period"),
        (dict(values=[1.0, 2.0, 3.0], max_pairs=1), "max_pairs"),
        (dict(values=[1.0, 2.0, 3.0], threads=0), "threads"),
    ],
)
def test_errors_name_the_argument(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        trend(**kwargs)


@pytest.mark.slow
def test_false_positive_rate_is_nominal():
    """No trend, 2,000 seeds. White noise: the plain and seasonal tests reject at alpha = 0.05
    within the 99.9 % binomial range, the corrected ones (default lags) at most 8 %. AR(1)
    noise (phi = 0.5, 500 points): the plain test is far too liberal, Hamed-Rao much less."""
    rng = np.random.default_rng(7)
    y = rng.normal(size=(2000, 100))
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 2000, 0.05) / 2000
    rate = (trend(y, correction=None, ci=False)["p"] < 0.05).mean()
    assert lo <= rate <= hi, rate
    for correction in ("hamed_rao", "yue_wang"):
        rate = (trend(y, correction=correction, ci=False)["p"] < 0.05).mean()
        assert rate <= 0.08, (correction, rate)
    seasonal = y + np.tile(np.sin(np.arange(10)), 10)
    rate = (trend(seasonal, period=10, ci=False)["p"] < 0.05).mean()
    assert lo <= rate <= hi, rate
    e = rng.normal(size=(2000, 500))
    ar = np.empty_like(e)
    ar[:, 0] = e[:, 0]
    for i in range(1, 500):
        ar[:, i] = 0.5 * ar[:, i - 1] + e[:, i]
    plain = (trend(ar, correction=None, ci=False)["p"] < 0.05).mean()
    corrected = (trend(ar, correction="hamed_rao", ci=False)["p"] < 0.05).mean()
    assert plain > 0.15 and corrected < 0.10, (plain, corrected)


@pytest.mark.slow
def test_known_slope_found_and_inside_interval_at_nominal_rate():
    rng = np.random.default_rng(11)
    n_seeds = 1000
    y = 0.02 * np.arange(150) + rng.normal(size=(n_seeds, 150))
    r = trend(y, correction=None)
    inside = ((r["slope_lo"] <= 0.02) & (0.02 <= r["slope_hi"])).mean()
    lo, hi = stats.binom.ppf([0.0005, 0.9995], n_seeds, 0.95) / n_seeds
    assert lo <= inside <= hi, inside
    assert (r["direction"] == 1).mean() > 0.99
    # seasonal: slope per point, inside the seasonal interval at about the nominal rate
    ys = 0.02 * np.arange(240) + 5 * np.tile(np.sin(np.arange(24) / 4), 10) + rng.normal(size=(n_seeds, 240))
    rs = trend(ys, period=24)
    inside_s = ((rs["slope_lo"] <= 0.02) & (0.02 <= rs["slope_hi"])).mean()
    assert lo - 0.02 <= inside_s <= hi + 0.02, inside_s


@pytest.mark.slow
def test_long_series_exact_against_scipy():
    rng = np.random.default_rng(5)
    y = _series(rng, 2016, slope=0.001, ar=0.3, ties=True)
    r = trend(y, correction="hamed_rao", lag="all", max_pairs=None)[0]
    ref = stats.theilslopes(y)
    np.testing.assert_allclose(
        [r["slope"], r["slope_lo"], r["slope_hi"]], [ref.slope, ref.low_slope, ref.high_slope], rtol=RTOL
    )
    hr = pmk.hamed_rao_modification_test(y)
    np.testing.assert_allclose([r["s"], r["var_s"]], [hr.s, hr.var_s], rtol=1e-9)


def _all_pair_slopes(t, y):
    i, j = np.triu_indices(y.size, 1)
    return np.sort((y[j] - y[i]) / (t[j] - t[i]))


def test_sampled_slopes_within_the_stated_rank_bound(rng):
    """Default (sampled) Theil-Sen on 2,016 points: each returned slope lies between the exact
    order statistics (all 2 million pairs, NumPy) at its quantile +- 1.5 % (the documented DKW
    bound, 99.8 % per series); the typical error is far smaller; S and p equal the exact ones."""
    n = 2016
    y = np.vstack([_series(rng, n, slope=0.002, ar=0.3), _series(rng, n, ties=True)])
    t = np.arange(n, dtype=np.float64)
    sampled = trend(y, correction=None, threads=2)
    exact = trend(y, correction=None, max_pairs=None)
    for name in ("s", "var_s", "p"):
        np.testing.assert_array_equal(sampled[name], exact[name])
    n_pairs = n * (n - 1) // 2
    r_lo, r_hi = K._ci_ranks(n_pairs, exact["var_s"][0], 1.959963984540054)
    for r in range(2):
        slopes = _all_pair_slopes(t, y[r])
        for col, q in (("slope", 0.5), ("slope_lo", r_lo / n_pairs), ("slope_hi", r_hi / n_pairs)):
            lo = slopes[int(max(q - 0.015, 0) * n_pairs)]
            hi = slopes[min(int((q + 0.015) * n_pairs), n_pairs - 1)]
            assert lo <= sampled[col][r] <= hi, (r, col)
        below = np.searchsorted(slopes, sampled["slope"][r], "left") / n_pairs
        upto = np.searchsorted(slopes, sampled["slope"][r], "right") / n_pairs
        assert below - 0.01 < 0.5 < upto + 0.01, (below, upto)  # 0.3 % typical: 3 standard deviations


@pytest.mark.slow
def test_sampled_interval_covers_at_nominal_rate():
    """400 series of 400 points (79,800 pairs, so sampled): the known slope is inside the sampled
    95 % interval at the nominal rate (99.9 % binomial band)."""
    rng = np.random.default_rng(12)
    y = 0.01 * np.arange(400) + rng.normal(size=(400, 400))
    r = trend(y, correction=None)
    inside = ((r["slope_lo"] <= 0.01) & (0.01 <= r["slope_hi"])).mean()
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 400, 0.95) / 400
    assert lo <= inside <= hi, inside


@given(
    st.integers(1, 6000),
    st.sampled_from(["normal", "cauchy", "ties", "clustered"]),
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    st.integers(0, 2**31),
)
def test_order_stats_match_a_full_sort(n, kind, qs, seed):
    rng = np.random.default_rng(seed)
    a = {
        "normal": lambda: rng.normal(size=n),
        "cauchy": lambda: rng.standard_cauchy(size=n),
        "ties": lambda: rng.integers(0, 5, size=n).astype(np.float64),
        "clustered": lambda: np.where(rng.uniform(size=n) < 0.9, 1.0 + 1e-9 * rng.normal(size=n), rng.normal(size=n)),
    }[kind]()
    ranks = np.array([int(q * (n - 1)) for q in qs], dtype=np.int64)  # any order, repeats allowed
    before = a.copy()
    out = np.empty(ranks.size)
    K._order_stats(a, n, ranks, out)
    np.testing.assert_array_equal(out, np.sort(a)[ranks])
    np.testing.assert_array_equal(a, before)


def test_order_stats_when_the_sample_misses():
    # the strided sample sees only the large values: its window misses, the whole range is used
    n = 4096
    a = np.zeros(n)
    a[(np.arange(256) * n) // 256] = 1e6 + np.arange(256.0)
    out = np.empty(3)
    K._order_stats(a, n, np.array([100, 110, n - 1]), out)
    np.testing.assert_array_equal(out, [0.0, 0.0, 1e6 + 255.0])


def test_seasonal_whole_cycles_match_the_gap_path(rng):
    """The whole-cycle path (no missing point) against the phase-by-phase path and pymannkendall,
    with ties within phases."""
    period = 24
    y = np.round(_series(rng, period * 7, slope=0.01) + np.tile(np.sin(np.arange(period)), 7), 1)
    r = trend(y, period=period)[0]
    y_gap = np.append(y, np.nan)  # one missing point: the phase-by-phase path, same pairs
    r_gap = trend(y_gap, period=period)[0]
    for f in ("s", "var_s", "slope", "slope_lo", "slope_hi", "intercept"):
        assert r[f] == pytest.approx(r_gap[f], rel=1e-12), f
    ref = pmk.seasonal_test(y, period=period)
    np.testing.assert_allclose([r["s"], r["var_s"]], [ref.s, ref.var_s], rtol=RTOL)
    np.testing.assert_allclose(r["slope"] * period, pmk.seasonal_sens_slope(y, period=period).slope, rtol=RTOL)
