"""Holt-Winters: recursion against a plain reference, accuracy against statsmodels (MASE on
held-back data), interval coverage and capacity crossings on generated series."""

import warnings

import numpy as np
import pytest
from scipy import stats

from kernels import forecast as K
from telcoanalytics.analysis import CROSSING_DTYPE, PARAM_DTYPE, fit_holt_winters, mase
from tests.analysis.reference import ets_aada_multistep_sse, ets_aada_sse, simulate_ets


def test_sse_and_state_match_the_plain_recursion(rng):
    m = 4
    y = rng.normal(size=30) + np.tile([0.0, 2.0, 1.0, -1.0], 8)[:30]
    y[[5, 6, 17]] = np.nan
    init = np.empty(2 + m)
    K.hw_init(y, m, init)
    par = np.array([[0.3, 0.1, 0.9], [0.05, 0.0, 0.2], [0.2, 0.5, 0.0], [0.9, 0.8, 0.98]])
    sse = np.empty(3)
    state = np.empty((2 + m, 3))
    K.hw_sse(y, m, init, par, 1, sse, state)
    for p in range(3):
        ref = ets_aada_sse(y, m, *par[:, p], init[0], init[1], init[2:])
        # same operations in another order (fast math may fuse multiply-adds): 1e-12 relative
        np.testing.assert_allclose(sse[p], ref[0], rtol=1e-12)
        np.testing.assert_allclose(state[:, p], [ref[1], ref[2], *ref[3]], rtol=1e-12, atol=1e-12)


def test_multistep_criterion_matches_the_plain_reference(rng):
    m, horizon = 4, 6
    y = rng.normal(size=29) + np.tile([0.0, 2.0, 1.0, -1.0], 8)[:29]  # 29: the last origin is cut short
    y[[7, 8, 20]] = np.nan
    init = np.empty(2 + m)
    K.hw_init(y, m, init)
    par = np.array([[0.3, 0.05], [0.05, 0.0], [0.2, 0.5], [0.9, 0.98]])
    sse = np.empty(2)
    K.hw_sse(y, m, init, par, horizon, sse, np.empty((2 + m, 2)))
    for p in range(2):
        ref = ets_aada_multistep_sse(y, m, *par[:, p], init[0], init[1], init[2:], horizon)
        np.testing.assert_allclose(sse[p], ref, rtol=1e-12)


def test_fit_horizon_prefers_smoother_levels_on_transient_noise():
    """AR(1) noise around a fixed daily profile: one-step fitting tracks the noise (large alpha),
    fitting day-ahead errors does not, and forecasts the next day better."""
    rng = np.random.default_rng(4)
    m, n = 12, 12 * 20
    noise = np.zeros((6, n + m))
    e = rng.normal(size=(6, n + m))
    for i in range(1, n + m):
        noise[:, i] = 0.7 * noise[:, i - 1] + e[:, i]
    y = 20 + 3 * np.sin(2 * np.pi * np.arange(n + m) / m) + noise
    one = fit_holt_winters(y[:, :n], m, fit_horizon=1, max_iter=10)
    multi = fit_holt_winters(y[:, :n], m, fit_horizon=m, max_iter=10)
    default = fit_holt_winters(y[:, :n], m, max_iter=10)  # fit_horizon = m // 6 = 2
    assert np.median(multi.params["alpha"]) < np.median(one.params["alpha"])
    assert np.median(default.params["alpha"]) < np.median(one.params["alpha"])
    score = [mase(y[:, :n], y[:, n:], f.forecast(m).mean, m).mean() for f in (one, multi, default)]
    assert score[1] < score[0] and score[2] < score[0], score


