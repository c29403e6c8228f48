"""Windows: multi-resolution ring buffers of bucket aggregates, continuous exponentially weighted
statistics, decay functions turned into per-bucket weights, and mergeable percentile sketches.
"""

from telcoanalytics.windows.decay import (  # noqa: F401
    EW_DTYPE,
    EW_FIELDS,
    LN2,
    BatchStatus,
    Decay,
    EWStats,
    as_decay,
    check_batch,
    check_groups,
    check_slots,
    decay_table,
    half_life_coefs,
)
from telcoanalytics.windows.sketch import (  # noqa: F401
    QuantileSketch,
)
from telcoanalytics.windows.sliding import (  # noqa: F401
    DEFAULT_RESOLUTIONS,
    STAT_FIELDS,
    STATS_DTYPE,
    SlidingWindows,
    StandingQuery,
    busiest_summary,
    topology_groups,
)

__all__ = [
    "LN2",
    "Decay",
    "as_decay",
    "EW_FIELDS",
    "EW_DTYPE",
    "half_life_coefs",
    "decay_table",
    "EWStats",
    "check_batch",
    "check_slots",
    "check_groups",
    "BatchStatus",
    "QuantileSketch",
    "STAT_FIELDS",
    "STATS_DTYPE",
    "DEFAULT_RESOLUTIONS",
    "SlidingWindows",
    "StandingQuery",
    "topology_groups",
    "busiest_summary",
]
