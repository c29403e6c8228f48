"""Correlation across metrics against SciPy and statsmodels; top-k pairs against brute force."""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from kernels import stats as K
from telcoanalytics.analysis import (
    BEST_DTYPE,
    PAIR_DTYPE,
    benjamini_hochberg,
    correlation_pvalue,
    lagged_correlation,
    top_correlated_pairs,
)


def _aligned(x, y, lag):
    a, b = (x[: len(x) - lag], y[lag:]) if lag >= 0 else (x[-lag:], y[: len(y) + lag])
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_lagged_against_scipy(rng, method):
    n = 80
    y = np.round(rng.normal(size=n), 1)  # ties exercise the average ranks
    x = rng.normal(size=(4, n))
    x[1] = np.roll(y, -3) + 0.3 * rng.normal(size=n)  # leads the target by 3 steps
    x[2, 5:15] = np.nan
    y[40] = np.nan
    res = lagged_correlation(y, x, max_lag=4, method=method)
    ref_fn = stats.pearsonr if method == "pearson" else stats.spearmanr
    for i in range(4):
        for k, lag in enumerate(res.lags):
            a, b = _aligned(x[i], y, lag)
            ref = ref_fn(a, b)
            # r: the same two-pass sums, 1e-12; p: t / beta tail routines, 1e-9 relative
            np.testing.assert_allclose(res.r[i, k], ref.statistic, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(res.p[i, k], ref.pvalue, rtol=1e-9)
            assert res.n[i, k] == a.size
    best = res.best()
    assert best.dtype == BEST_DTYPE
    assert (best["series"][0], best["lag"][0]) == (1, 3) and best["q"][0] < 1e-10
    np.testing.assert_allclose(res.q.ravel(), multipletests(res.p.ravel(), method="fdr_bh")[1], rtol=1e-12)


def test_explicit_lags_constant_and_short_series():
    y = np.arange(10.0)
    x = np.vstack([np.ones(10), np.arange(10.0) ** 2])
    res = lagged_correlation(y, x, lags=[0, 2])
    assert np.isnan(res.r[0]).all() and np.isnan(res.p[0]).all()
    assert res.r[1, 0] > 0.9 and res.best()["series"][0] == 1
    assert np.isnan(K._pearson(np.array([1.0]), np.array([2.0])))
    assert correlation_pvalue(1.0, 10) == 0.0 and np.isnan(correlation_pvalue(0.5, 2))


def test_benjamini_hochberg_against_statsmodels(rng):
    p = rng.uniform(size=(7, 9)) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p).ravel(), multipletests(p.ravel(), method="fdr_bh")[1], rtol=1e-12)
    assert benjamini_hochberg([]).size == 0


def _brute_top(x, k, max_lag, absolute=True):
    rows = []
    n = x.shape[1]
    for lag in range(max_lag + 1):
        for i in range(x.shape[0]):
            for j in range(x.shape[0]):
                if (lag == 0 and j <= i) or (lag > 0 and i == j):
                    continue
                a, b = _aligned(x[i], x[j], lag)
                r = stats.pearsonr(a, b).statistic if a.size > 1 and np.ptp(a) > 0 and np.ptp(b) > 0 else np.nan
                rows.append((abs(r) if absolute else r, i, j, lag, r))
    rows.sort(key=lambda z: (-np.nan_to_num(z[0], nan=-np.inf), z[1], z[2], z[3]))
    assert n
    return rows[:k]


@pytest.mark.parametrize("absolute", [True, False])
def test_top_pairs_against_brute_force(rng, absolute):
    x = rng.normal(size=(23, 60))
    x[4] = -x[9] + 0.2 * rng.normal(size=60)
    x[7, 2:] = x[15, :-2]  # 15 leads 7 by 2 steps
    top = top_correlated_pairs(x, k=6, max_lag=2, absolute=absolute, block=5)
    ref = _brute_top(x, 6, 2, absolute)
    assert top.dtype == PAIR_DTYPE
    assert [(int(a), int(b), int(c)) for a, b, c in top[["i", "j", "lag"]]] == [z[1:4] for z in ref]
    np.testing.assert_allclose(top["r"], [z[4] for z in ref], rtol=1e-12)


