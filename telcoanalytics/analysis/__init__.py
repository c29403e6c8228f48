"""Statistical analysis over the network: root-cause localisation of KPI deviations, complaints,
routing efficiency, a compact Parquet history, and the replay's analysis section.
"""

from telcoanalytics.analysis.complaints import (  # noqa: F401
    category_dimension,
    complaint_counts,
    complaint_cube_spec,
    complaint_table,
    locate_complaints,
)
from telcoanalytics.analysis.component import AnalysisComponent  # noqa: F401
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

__all__ = [
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