def test_default_fit_horizon_is_a_sixth_of_the_season(rng):
    y = np.array([simulate_ets(rng, 24 * 5, 24, 0.3, 0.02, 0.1, 0.9, 1.0) for _ in range(3)])
    for m, seasonal, horizon in ((24, True, 4), (12, True, 2), (5, True, 1), (24, False, 1)):
        default = fit_holt_winters(y, m, seasonal=seasonal, max_iter=5)
        explicit = fit_holt_winters(y, m, seasonal=seasonal, fit_horizon=horizon, max_iter=5)
        np.testing.assert_array_equal(default.params, explicit.params)
        np.testing.assert_array_equal(default.state, explicit.state)
        if horizon > 1:  # and the criterion is not the one-step one
            one = fit_holt_winters(y, m, seasonal=seasonal, fit_horizon=1, max_iter=5)
            assert not np.array_equal(default.params, one.params)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_multistep_criterion_matches_the_plain_reference(rng, dtype):
    """The lockstep lanes' multi-step SSE -- one pass for H <= m, origins run ahead for H > m --
    against the plain reference, missing points and a cut-short last origin included; the final
    state is the one-step recursion's whatever the criterion."""
    m, n = 6, 6 * 7 + 5
    y = np.array([simulate_ets(rng, n, m, a, 0.02, 0.1, 0.9, 1.0) for a in (0.1, 0.3, 0.6)])
    y[0, [3, 4, 20]] = np.nan
    y[2, n - 2] = np.nan
    init = np.empty((2 + m, 3))
    for r in range(3):
        K.hw_init(y[r], m, init[:, r])
    par = np.array([[0.3, 0.05, 0.6, 0.2], [0.05, 0.0, 0.1, 0.02], [0.2, 0.5, 0.0, 0.1], [0.9, 0.98, 0.8, 0.85]])
    act = np.array([0, 2])  # series 1 inactive: lanes are (candidate, active series) pairs
    lanes = np.repeat(par, 2, axis=1).astype(dtype)  # lane c * 2 + a
    rtol = 1e-12 if dtype == np.float64 else 2e-4
    for horizon in (1, 2, m, m + 3, n + 4):
        sse = np.empty(8)
        lt = np.empty((2, 8), dtype)
        work = np.empty(m * 8, dtype)
        K._lanes_sse(y.T.astype(dtype), act, m, init.astype(dtype), lanes, horizon, work, sse, lt)
        for c in range(4):
            for a, r in enumerate(act):
                args = (y[r], m, *par[:, c], init[0, r], init[1, r], init[2:, r])
                one = ets_aada_sse(*args)
                ref = one[0] if horizon == 1 else ets_aada_multistep_sse(*args, horizon)
                np.testing.assert_allclose(sse[c * 2 + a], ref, rtol=rtol)
                np.testing.assert_allclose(lt[:, c * 2 + a], one[1:3], rtol=rtol, atol=rtol)
                np.testing.assert_allclose(work[c * 2 + a :: 8], one[3], rtol=rtol, atol=rtol)


