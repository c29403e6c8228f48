"""Input checks shared by the analysis modules: series matrices, time axes, levels."""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MS_PER_HOUR = 3_600_000


def as_series_matrix(values, name="values"):
    """``values`` as a C-contiguous float64 ``(n_series, n_points)`` array (1-D becomes one row).

    NaN is kept (it means missing); an infinite value is refused because it is never a
    measurement and would poison means and slopes.
    """
    try:
        y = np.array(values, dtype=np.float64, ndmin=1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric (got {type(values).__name__}): {exc}") from None
    if y.ndim == 1:
        y = y[None, :]
    if y.ndim != 2:
        raise ValueError(f"{name} must be 1-D (one series) or 2-D (n_series, n_points); got shape {y.shape}")
    if np.isinf(y).any():
        r, c = np.argwhere(np.isinf(y))[0]
        raise ValueError(f"{name}[{r}, {c}] is infinite; use NaN for a missing value")
    return np.ascontiguousarray(y)


def as_time_ms(times, n_points, name="times"):
    """Times as int64 ms: ``datetime64`` (any unit) or integers in ms; ``None`` gives positions.

    Returns ``(t_ms, given)``: int64 array of length ``n_points`` and whether times were given.
    The axis must be strictly increasing.
    """
    if times is None:
        return np.arange(n_points, dtype=np.int64), False
    t = np.asarray(times)
    if np.issubdtype(t.dtype, np.datetime64):
        t = t.astype("datetime64[ms]").astype(np.int64)
    elif np.issubdtype(t.dtype, np.integer):
        t = t.astype(np.int64)
    else:
        raise TypeError(f"{name} must be datetime64 or int64 ms since the epoch; got dtype {t.dtype}")
    if t.ndim != 1 or t.shape[0] != n_points:
        raise ValueError(f"{name} must be 1-D with one time per point ({n_points}); got shape {t.shape}")
    if n_points > 1 and np.any(np.diff(t) <= 0):
        i = int(np.argmax(np.diff(t) <= 0))
        raise ValueError(f"{name} must be strictly increasing; {name}[{i + 1}] <= {name}[{i}]: sort the series first")
    return t, True


def check_level(level, name):
    """A confidence level or significance in (0, 1)."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name} must be in (0, 1); got {level}")
    return level


def check_positive_int(value, name, minimum=1):
    """An integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def run_in_threads(fn, n, align, threads):
    """``fn(a, b)`` over row ranges covering ``0..n`` (multiples of ``align``), one per thread.

    The kernels release the GIL, so the ranges run in parallel; ``threads=None`` uses every
    core the process may run on.
    """
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = check_positive_int(threads, "threads")
    per = -(-n // threads)
    per = -(-per // align) * align
    ranges = [(a, min(a + per, n)) for a in range(0, n, max(per, 1))]
    if len(ranges) <= 1:
        for a, b in ranges:
            fn(a, b)
        return
    with ThreadPoolExecutor(len(ranges)) as pool:
        for f in [pool.submit(fn, a, b) for a, b in ranges]:
            f.result()
