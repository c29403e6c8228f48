"""Holt-Winters forecasting per series with prediction intervals, capacity questions ("when does
this series cross 80 %?") answered with uncertainty, and MASE for held-back evaluation.

The model is ETS(A,Ad,A) -- additive error, additive damped trend, additive seasonality --
fitted per series by ``kernels.forecast`` (see its docstring for the equations and the search).
"""

from dataclasses import dataclass

import numpy as np
from scipy import special

from kernels import forecast as K
from telcoanalytics.analysis._common import (
    as_series_matrix,
    as_time_ms,
    check_level,
    check_positive_int,
    run_in_threads,
)

PARAM_DTYPE = np.dtype([("alpha", np.float64), ("beta", np.float64), ("gamma", np.float64), ("phi", np.float64)])
"""Smoothing parameters per series (state-space form: ``b_t = phi b_{t-1} + beta e_t``)."""

CROSSING_DTYPE = np.dtype(
    [
        ("p_cross", np.float64),  # probability of reaching the threshold within the horizon
        ("step_earliest", np.int64),  # first step by which `p_early` of the paths have crossed (0 = never)
        ("step_likely", np.int64),  # median first-crossing step (0 if fewer than half cross)
        ("step_mean_path", np.int64),  # first step where the point forecast reaches it (0 = never)
        ("t_earliest_ms", np.int64),  # the steps as times (int64 ms; -1 when the step is 0)
        ("t_likely_ms", np.int64),
        ("t_mean_path_ms", np.int64),
    ]
)
"""One row per series, returned by :meth:`HoltWinters.crossing`."""


@dataclass(frozen=True)
class Forecast:
    """Point forecasts and prediction intervals for horizons 1..H.

    ``mean``, ``sd``, ``lower``, ``upper`` are (n_series, H); ``times_ms`` (H,) int64 when the
    fit had times (else steps 1..H); ``level`` the interval level.
    """

    mean: np.ndarray
    sd: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    times_ms: np.ndarray
    level: float