def test_top_pairs_with_missing_values_and_constant_rows(rng):
    x = rng.normal(size=(8, 50))
    x[2] = x[5] + 0.05 * rng.normal(size=50)
    x[2, 10] = np.nan
    x[6] = 1.0
    top = top_correlated_pairs(x, k=2)
    assert (top["i"][0], top["j"][0]) == (2, 5) and top["n"][0] == 49
    a, b = _aligned(x[2], x[5], 0)
    np.testing.assert_allclose(top["r"][0], stats.pearsonr(a, b).statistic, rtol=1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: lagged_correlation(np.ones((2, 5)), np.ones((1, 5))), "one series"),
        (lambda: lagged_correlation(np.ones(5), np.ones((1, 6))), "time axis"),
        (lambda: lagged_correlation(np.ones(5), np.ones((1, 5)), method="kendall"), "method"),
        (lambda: lagged_correlation(np.ones(5), np.ones((1, 5)), max_lag=3), "lags"),
        (lambda: lagged_correlation(np.ones(5), np.ones((1, 5)), lags=[0.5]), "integers"),
        (lambda: lagged_correlation(np.ones(5), np.ones((1, 5)), max_lag=-1), "max_lag"),
        (lambda: top_correlated_pairs(np.ones((3, 5)), k=0), "k"),
        (lambda: top_correlated_pairs(np.ones((3, 5)), max_lag=3), "max_lag"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _kpi_like(rng, n_series, n_points, period):
    t = np.arange(n_points)
    phase = rng.uniform(0, 2 * np.pi, (n_series, 1))
    amp = rng.uniform(0.5, 5, (n_series, 1))
    return amp * np.sin(2 * np.pi * t / period + phase) + rng.normal(size=(n_series, n_points))


@pytest.mark.parametrize("absolute", [True, False])
@pytest.mark.parametrize("max_lag", [0, 2])
def test_pruned_top_pairs_equal_the_full_screen(rng, absolute, max_lag, monkeypatch):
    """The sketch bounds prune pairs but never one the full screen keeps: the same pairs and r,
    with missing values, a constant row and a copy at a lag; a tiny candidate cap forces some
    blocks to be scored whole."""
    x = _kpi_like(rng, 120, 300, 24)
    x[7, 2:] = x[15, :-2] + 0.1 * rng.normal(size=298)
    x[20] = -x[30] + 0.2 * rng.normal(size=300)
    x[40, [3, 50]] = np.nan
    x[41] = 2.0
    full = top_correlated_pairs(x, k=15, max_lag=max_lag, absolute=absolute, prune=False, block=32)
    pruned = top_correlated_pairs(x, k=15, max_lag=max_lag, absolute=absolute, block=32, sketch_dims=8)
    np.testing.assert_array_equal(pruned, full)
    from telcoanalytics.analysis import correlate

    monkeypatch.setattr(correlate, "CANDIDATE_CAP", 50)
    capped = top_correlated_pairs(x, k=15, max_lag=max_lag, absolute=absolute, block=32, sketch_dims=8)
    np.testing.assert_array_equal(capped, full)


def test_sketch_bound_holds(rng):
    """``|<x, y> - <u, v>| <= e_x e_y`` for unit rows, against full inner products (NumPy)."""
    from telcoanalytics.analysis.correlate import _sketch, _standardise

    x = np.vstack([_kpi_like(rng, 30, 200, 20), rng.normal(size=(30, 200)), np.ones((1, 200))])
    z = _standardise(x)
    exact = z.astype(np.float64) @ z.T.astype(np.float64)
    for (u, e), n_f in zip(_sketch(z, [np.array([10]), np.arange(1, 40)]), (1, 39), strict=True):
        assert u.shape == (x.shape[0], 2 * n_f)
        approx = u.astype(np.float64) @ u.T.astype(np.float64)
        assert (np.abs(exact - approx) <= np.outer(e, e) + 1e-5).all()
    assert e[-1] == 0.0  # a constant row: nothing to miss, prunes every pair it is in


def test_pruning_scores_few_pairs_of_periodic_series(rng):
    """On strongly periodic series most pairs are never scored (and the result is unchanged)."""
    from telcoanalytics.analysis.correlate import _pruned_screen, _standardise

    x = 5 * _kpi_like(rng, 400, 288, 48)
    z = _standardise(x)
    top, n_scored = _pruned_screen([(0, z, z)], 20, True, 128, 16)
    assert n_scored < 0.05 * 400 * 399 / 2
    full = top_correlated_pairs(x, k=10, prune=False)
    np.testing.assert_array_equal(top_correlated_pairs(x, k=10, sketch_dims=16), full)
