"""Statistical analysis over the network: trend detection, Holt-Winters forecasting and capacity
questions, correlation across metrics (lagged, with multiple-test correction, top-k pairs),
before/after comparison around a change (seasonally matched, difference-in-differences),
root-cause localisation of KPI deviations over the cubes, complaints, routing efficiency, a
compact Parquet history, and the replay's analysis section.

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
from telcoanalytics.analysis.complaints import (  # noqa: F401
    category_dimension,
    complaint_counts,
    complaint_cube_spec,
    complaint_table,
    locate_complaints,
)
from telcoanalytics.analysis.component import AnalysisComponent  # noqa: F401
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
from telcoanalytics.analysis.history import History, rollup  # noqa: F401
from telcoanalytics.analysis.localize import (  # noqa: F401
    LOCALIZE_DIMS,
    Candidate,
    Localization,
    localization_scores,
    localize,
    localize_cube,
    localize_spec,
    poisson_llr,
    worst_incident,
)
from telcoanalytics.analysis.report import analysis_report_lines  # noqa: F401
from telcoanalytics.analysis.routing import (  # noqa: F401
    Opportunity,
    RoutingReport,
    routing_efficiency,
    with_capacities,
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
    "LOCALIZE_DIMS",
    "Candidate",
    "Localization",
    "localize",
    "localize_cube",
    "localize_spec",
    "localization_scores",
    "poisson_llr",
    "worst_incident",
    "AnalysisComponent",
    "analysis_report_lines",
    "locate_complaints",
    "complaint_counts",
    "complaint_table",
    "complaint_cube_spec",
    "category_dimension",
    "Opportunity",
    "RoutingReport",
    "routing_efficiency",
    "with_capacities",
    "History",
    "rollup",
]
