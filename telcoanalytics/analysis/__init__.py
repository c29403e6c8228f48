"""Statistical analysis over many series: trend detection, Holt-Winters forecasting and capacity
questions, correlation across metrics (lagged, with multiple-test correction, top-k pairs) and
before/after comparison around a change (seasonally matched, difference-in-differences).

Plain functions over arrays (``datetime64`` or int64 ms times), returning NumPy structured arrays
or small dataclasses; the numerics are Numba kernels in ``kernels.trend``, ``kernels.forecast``
and ``kernels.stats``.
"""

from telcoanalytics.analysis.compare import (  # noqa: F401
    EFFECT_DTYPE,
    before_after,
    difference_in_differences,
    mann_whitney_p,
    welch_t,
)
from telcoanalytics.analysis.correlate import (  # noqa: F401
    BEST_DTYPE,
    PAIR_DTYPE,
    LaggedCorrelation,
    benjamini_hochberg,
    correlation_pvalue,
    lagged_correlation,
    top_correlated_pairs,
)
from telcoanalytics.analysis.forecast import (  # noqa: F401
    CROSSING_DTYPE,
    PARAM_DTYPE,
    Forecast,
    HoltWinters,
    fit_holt_winters,
    mase,
)
from telcoanalytics.analysis.trend import TREND_DTYPE, deseasonalise, trend  # noqa: F401

__all__ = [
    "TREND_DTYPE",
    "trend",
    "deseasonalise",
    "PARAM_DTYPE",
    "CROSSING_DTYPE",
    "Forecast",
    "HoltWinters",
    "fit_holt_winters",
    "mase",
    "BEST_DTYPE",
    "PAIR_DTYPE",
    "LaggedCorrelation",
    "lagged_correlation",
    "correlation_pvalue",
    "benjamini_hochberg",
    "top_correlated_pairs",
    "EFFECT_DTYPE",
    "before_after",
    "difference_in_differences",
    "welch_t",
    "mann_whitney_p",
]
