"""Synthetic load: diurnal/weekly seasonality and per-element baselines on the PM grid.

The *load ratio* ``x[t, e]`` of a cell is its offered demand over its capacity in PM interval
``t``: ``x = u_bh[e] * profile_e(t) * day_factor[region, day] * exp(n[t, e]) * M[t, e]`` where
``u_bh`` is the busy-hour utilisation of the cell (lognormal spread, urban cells busier),
``profile_e = b_e * business(t) + (1 - b_e) * residential(t)`` the diurnal/weekly shape of the
cell (peak ~1 on weekdays; ``b_e`` its business share, higher in urban cores), ``n`` an AR(1) log-noise per element
and ``M`` the scenario demand multiplier (1 outside scenarios). Utilisation is ``min(x, 1)``;
demand above capacity is blocked (congestion causes in the CDRs). CDR attempt rates, throughput,
utilisation, latency and flows all derive from this one ``x``, so they move together.
"""

from __future__ import annotations

import numpy as np

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

# (amplitude, centre hour, spread hours) of the busy-hour bumps; base is the night floor.
# "mixed" is the network-wide curve; "business" cells (offices, city centre) peak in working
# hours and fall quiet at weekends; "residential" cells peak in the evening and stay busy at
# weekends. Every element mixes business and residential (see ``business_share``).
PROFILES = {
    "mixed": (
        (0.05, ((0.55, 10.5, 2.0), (0.50, 14.5, 2.3), (0.75, 19.8, 2.1))),
        (0.05, ((0.40, 12.5, 2.8), (0.80, 20.3, 2.4))),
        0.85,
    ),
    "business": (
        (0.04, ((0.90, 11.0, 2.3), (0.80, 15.0, 2.0), (0.30, 19.5, 2.0))),
        (0.04, ((0.35, 13.0, 3.0), (0.20, 20.0, 2.5))),
        0.40,
    ),
    "residential": (
        (0.06, ((0.35, 8.0, 1.5), (0.35, 13.0, 3.0), (0.90, 20.5, 2.0))),
        (0.06, ((0.50, 12.0, 3.0), (0.95, 20.5, 2.5))),
        1.00,
    ),
}
# backwards-compatible names of the mixed curve
WEEKDAY, WEEKEND, WEEKEND_PEAK = PROFILES["mixed"]


def _bumps(hour: np.ndarray, spec) -> np.ndarray:
    base, comps = spec
    out = np.full(hour.shape, base, dtype=np.float64)
    for amp, mu, sd in comps:
        d = (hour - mu + 12.0) % 24.0 - 12.0  # circular distance in hours
        out += amp * np.exp(-0.5 * (d / sd) ** 2)
    return out


_GRID = np.arange(0.0, 24.0, 1.0 / 60.0)
_NORM = {
    k: (float(_bumps(_GRID, wd).max()), float(_bumps(_GRID, we).max()) / peak) for k, (wd, we, peak) in PROFILES.items()
}


def diurnal_profile(t_ms, utc_offset_h: float = 0.0, kind: str = "mixed") -> np.ndarray:
    """Relative traffic load at event times ``t_ms`` (weekday peak 1.0).

    Parameters
    ----------
    t_ms : array_like of int64
        Times in milliseconds UTC.
    utc_offset_h : float
        Local time offset of the network (hours); the shape is in local time.
    kind : {"mixed", "business", "residential"}
        The network-wide curve, or the curve of office-district / residential cells.

    Returns
    -------
    float64 array, same shape as ``t_ms``
        "mixed": night trough ~0.06 around 04:00, a morning/lunch plateau and the busy hour
        around 20:00 (peak 1.0); Saturday/Sunday: late start, no office peak, evening peak 0.85.
        "business": working-hours peak, weekends at 40%. "residential": evening peak at 20:30,
        weekends as busy as weekdays.

    Raises
    ------
    ValueError
        For an unknown ``kind``.

    Notes
    -----
    A sum of circular Gaussian bumps over the hour of day; the day of week is counted from
    1970-01-01 (a Thursday). Shapes after the usual cellular load curves, e.g. Paul et al.,
    "Understanding traffic dynamics in cellular data networks", INFOCOM 2011, and the
    office/residential split of Xu et al., "Understanding mobile traffic patterns of large
    scale cellular towers in urban environment", IMC 2016.
    """
    if kind not in PROFILES:
        raise ValueError(f"kind must be one of {sorted(PROFILES)}, got {kind!r}")
    wd, we, _ = PROFILES[kind]
    n_wd, n_we = _NORM[kind]
    t = np.asarray(t_ms, dtype=np.float64) + utc_offset_h * HOUR_MS
    hour = (t / HOUR_MS) % 24.0
    dow = (np.floor(t / DAY_MS) + 3) % 7  # Monday = 0
    return np.where(dow >= 5, _bumps(hour, we) / n_we, _bumps(hour, wd) / n_wd)


def business_share(urban: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Share of each element's traffic that follows the business curve: urban U(0.3, 0.9), rural U(0, 0.3)."""
    return np.where(urban, rng.uniform(0.3, 0.9, len(urban)), rng.uniform(0.0, 0.3, len(urban)))


def ar1_lognoise(n_t: int, n_e: int, phi: float, sd: float, rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) log-noise ``n[t, e]`` with lag-one correlation ``phi`` and std ``sd``.

    Returns a float32 array of shape ``(n_t, n_e)``; ``n[t] = phi n[t-1] + sqrt(1-phi^2) sd eps``.
    """
    out = np.empty((n_t, n_e), dtype=np.float32)
    if n_t == 0:
        return out
    eps = rng.standard_normal((n_t, n_e), dtype=np.float32)
    out[0] = sd * eps[0]
    c = np.float32(np.sqrt(1.0 - phi * phi) * sd)
    ph = np.float32(phi)
    for k in range(1, n_t):
        np.multiply(out[k - 1], ph, out=out[k])
        out[k] += c * eps[k]
    return out


def busy_hour_util(urban: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Busy-hour utilisation fraction of each cell: lognormal, urban median 0.45, rural 0.22."""
    med = np.where(urban, 0.45, 0.22)
    return np.clip(med * rng.lognormal(0.0, 0.4, len(urban)), 0.03, 0.82)


def day_factors(n_regions: int, n_days: int, rng: np.random.Generator) -> np.ndarray:
    """Day-to-day volume factor per region, lognormal with 4% spread; shape (n_regions, n_days)."""
    return rng.lognormal(0.0, 0.04, (n_regions, max(n_days, 1)))
