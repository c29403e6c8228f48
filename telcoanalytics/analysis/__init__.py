"""Statistical analysis over the network: root-cause localisation of KPI deviations, complaints,
routing efficiency, a compact Parquet history, and the replay's analysis section.
"""

from telcoanalytics.analysis.localize import (  # noqa: F401
    LOCALIZE_DIMS,
    Candidate,
    Localization,
    localization_scores,
    localize,
    localize_cube,
    localize_spec,
)

__all__ = [
    "LOCALIZE_DIMS",
    "Candidate",
    "Localization",
    "localize",
    "localize_cube",
    "localize_spec",
    "localization_scores",
]
