"""Plain-Python references for the analysis tests (loops on purpose; slow and obvious)."""

import numpy as np


def ets_aada_sse(y, m, alpha, beta, gamma, phi, l0, b0, s0):
    """SSE and final state of ETS(A,Ad,A) (Hyndman et al. 2008, Table 2.3), NaN skipped."""
    level, slope, season = l0, b0, list(s0)
    sse = 0.0
    for i, v in enumerate(y):
        f = level + phi * slope
        if np.isnan(v):
            level, slope = f, phi * slope
            continue
        e = v - f - season[i % m]
        sse += e * e
        level = f + alpha * e
        slope = phi * slope + beta * e
        season[i % m] += gamma * e
    return sse, level, slope, season


def ets_aada_multistep_sse(y, m, alpha, beta, gamma, phi, l0, b0, s0, horizon):
    """Squared errors of the 1..horizon-step forecasts from every horizon-th point (NaN skipped)."""
    level, slope, season = l0, b0, list(s0)
    total = 0.0
    for i, v in enumerate(y):
        if i % horizon == 0:
            for h in range(1, horizon + 1):
                if i + h - 1 < len(y) and not np.isnan(y[i + h - 1]):
                    damp = sum(phi**k for k in range(1, h + 1))
                    total += (y[i + h - 1] - (level + damp * slope + season[(i + h - 1) % m])) ** 2
        f = level + phi * slope
        if np.isnan(v):
            level, slope = f, phi * slope
            continue
        e = v - f - season[i % m]
        level = f + alpha * e
        slope = phi * slope + beta * e
        season[i % m] += gamma * e
    return total


def simulate_ets(rng, n, m, alpha, beta, gamma, phi, sigma, l0=50.0, b0=0.05, amp=5.0):
    """One ETS(A,Ad,A) path with Gaussian errors."""
    level, slope = l0, b0
    season = list(amp * np.sin(2 * np.pi * np.arange(m) / m))
    out = np.empty(n)
    for i in range(n):
        f = level + phi * slope
        e = rng.normal(0.0, sigma)
        out[i] = f + season[i % m] + e
        level = f + alpha * e
        slope = phi * slope + beta * e
        season[i % m] += gamma * e
    return out