@dataclass(frozen=True)
class HoltWinters:
    """Fitted Holt-Winters models, one per series (see :func:`fit_holt_winters`).

    Attributes: ``params`` (``PARAM_DTYPE``, n_series), ``state`` (n_series, 2 + m: level,
    trend, seasonal ring by absolute phase), ``sigma2`` and ``sse`` (n_series,), ``n_valid``,
    ``season_length``, ``n_obs`` (points in the fit), ``t_last_ms`` and ``step_ms`` (or None),
    ``horizon_scale`` (n_series, H): the variance factor of the h-step intervals (see
    :meth:`forecast`).
    """

    params: np.ndarray
    state: np.ndarray
    sigma2: np.ndarray
    sse: np.ndarray
    n_valid: np.ndarray
    season_length: int
    n_obs: int
    t_last_ms: int | None
    step_ms: int | None
    horizon_scale: np.ndarray

    def _par(self):
        return np.ascontiguousarray(np.stack([self.params[f] for f in PARAM_DTYPE.names], axis=1))

    def _times(self, horizon):
        steps = np.arange(1, horizon + 1, dtype=np.int64)
        return steps if self.t_last_ms is None else self.t_last_ms + steps * self.step_ms

    def prediction_sigma2(self):
        """Variance of a new one-step error, per series: Akaike's final prediction error
        ``sse / n (n + p) / (n - p)`` with ``n`` the valid points and ``p`` the estimated
        quantities -- the 4 smoothing parameters and the initial level, trend and ``m - 1``
        seasonals (as R's ``ets`` counts them). ``sigma2`` (``sse / (n - 4)``) is measured on
        the points the initial states were estimated from, and the forecast carries their
        estimation error: with a week of 5-minute data (``m = 288``) the seasonal states are
        about 290 of the 2,016 points' degrees of freedom, and intervals from ``sigma2`` are
        too narrow at every horizon. With many seasons the correction is small (``p << n``)."""
        n = self.n_valid.astype(np.float64)
        p = float(K.N_PARAMS + 2 + self.season_length - 1)
        return self.sse / np.maximum(n, 1.0) * (n + p) / np.maximum(n - p, 1.0)

    def forecast(self, horizon, level=0.95):
        """Forecasts for ``horizon`` steps with a central prediction interval at ``level``.

        The interval is ``mean +- z sd`` with the analytic variance of ETS(A,Ad,A) (Hyndman et
        al. 2008, ch. 6), Gaussian errors of variance :meth:`prediction_sigma2` (the one-step
        variance corrected for the estimated parameters and initial states), times
        ``horizon_scale[:, h - 1]``: per series, how much faster the in-sample h-step squared
        errors grow with ``h`` than that variance (``(mse_h / mse_1) / (var_h / var_1)``, at
        ``CALIBRATION_HORIZONS`` horizons up to one season ahead, from origins every
        ``CALIBRATION_STEP`` points; linear in ``h`` between them, the last factor beyond). Where the model is wrong -- noise
        that is not the model's, a trend that does not hold -- the analytic variance alone
        misjudges the long horizons.
        """
        horizon = check_positive_int(horizon, "horizon")
        level = check_level(level, "level")
        n = self.params.shape[0]
        mean = np.empty((n, horizon))
        sd = np.empty((n, horizon))
        sd[:, 0] = self.prediction_sigma2()
        K.hw_forecast_rows(self._par(), self.state, self.n_obs, self.season_length, mean, sd)
        k = min(horizon, self.horizon_scale.shape[1])
        sd[:, :k] *= np.sqrt(self.horizon_scale[:, :k])
        sd[:, k:] *= np.sqrt(self.horizon_scale[:, k - 1 : k])
        z = special.ndtri(0.5 + level / 2.0)
        return Forecast(mean, sd, mean - z * sd, mean + z * sd, self._times(horizon), level)

    def crossing(self, threshold, horizon, *, n_paths=1000, p_early=0.1, seed=0):
        """When does each series reach ``threshold``? Answered from simulated sample paths.

        Parameters
        ----------
        threshold : float or array (n_series,)
            E.g. 80 for PRB utilisation in percent.
        horizon : int
            Steps to look ahead.
        n_paths : int
            Simulated paths per series (the Monte Carlo error of ``p_cross`` is at most
            ``0.5 / sqrt(n_paths)``).
        p_early : float
            ``step_earliest`` is the first step by which this share of paths has crossed.
        seed : int

        Returns
        -------
        numpy structured array of ``CROSSING_DTYPE``, one row per series.
        """
        horizon = check_positive_int(horizon, "horizon")
        n_paths = check_positive_int(n_paths, "n_paths")
        p_early = check_level(p_early, "p_early")
        n = self.params.shape[0]
        thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (n,)).copy()
        if not np.isfinite(thr).all():
            raise ValueError("threshold must be finite")
        first = np.empty((n, n_paths), dtype=np.int64)
        sigma = np.sqrt(self.prediction_sigma2())
        K.hw_first_crossing(self._par(), self.state, sigma, self.n_obs, self.season_length, thr, horizon, seed, first)
        out = np.zeros(n, dtype=CROSSING_DTYPE)
        crossed = np.where(first > 0, first, horizon + 1)
        out["p_cross"] = (first > 0).mean(axis=1)
        srt = np.sort(crossed, axis=1)
        early = srt[:, min(int(np.ceil(p_early * n_paths)) - 1, n_paths - 1)]
        likely = srt[:, (n_paths - 1) // 2]
        out["step_earliest"] = np.where(early <= horizon, early, 0)
        out["step_likely"] = np.where(likely <= horizon, likely, 0)
        mean = self.forecast(horizon).mean
        hit = mean >= thr[:, None]
        out["step_mean_path"] = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
        times = self._times(horizon)
        for step, t in (
            ("step_earliest", "t_earliest_ms"),
            ("step_likely", "t_likely_ms"),
            ("step_mean_path", "t_mean_path_ms"),
        ):
            out[t] = np.where(out[step] > 0, times[np.maximum(out[step] - 1, 0)], -1)
        return out


DEFAULT_BOUNDS = np.array([[1e-4, 0.9999], [0.0, 0.9999], [0.0, 0.9999], [0.8, 0.98]])

SEARCH_TOL = 0.04
SEARCH_MIN_GAIN = 1e-3
"""The search stops for a series when its compass step (in the unit cube of the parameters)
falls below ``SEARCH_TOL``; a move counts only if it lowers the criterion by ``SEARCH_MIN_GAIN``
(relative). The first version used 0.004 and 0; the multi-step criterion of the default is flat
near small alpha, where a gain of 1e-5 let the search crawl (about 95 evaluations per KPI-like
series against 50 with 1e-3, for the same MASE on the development seeds)."""
SEARCH_GRID = 2
"""Alpha levels of the coarse start (x 8 corners): 2 starts at alpha about 0.01 and 0.3 (the
multi-step optimum of noisy KPIs is near the first, the one-step optimum near the second); 1
starts at 0.3 only, 3 at 0.06, 0.3 and 0.72."""
FIT_HORIZON_DIVISOR = 6
"""The default ``fit_horizon`` is ``season_length // FIT_HORIZON_DIVISOR`` (at least 1): the
errors up to a sixth of a season ahead (4 hours of hourly or 5-minute data with a daily season)."""
SEARCH_BLOCK = 32  # series searched in lockstep (8 x 32 SIMD lanes; the fastest of 4-64 when timed)
CALIBRATION_HORIZONS = 24
CALIBRATION_STEP = 12
"""The in-sample h-step errors behind ``horizon_scale``: at horizon 1 and ``CALIBRATION_HORIZONS``
horizons evenly spread up to one season (all of them when the season is shorter), from
origins every ``CALIBRATION_STEP`` points -- about two forecasts per point of the series."""
SEARCH_BITS = 32
"""Float width of the search's recursion (the final pass at the optimum is float64)."""


def search_dtype(bits):
    """The 0-length array that selects the search's float width in ``kernels.forecast.hw_fit_blocks``."""
    return np.empty(0, np.float32 if bits == 32 else np.float64)


def fit_holt_winters(
    values, season_length, *, times=None, damped=True, seasonal=True, fit_horizon=None, max_iter=30, threads=None
):
    """Fit Holt-Winters (additive damped trend, additive seasonality) to each series.

    Parameters
    ----------
    values : array_like, (n_points,) or (n_series, n_points)
        NaN marks a missing point (the state is carried over it).
    season_length : int
        Points per season (24 for hourly data with a daily cycle, 288 for 5-minute data).
    times : array_like of datetime64 or int64 ms, optional
        Regular time axis; with it forecasts and crossings carry times.
    damped : bool
        Damped trend (``phi`` in [0.8, 0.98], as ``statsforecast``); False fixes ``phi = 1``.
    seasonal : bool
        False fits Holt's damped trend without a season.
    fit_horizon : int, optional
        The parameters minimise the squared errors of the 1..H-step forecasts made from every
        H-th point (R's ``ets(opt.crit = "amse")`` on sparse origins); default
        ``H = season_length // 6`` (at least 1; 1 without a season). ``fit_horizon=1`` is the
        one-step fit (maximum likelihood for Gaussian errors, as statsmodels and statsforecast).
        Why not one-step by default: on KPI series whose short-term noise is autocorrelated
        (AR(1) around a daily profile) the one-step fit chooses alpha near 0.5, follows the
        short-lived noise and forecasts the next day worse than a smooth level; errors a few
        hours ahead are not fooled by it, and on series that do follow the model the choice
        costs little. The intervals use the fitted parameters and the one-step error variance
        (see :meth:`HoltWinters.prediction_sigma2`).
    max_iter : int
        Compass-search iterations per series.
    threads : int, optional
        Threads over blocks of series (the kernels release the GIL); default: the cores this
        process may use.

    Returns
    -------
    HoltWinters

    Raises
    ------
    ValueError
        If a series is shorter than two seasons, or an argument is out of range.

    Examples
    --------
    >>> t = np.arange(24 * 14)
    >>> y = 50 + 0.05 * t + 10 * np.sin(2 * np.pi * t / 24)
    >>> fit = fit_holt_winters(y, 24)
    >>> fc = fit.forecast(24)
    >>> bool(np.abs(fc.mean[0] - (50 + 0.05 * (t[-1] + 1 + np.arange(24)) + 10 * np.sin(2 * np.pi * (t[-1] + 1 + np.arange(24)) / 24))).max() < 1.0)
    True
    """
    y = as_series_matrix(values)
    m = check_positive_int(season_length, "season_length")
    max_iter = check_positive_int(max_iter, "max_iter")
    if not seasonal:
        m = 1
    if fit_horizon is None:
        fit_horizon = max(1, m // FIT_HORIZON_DIVISOR)
    fit_horizon = check_positive_int(fit_horizon, "fit_horizon")
    if y.shape[1] < max(2 * m, 4):
        raise ValueError(
            f"values has {y.shape[1]} points per series; Holt-Winters needs two seasons ({2 * m}) and at least 4"
        )
    t_ms, given = as_time_ms(times, y.shape[1])
    step_ms = None
    if given:
        steps = np.diff(t_ms)
        if steps.size and np.any(steps != steps[0]):
            raise ValueError("times must be regular (one step); resample onto a regular axis, NaN for gaps")
        step_ms = int(steps[0]) if steps.size else 1
    bounds = DEFAULT_BOUNDS.copy()
    if not damped:
        bounds[3] = 1.0
    if m == 1:
        bounds[2] = 0.0
    n = y.shape[0]
    par = np.empty((n, K.N_PARAMS))
    state = np.empty((n, 2 + m))
    stats = np.empty((n, K.STATS_COLS))
    hgrid = _calibration_horizons(m)
    h_mse = np.empty((n, hgrid.size))
    h_count = np.empty((n, hgrid.size), dtype=np.int64)
    search = (max_iter, SEARCH_TOL, SEARCH_GRID, SEARCH_MIN_GAIN, SEARCH_BLOCK, fit_horizon, search_dtype(SEARCH_BITS))

    run_in_threads(
        lambda a, b: K.hw_fit_blocks(
            y[a:b],
            m,
            bounds,
            search,
            (CALIBRATION_STEP, hgrid),
            par[a:b],
            state[a:b],
            stats[a:b],
            h_mse[a:b],
            h_count[a:b],
        ),
        n,
        SEARCH_BLOCK,
        threads,
    )
    params = np.zeros(n, dtype=PARAM_DTYPE)
    for i, f in enumerate(PARAM_DTYPE.names):
        params[f] = par[:, i]
    return HoltWinters(
        horizon_scale=_horizon_scale(par, state, m, y.shape[1], hgrid, h_mse, h_count),
        params=params,
        state=state,
        sigma2=stats[:, 2],
        sse=stats[:, 0],
        n_valid=stats[:, 1].astype(np.int64),
        season_length=m,
        n_obs=y.shape[1],
        t_last_ms=int(t_ms[-1]) if given else None,
        step_ms=step_ms,
    )


def _calibration_horizons(m):
    """Horizon 1 and up to ``CALIBRATION_HORIZONS`` horizons evenly spread up to ``m`` (beyond a
    season the ring would need the projected seasonals); just 1 without a season."""
    if m == 1:
        return np.ones(1, dtype=np.int64)
    k = min(m, CALIBRATION_HORIZONS)
    return np.unique(np.concatenate([[1], np.rint(np.arange(1, k + 1) * m / k)])).astype(np.int64)


def _horizon_scale(par, state, m, n_obs, hgrid, h_mse, h_count):
    """``(mse_h / mse_1) / (var_h / var_1)`` per series at the horizons ``hgrid`` (the first is
    1), linear in ``h`` between them, for ``h = 1 .. hgrid[-1]``; 1 where a mean is missing or
    zero."""
    unit = np.empty((par.shape[0], int(hgrid[-1])))
    unit_sd = np.ones_like(unit)  # sigma^2 = 1: the analytic variance factors var_h / var_1
    K.hw_forecast_rows(par, state, n_obs, m, unit, unit_sd)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = h_mse / h_mse[:, :1] / unit_sd[:, hgrid - 1] ** 2
    ok = (h_count > 0) & (h_count[:, :1] > 0) & (h_mse[:, :1] > 0) & np.isfinite(scale) & (scale > 0)
    scale = np.where(ok, scale, 1.0)
    h = np.arange(1, int(hgrid[-1]) + 1)
    hi = np.clip(np.searchsorted(hgrid, h), 1, max(hgrid.size - 1, 1)) if hgrid.size > 1 else np.zeros_like(h)
    lo = np.maximum(hi - 1, 0)
    span = np.maximum(hgrid[hi] - hgrid[lo], 1)
    w = (h - hgrid[lo]) / span
    return scale[:, lo] * (1.0 - w) + scale[:, hi] * w


def mase(train, actual, predicted, season_length=1):
    """Mean absolute scaled error per series (Hyndman & Koehler 2006).

    The scale is the in-sample mean absolute error of the seasonal naive forecast
    (``y_t - y_{t-m}``) on ``train``; NaN points are skipped.

    Examples
    --------
    >>> mase([1.0, 2.0, 3.0, 4.0], [5.0, 6.0], [5.5, 6.5])
    array([0.5])
    """
    train = as_series_matrix(train, "train")
    actual = as_series_matrix(actual, "actual")
    predicted = as_series_matrix(predicted, "predicted")
    m = check_positive_int(season_length, "season_length")
    if actual.shape != predicted.shape or actual.shape[0] != train.shape[0]:
        raise ValueError(f"shapes disagree: train {train.shape}, actual {actual.shape}, predicted {predicted.shape}")
    if train.shape[1] <= m:
        raise ValueError(f"train needs more than season_length={m} points")
    scale = np.nanmean(np.abs(train[:, m:] - train[:, :-m]), axis=1)
    return np.nanmean(np.abs(actual - predicted), axis=1) / scale
