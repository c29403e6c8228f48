"""Statistical analysis over many series: trend detection, Holt-Winters forecasting and capacity
questions, correlation across metrics (lagged, with multiple-test correction, top-k pairs) and
before/after comparison around a change (seasonally matched, difference-in-differences).

Plain functions over arrays (``datetime64`` or int64 ms times), returning NumPy structured arrays
or small dataclasses; the numerics are Numba kernels in ``kernels.trend``, ``kernels.forecast``
and ``kernels.stats``.
"""

from telcoanalytics.analysis.trend import TREND_DTYPE, deseasonalise, trend

__all__ = [
    "TREND_DTYPE",
    "deseasonalise",
    "trend",
]