def test_initial_states(rng):
    m = 3
    t = np.arange(9.0)
    y = 0.5 * t + np.tile([-2.0, 0.0, 2.0], 3)  # trend 0.5 per point, season -2, 0, 2
    init = np.empty(2 + m)
    K.hw_init(y, m, init)
    np.testing.assert_allclose(init[1], 0.5, rtol=1e-12)
    np.testing.assert_allclose(init[2:], [-2.0, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(init[0] + init[1] + init[2], y[0], rtol=1e-12)  # one step reproduces y_0
    y_gap = y.copy()
    y_gap[:3] = np.nan  # first cycle missing: no trend estimate from it, no crash
    K.hw_init(y_gap, m, init)
    np.testing.assert_allclose(init[1:], [0.5, -2.0, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(init[0] + init[1] + init[2], y[0], rtol=1e-12)
    K.hw_init(np.full(9, np.nan), m, init)
    np.testing.assert_allclose(init, 0.0)
    init1 = np.empty(3)
    K.hw_init(np.array([np.nan, 1.0, 2.0, 3.0, 4.0]), 1, init1)
    np.testing.assert_allclose(init1, [0.0, 1.0, 0.0])
    K.hw_init(np.array([np.nan, np.nan, 2.0, np.nan]), 1, init1)
    np.testing.assert_allclose(init1, [2.0, 0.0, 0.0])
    K.hw_init(np.full(4, np.nan), 1, init1)
    np.testing.assert_allclose(init1, [0.0, 0.0, 0.0])


def test_fit_recovers_a_deterministic_series_and_forecasts_with_times():
    m = 6
    t = np.arange(m * 8)
    y = 20 + 0.1 * t + np.tile([0.0, 1.0, 3.0, 1.0, 0.0, -5.0], 8)
    times = np.datetime64("2026-03-01") + t * np.timedelta64(1, "h")
    fit = fit_holt_winters(y, m, times=times, max_iter=8)
    fc = fit.forecast(m, level=0.8)
    truth = 20 + 0.1 * (t[-1] + 1 + np.arange(m)) + np.tile([0.0, 1.0, 3.0, 1.0, 0.0, -5.0], 2)[:m]
    assert np.abs(fc.mean[0] - truth).max() < 0.5
    assert (fc.lower <= fc.mean).all() and (fc.mean <= fc.upper).all() and fc.level == 0.8
    assert fc.times_ms[0] == times[-1].astype("datetime64[ms]").astype(np.int64) + 3_600_000
    assert fit.params.dtype == PARAM_DTYPE and 0.8 <= fit.params["phi"][0] <= 0.98


def test_non_seasonal_and_undamped_variants(rng):
    y = np.cumsum(rng.normal(size=(2, 40)), axis=1)
    fit = fit_holt_winters(y, 12, seasonal=False, damped=False, max_iter=5)
    assert fit.season_length == 1 and (fit.params["phi"] == 1.0).all() and (fit.params["gamma"] == 0).all()
    fc = fit.forecast(3)
    np.testing.assert_array_equal(fc.times_ms, [1, 2, 3])
    # without a season the variance grows as s^2 (1 + sum_j (alpha + beta j)^2) for phi = 1, with
    # s^2 the final prediction error of the one-step errors: 6 estimated quantities (4 smoothing
    # parameters, initial level and trend) from 40 points
    a, b = fit.params["alpha"][0], fit.params["beta"][0]
    s2 = fit.sse[0] / 40 * (40 + 6) / (40 - 6)
    np.testing.assert_allclose(fc.sd[0, 2] ** 2, s2 * (1 + (a + b) ** 2 + (a + 2 * b) ** 2), rtol=1e-12)
    np.testing.assert_allclose(fit.sigma2[0], fit.sse[0] / (40 - 4), rtol=1e-12)


def test_capacity_crossing():
    m = 4
    t = np.arange(40)
    rising = 50 + 0.5 * t + np.tile([0.0, 0.5, 0.0, -0.5], 10)
    flat = 10 + np.tile([0.0, 0.5, 0.0, -0.5], 10) + np.random.default_rng(1).normal(0, 0.01, 40)
    times = np.arange(40, dtype=np.int64) * 60_000
    fit = fit_holt_winters(np.vstack([rising, flat]), m, times=times, max_iter=10)
    cr = fit.crossing(np.array([80.0, 80.0]), 100, n_paths=200, seed=3)
    assert cr.dtype == CROSSING_DTYPE
    assert cr["p_cross"][0] == 1.0 and cr["p_cross"][1] == 0.0
    # the point forecast climbs about 0.5 per step from ~69.5 (damped: a little later)
    assert 20 <= cr["step_mean_path"][0] <= 40
    assert 0 < cr["step_earliest"][0] <= cr["step_likely"][0]
    assert cr["t_likely_ms"][0] == times[-1] + cr["step_likely"][0] * 60_000
    assert cr["step_likely"][1] == 0 and cr["t_likely_ms"][1] == -1 and cr["t_mean_path_ms"][1] == -1


def test_mase():
    np.testing.assert_allclose(mase([[1.0, 3.0, 2.0, 4.0]], [[5.0]], [[4.0]], 2), [1.0])
    with pytest.raises(ValueError, match="shapes"):
        mase([1.0, 2.0, 3.0], [1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="season_length"):
        mase([1.0, 2.0], [1.0], [1.0], 2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fit_holt_winters(np.ones(10), 6), "two seasons"),
        (lambda: fit_holt_winters(np.ones(24), 0), "season_length"),
        (lambda: fit_holt_winters(np.ones(24), 4, times=np.array([0, 1, 2, 4] + list(range(5, 25)))), "regular"),
        (lambda: fit_holt_winters(np.ones(24), 4, max_iter=0), "max_iter"),
        (lambda: fit_holt_winters(np.ones(24), 4, fit_horizon=0), "fit_horizon"),
        (lambda: fit_holt_winters(np.arange(24.0), 4, max_iter=2).forecast(0), "horizon"),
        (lambda: fit_holt_winters(np.arange(24.0), 4, max_iter=2).forecast(3, level=1.0), "level"),
        (lambda: fit_holt_winters(np.arange(24.0), 4, max_iter=2).crossing(np.nan, 5), "threshold"),
        (lambda: fit_holt_winters(np.arange(24.0), 4, max_iter=2).crossing(1.0, 5, p_early=0), "p_early"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.slow
def test_interval_coverage_on_generated_series():
    """Series simulated from ETS(A,Ad,A): the 80 % and 95 % intervals cover the held-back
    points at about their level: not far below, and above by at most 3.3 binomial standard
    errors of one point per series (the horizons of a series are correlated)."""
    rng = np.random.default_rng(3)
    m, n, h, n_series = 24, 24 * 30, 24, 300
    y = np.array([simulate_ets(rng, n + h, m, 0.3, 0.02, 0.1, 0.9, 1.0) for _ in range(n_series)])
    fit = fit_holt_winters(y[:, :n], m)
    for level, lo in ((0.8, 0.76), (0.95, 0.925)):
        fc = fit.forecast(h, level=level)
        inside = ((y[:, n:] >= fc.lower) & (y[:, n:] <= fc.upper)).mean()
        assert lo <= inside <= level + 3.3 * np.sqrt(level * (1 - level) / n_series), (level, inside)
    # the analytic s.d. (without the in-sample horizon scaling) agrees with the spread of
    # simulated paths from the fitted state
    sims = np.array([_path_from_fit(fit, 0, h, np.random.default_rng(s)) for s in range(4000)])
    analytic = fit.forecast(h).sd[0] / np.sqrt(fit.horizon_scale[0, :h])
    np.testing.assert_allclose(sims.std(axis=0)[[0, 11, 23]], analytic[[0, 11, 23]], rtol=0.06)


@pytest.mark.slow
def test_interval_coverage_with_few_seasons_at_every_horizon():
    """A week-like fit -- 7 seasons, so the initial seasonal states take ``m - 1`` of ``7 m``
    degrees of freedom, as a week of 5-minute data with a daily season does: the 80 % and 95 %
    intervals cover at their level at horizons 1, m/6, m/2 and m, within 3.3 binomial standard
    errors (one point per series and horizon, series independent). Intervals from the in-sample
    one-step variance alone cover about 0.91 of the 95 % points here and fail."""
    rng = np.random.default_rng(12)
    m, n_series = 48, 1500
    n = 7 * m
    y = np.array([simulate_ets(rng, n + m, m, 0.05, 0.0, 0.0, 0.9, 1.0, b0=0.0) for _ in range(n_series)])
    fit = fit_holt_winters(y[:, :n], m)
    for level in (0.8, 0.95):
        fc = fit.forecast(m, level=level)
        tol = 3.3 * np.sqrt(level * (1 - level) / n_series)
        for h in (1, m // 6, m // 2, m):
            inside = ((y[:, n + h - 1] >= fc.lower[:, h - 1]) & (y[:, n + h - 1] <= fc.upper[:, h - 1])).mean()
            assert abs(inside - level) <= tol, (level, h, inside)
        z = stats.norm.ppf(0.5 + level / 2)
        old_sd = fc.sd * np.sqrt(fit.sigma2 / fit.prediction_sigma2())[:, None]
        old_inside = (np.abs(y[:, n:] - fc.mean) <= z * old_sd).mean()
        assert old_inside < level - tol, (level, old_inside)


def _path_from_fit(fit, r, h, rng):
    a, b, g, phi = (fit.params[f][r] for f in PARAM_DTYPE.names)
    m = fit.season_length
    level, slope = fit.state[r, 0], fit.state[r, 1]
    season = fit.state[r, 2:].copy()
    out = np.empty(h)
    for k in range(1, h + 1):
        ph = (fit.n_obs - 1 + k) % m
        f = level + phi * slope
        e = rng.normal(0, np.sqrt(fit.prediction_sigma2()[r]))
        out[k - 1] = f + season[ph] + e
        level, slope = f + a * e, phi * slope + b * e
        season[ph] += g * e
    return out


@pytest.mark.slow
def test_mase_against_statsmodels_on_held_back_data():
    """Same model (additive damped trend, additive season) fitted by statsmodels; our mean MASE
    on the held-back day is within 5 % of statsmodels' (or better)."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    rng = np.random.default_rng(8)
    m, n, h = 24, 24 * 21, 24
    t = np.arange(n + h)
    ys = []
    for _ in range(8):
        season = rng.uniform(1, 5) * np.sin(2 * np.pi * t / m + rng.uniform(0, 6))
        ys.append(
            30
            + rng.uniform(-0.02, 0.05) * t
            + season
            + np.cumsum(rng.normal(0, 0.3, t.size))
            + rng.normal(0, 1, t.size)
        )
    y = np.array(ys)
    fit = fit_holt_winters(y[:, :n], m)
    ours = mase(y[:, :n], y[:, n:], fit.forecast(h).mean, m)
    ref = []
    for row in y:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(row[:n], trend="add", damped_trend=True, seasonal="add", seasonal_periods=m)
            ref.append(model.fit().forecast(h))
    theirs = mase(y[:, :n], y[:, n:], np.array(ref), m)
    assert ours.mean() <= 1.05 * theirs.mean(), (ours.mean(), theirs.mean())
    assert stats.wilcoxon(ours - theirs).pvalue > 0.01 or ours.mean() < theirs.mean()


def test_lockstep_search_matches_the_per_series_search_and_the_plain_recursion(rng):
    """The block search (the default path) takes the same steps as the per-series search when
    given its stop step, whatever the block size (series converge at different passes, are
    dropped from the lanes); its final state and SSE are those of the plain recursion at the
    chosen parameters, missing points included."""
    m, n = 6, 6 * 12
    y = np.array([simulate_ets(rng, n, m, a, 0.02, 0.1, 0.9, 1.0) for a in (0.1, 0.3, 0.6, 0.2, 0.45)])
    y[1, [4, 5, 30]] = np.nan
    y[3, :m] = np.nan
    from telcoanalytics.analysis.forecast import DEFAULT_BOUNDS

    outs = []
    for block, horizon in ((1, 1), (2, 1), (8, 1), (3, 4)):
        par, state, st = np.empty((5, 4)), np.empty((5, 2 + m)), np.empty((5, 3))
        hm, hc = np.empty((5, m)), np.empty((5, m), dtype=np.int64)
        search = (30, 0.004, 3, 0.0, block, horizon, np.empty(0))
        n_eval = K.hw_fit_blocks(y, m, DEFAULT_BOUNDS, search, (7, np.arange(1, m + 1)), par, state, st, hm, hc)
        outs.append((horizon, par, state, st))
        assert n_eval >= 5 * (3 * 8 + 1)
        # the calibration errors of the final pass: those of the per-series kernel
        ref_hm, ref_hc = np.empty((5, m)), np.empty((5, m), dtype=np.int64)
        K.hw_horizon_mse(y, m, par, 7, np.arange(1, m + 1), ref_hm, ref_hc)
        np.testing.assert_array_equal(hc, ref_hc)
        np.testing.assert_allclose(hm, ref_hm, rtol=1e-9)
    refs = {}
    for horizon in (1, 4):
        ref_par, ref_state, ref_st = np.empty((5, 4)), np.empty((5, 2 + m)), np.empty((5, 3))
        K.hw_fit_rows(y, m, DEFAULT_BOUNDS, horizon, 30, ref_par, ref_state, ref_st)
        refs[horizon] = ref_par, ref_state, ref_st
    for horizon, par, state, st in outs:
        ref_par, ref_state, ref_st = refs[horizon]
        np.testing.assert_allclose(par, ref_par, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(st, ref_st, rtol=1e-9)
        np.testing.assert_allclose(state, ref_state, rtol=1e-9, atol=1e-9)
    _, par, state, st = outs[-2]
    init = np.empty(2 + m)
    for r in range(5):
        K.hw_init(y[r], m, init)
        sse, level, slope, season = ets_aada_sse(y[r], m, *par[r], init[0], init[1], init[2:])
        np.testing.assert_allclose(st[r, 0], sse, rtol=1e-12)
        np.testing.assert_allclose(state[r], [level, slope, *season], rtol=1e-12, atol=1e-12)
        assert st[r, 1] == np.isfinite(y[r]).sum()


def test_threads_give_the_same_fit(rng):
    y = np.array([simulate_ets(rng, 24 * 6, 24, 0.3, 0.02, 0.1, 0.9, 1.0) for _ in range(70)])
    one = fit_holt_winters(y, 24, threads=1)
    two = fit_holt_winters(y, 24, threads=2)
    np.testing.assert_array_equal(one.state, two.state)
    np.testing.assert_array_equal(one.params, two.params)
    multi = fit_holt_winters(y[:3], 24, fit_horizon=2, threads=2)  # per-series search, converging
    assert np.isfinite(multi.sigma2).all()
    with pytest.raises(ValueError, match="threads"):
        fit_holt_winters(y, 24, threads=0)


def test_float32_search_finds_the_float64_optimum(rng):
    """The default float32 search (on each series minus its initial level, squared errors summed
    in float64 every 256 steps) against the float64 search: series of large level (1e4) and
    small noise, where rounding would show, with missing points and a multi-step criterion.
    Same search settings; the chosen parameters' one-step SSE (computed in float64 by both) is
    within 1e-6 relative and the parameters agree except where the SSE surface is flat."""
    from telcoanalytics.analysis.forecast import DEFAULT_BOUNDS, search_dtype

    m, n = 24, 24 * 14
    y = np.array([simulate_ets(rng, n, m, a, 0.01, 0.1, 0.9, 0.5, l0=1e4) for a in np.linspace(0.05, 0.7, 40)])
    y[3, [10, 11, 200]] = np.nan
    for horizon in (1, 6):
        fits = {}
        for bits in (32, 64):
            out = np.empty((40, 4)), np.empty((40, 2 + m)), np.empty((40, 3))
            calib = np.empty((40, 1)), np.empty((40, 1), dtype=np.int64)
            search = (30, 0.02, 1, 1e-5, 16, horizon, search_dtype(bits))
            K.hw_fit_blocks(y, m, DEFAULT_BOUNDS, search, (12, np.ones(1, dtype=np.int64)), *out, *calib)
            fits[bits] = out
        (p32, s32, st32), (p64, s64, st64) = fits[32], fits[64]
        np.testing.assert_allclose(st32[:, 0], st64[:, 0], rtol=1e-6)
        same = np.abs(p32 - p64).max(axis=1) < 1e-9
        assert same.mean() >= 0.9
        np.testing.assert_allclose(s32[same], s64[same], rtol=1e-9, atol=1e-9)  # the float64 final pass
