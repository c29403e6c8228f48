"""Before/after comparison: Welch and Mann-Whitney against SciPy; interval coverage of a known
effect over many seeds, plain and difference-in-differences."""

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from telcoanalytics.analysis import EFFECT_DTYPE, before_after, difference_in_differences
from telcoanalytics.analysis.compare import MS_PER_HOUR, MS_PER_WEEK

STEP_MS = 15 * 60_000
T = np.arange(0, 4 * MS_PER_WEEK, STEP_MS)
CHANGE = 2 * MS_PER_WEEK


def _weekly(t):
    return 2 * np.sin(2 * np.pi * t / MS_PER_WEEK) + np.sin(2 * np.pi * t / (24 * MS_PER_HOUR))


def test_tests_against_scipy(rng):
    y = 10 + _weekly(T)[None] + rng.normal(0, 1, (3, T.size))
    y = np.round(y, 1)  # ties
    y[:, T >= CHANGE] += [[0.0], [0.2], [-0.5]]
    y[1, 50:90] = np.nan
    r = before_after(y, T, CHANGE)
    assert r.dtype == EFFECT_DTYPE and (r["n_buckets"] == 168).all()
    for i in range(3):
        after, before = y[i, T >= CHANGE], y[i, T < CHANGE]
        after, before = after[np.isfinite(after)], before[np.isfinite(before)]
        w = stats.ttest_ind(after, before, equal_var=False)
        mw = stats.mannwhitneyu(after, before, method="asymptotic")
        # Welch: same moments (Welford vs two-pass), 1e-10; p via the t tail, 1e-8
        np.testing.assert_allclose([r["welch_t"][i], r["welch_df"][i]], [w.statistic, w.df], rtol=1e-10)
        np.testing.assert_allclose(r["welch_p"][i], w.pvalue, rtol=1e-8)
        assert r["mw_u"][i] == mw.statistic
        np.testing.assert_allclose(r["mw_p"][i], mw.pvalue, rtol=1e-10)
        np.testing.assert_allclose([r["mean_after"][i], r["mean_before"][i]], [after.mean(), before.mean()], rtol=1e-12)
        assert (r["n_after"][i], r["n_before"][i]) == (after.size, before.size)


def test_matched_effect_is_the_mean_of_bucket_differences(rng):
    y = 5 + _weekly(T) + rng.normal(0, 0.5, T.size) + (T >= CHANGE) * 1.0
    kw = dict(bucket_ms=6 * MS_PER_HOUR, gap_ms=MS_PER_HOUR, window_ms=MS_PER_WEEK)
    r = before_after(y, T, CHANGE, hac_lags=0, **kw)
    before = (T >= CHANGE - MS_PER_HOUR - MS_PER_WEEK) & (T < CHANGE - MS_PER_HOUR)
    after = (T >= CHANGE + MS_PER_HOUR) & (T < CHANGE + MS_PER_HOUR + MS_PER_WEEK)
    b = (T % MS_PER_WEEK) // (6 * MS_PER_HOUR)
    d = np.array([y[after & (b == k)].mean() - y[before & (b == k)].mean() for k in range(28)])
    np.testing.assert_allclose(r["effect"][0], d.mean(), rtol=1e-10)
    se = d.std(ddof=1) / np.sqrt(28)
    np.testing.assert_allclose(
        [r["lo"][0], r["hi"][0]], d.mean() + np.array([-1, 1]) * stats.t.ppf(0.975, 27) * se, rtol=1e-10
    )
    # Newey-West: the HAC standard error of a mean in statsmodels (Bartlett kernel, n / (n - 1))
    hac = sm.OLS(d, np.ones(28)).fit(cov_type="HAC", cov_kwds={"maxlags": 3, "use_correction": True})
    r3 = before_after(y, T, CHANGE, hac_lags=3, **kw)
    np.testing.assert_allclose(r3["se"][0], hac.bse[0], rtol=1e-10)


def test_datetime_inputs_and_too_few_buckets():
    t = np.datetime64("2026-05-04T00:00", "ms") + np.arange(T.size) * np.timedelta64(STEP_MS, "ms")
    y = np.ones(T.size)
    r = before_after(y, t, t[T.size // 2], bucket_ms=MS_PER_WEEK)
    assert r["n_buckets"][0] == 1 and np.isnan(r["lo"][0]) and r["effect"][0] == 0.0


def test_difference_in_differences_removes_a_common_shock(rng):
    shock = (T >= CHANGE) * 4.0
    controls = 10 + _weekly(T) + shock + rng.normal(0, 0.3, (4, T.size))
    treated = 10 + _weekly(T) + shock + (T >= CHANGE) * 0.7 + rng.normal(0, 0.3, (2, T.size))
    plain = before_after(treated, T, CHANGE)
    did = difference_in_differences(treated, controls, T, CHANGE)
    per_row = difference_in_differences(treated, np.stack([controls, controls]), T, CHANGE)
    assert (plain["lo"] > 4.0).all()
    assert ((did["lo"] < 0.7) & (0.7 < did["hi"])).all()
    np.testing.assert_allclose(per_row["effect"], did["effect"], rtol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: before_after(np.ones(T.size), T, 4 * MS_PER_WEEK), "after side"),
        (lambda: before_after(np.ones(T.size), T, -MS_PER_WEEK), "before side"),
        (lambda: before_after(np.ones(T.size), T, 1.5), "change_time"),
        (lambda: before_after(np.ones(T.size), T, CHANGE, bucket_ms=5 * MS_PER_HOUR), "multiple"),
        (lambda: before_after(np.ones(T.size), T, CHANGE, level=2.0), "level"),
        (lambda: before_after(np.ones(T.size), T, CHANGE, window_ms=0), "window_ms"),
        (lambda: before_after(np.ones(0), np.ones(0, dtype=np.int64), CHANGE), "empty"),
        (lambda: difference_in_differences(np.ones(T.size), np.ones((2, 3, T.size)), T, CHANGE), "controls"),
        (lambda: difference_in_differences(np.ones(T.size), np.full((1, T.size), np.inf), T, CHANGE), "infinite"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.slow
def test_interval_coverage_over_seeds():
    """Weekly + daily pattern, AR(1) noise within the day (phi = 0.6), known effect 0.3: the
    95 % intervals (plain, and difference-in-differences against 3 controls sharing a random
    shock) cover the truth at about their nominal rate over 400 seeds."""
    rng = np.random.default_rng(21)
    n_seeds, effect = 400, 0.3
    lo, hi = stats.binom.ppf([0.0005, 0.9995], n_seeds, 0.95) / n_seeds

    def noise(shape):
        e = rng.normal(0, 1, shape)
        for i in range(1, shape[-1]):
            e[..., i] += 0.6 * e[..., i - 1]
        return e * 0.8

    base = 10 + _weekly(T)
    y = base + noise((n_seeds, T.size)) + (T >= CHANGE) * effect
    r = before_after(y, T, CHANGE)
    cover = ((r["lo"] <= effect) & (effect <= r["hi"])).mean()
    assert lo - 0.02 <= cover <= hi, cover
    shock = rng.normal(0, 1, (n_seeds, 1)) * (T >= CHANGE)
    treated = base + shock + noise((n_seeds, T.size)) + (T >= CHANGE) * effect
    controls = base + shock[:, None, :] + noise((n_seeds, 3, T.size))
    d = difference_in_differences(treated, controls, T, CHANGE)
    cover_did = ((d["lo"] <= effect) & (effect <= d["hi"])).mean()
    assert lo - 0.02 <= cover_did <= hi, cover_did
