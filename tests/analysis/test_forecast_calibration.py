"""Horizon calibration of the Holt-Winters intervals: the in-sample h-step errors against a plain
reference, the scale and its use in the forecast, against the analytic variance."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import forecast as K
from telcoanalytics.analysis import PARAM_DTYPE, fit_holt_winters
from telcoanalytics.analysis.forecast import CALIBRATION_STEP, _calibration_horizons
from tests.analysis.reference import simulate_ets


def _plain_horizon_mse(y, m, alpha, beta, gamma, phi, init, step, horizons):
    """Errors of the h-step forecasts from origins step, 2 step, ... (plain loops)."""
    level, slope, season = init[0], init[1], list(init[2:])
    sq = [[] for _ in horizons]
    for i, v in enumerate(y):
        if i > 0 and i % step == 0:
            for k, h in enumerate(horizons):
                t = i + h - 1
                if t < len(y) and not np.isnan(y[t]):
                    damp = sum(phi**q for q in range(1, h + 1))
                    sq[k].append((y[t] - (level + damp * slope + season[t % m])) ** 2)
        f = level + phi * slope
        if np.isnan(v):
            level, slope = f, phi * slope
            continue
        e = v - f - season[i % m]
        level, slope = f + alpha * e, phi * slope + beta * e
        season[i % m] += gamma * e
    return [np.mean(s) if s else 0.0 for s in sq], [len(s) for s in sq]


def test_horizon_mse_matches_the_plain_reference(rng):
    m, n = 6, 6 * 5 + 3
    y = np.array([simulate_ets(rng, n, m, a, 0.02, 0.1, 0.9, 1.0) for a in (0.1, 0.4)])
    y[0, [4, 5, 17]] = np.nan
    y[1, n - 1] = np.nan
    par = np.array([[0.3, 0.05, 0.2, 0.9], [0.1, 0.0, 0.4, 0.98]])
    for step, grid in ((1, [1, 2, 3, 4, 5, 6]), (4, [1, 3, 6])):
        grid = np.array(grid)
        mse = np.empty((2, grid.size))
        count = np.empty((2, grid.size), dtype=np.int64)
        K.hw_horizon_mse(y, m, par, step, grid, mse, count)
        for r in range(2):
            init = np.empty(2 + m)
            K.hw_init(y[r], m, init)
            ref_mse, ref_count = _plain_horizon_mse(y[r], m, *par[r], init, step, grid)
            np.testing.assert_array_equal(count[r], ref_count)
            np.testing.assert_allclose(mse[r], ref_mse, rtol=1e-12)
    y_short = np.full((1, 2 * m), np.nan)  # nothing finite: no errors, means 0
    mse = np.empty((1, m))
    count = np.empty((1, m), dtype=np.int64)
    K.hw_horizon_mse(y_short, m, par[:1], 1, np.arange(1, m + 1), mse, count)
    assert (count == 0).all() and (mse == 0).all()


def test_forecast_sd_is_the_analytic_sd_times_the_horizon_scale(rng):
    """The interval s.d. at h is the analytic one (final prediction error, fitted parameters)
    times sqrt(scale_h), the scale the in-sample h-step errors' growth over the analytic
    variance's, and the last scale beyond one season; a series whose one-step errors are all
    zero keeps the analytic s.d."""
    m, n = 12, 12 * 8
    y = np.array([simulate_ets(rng, n, m, a, 0.02, 0.1, 0.9, 1.0) for a in (0.1, 0.4, 0.7)])
    y = np.vstack([y, np.full(n, 5.0)])  # constant: zero errors
    fit = fit_holt_winters(y, m, max_iter=5)
    h = 2 * m + 3
    fc = fit.forecast(h)
    mse = np.empty((4, m))
    count = np.empty((4, m), dtype=np.int64)
    par = np.stack([fit.params[f] for f in PARAM_DTYPE.names], axis=1)
    K.hw_horizon_mse(y, m, par, CALIBRATION_STEP, np.arange(1, m + 1), mse, count)  # m <= 24: every h
    for r in range(3):
        a, b, g, phi = par[r]
        var = [1.0]  # the analytic variance factors, Hyndman et al. (2008) class 1
        c2 = 0.0
        for j in range(1, h):
            c = a + b * sum(phi**k for k in range(1, j + 1)) + (g if j % m == 0 else 0.0)
            c2 += c * c
            var.append(1.0 + c2)
        var = np.array(var)
        scale = mse[r] / mse[r, 0] / var[:m]
        scale = np.concatenate([scale, np.full(h - m, scale[-1])])
        np.testing.assert_allclose(fc.sd[r] ** 2, fit.prediction_sigma2()[r] * var * scale, rtol=1e-9)
    assert np.all(fit.horizon_scale[3] == 1.0)
    # a season longer than the grid: the scale is linear between the grid's horizons (1, 2, 4,
    # ..., 48 for m = 48), at 3 the mean of those at 2 and 4
    y48 = np.array([simulate_ets(rng, 48 * 3, 48, a, 0.02, 0.1, 0.9, 1.0) for a in (0.1, 0.5)])
    s48 = fit_holt_winters(y48, 48, max_iter=3).horizon_scale
    assert s48.shape == (2, 48) and np.ptp(s48) > 0
    np.testing.assert_allclose(s48[:, 2], (s48[:, 1] + s48[:, 3]) / 2, rtol=1e-12)
    np.testing.assert_allclose(s48[:, 46], (s48[:, 45] + s48[:, 47]) / 2, rtol=1e-12)
    non_seasonal = fit_holt_winters(y[:3], m, seasonal=False, max_iter=5)
    assert non_seasonal.horizon_scale.shape == (3, 1) and np.all(non_seasonal.horizon_scale == 1.0)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.sampled_from([2, 5, 30, 60]),
    cycles=st.integers(2, 4),
    missing=st.floats(0.0, 0.5),
    level=st.sampled_from([0.5, 0.8, 0.95]),
)
def test_intervals_are_finite_ordered_and_the_scale_interpolates(seed, m, cycles, missing, level):
    """Whatever the series (short, gappy, constant pieces): finite positive scales, ordered
    intervals of positive width where the errors are not all zero, and between two horizons of
    the grid the scale stays between theirs."""
    rng = np.random.default_rng(seed)
    n = m * cycles + int(rng.integers(0, m))
    y = np.array([simulate_ets(rng, n, m, a, 0.02, 0.1, 0.9, 1.0) for a in (0.1, 0.5, 0.9)])
    y[rng.uniform(size=y.shape) < missing] = np.nan
    fit = fit_holt_winters(y, m, max_iter=3)
    scale = fit.horizon_scale
    assert scale.shape == (3, m) and np.isfinite(scale).all() and (scale > 0).all()
    grid = _calibration_horizons(m)
    for a, b in zip(grid[:-1], grid[1:], strict=True):
        lo = np.minimum(scale[:, a - 1], scale[:, b - 1])[:, None] * (1 - 1e-12)
        hi = np.maximum(scale[:, a - 1], scale[:, b - 1])[:, None] * (1 + 1e-12)
        assert ((scale[:, a - 1 : b] >= lo) & (scale[:, a - 1 : b] <= hi)).all()
    fc = fit.forecast(m + 3, level=level)
    assert np.isfinite(fc.sd).all() and (fc.lower <= fc.mean).all() and (fc.mean <= fc.upper).all()
