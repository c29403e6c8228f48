"""Windows: multi-resolution ring buffers of bucket aggregates, continuous exponentially weighted
statistics, decay functions turned into per-bucket weights, and mergeable percentile sketches.
"""

from telcoanalytics.windows.decay import (  # noqa: F401
    LN2,
    Decay,
    as_decay,
    EW_FIELDS,
    EW_DTYPE,
    half_life_coefs,
    decay_table,
    EWStats,
    check_batch,
    check_slots,
    check_groups,
    BatchStatus,
)

from telcoanalytics.windows.sketch import (  # noqa: F401
    QuantileSketch,
)

from telcoanalytics.windows.sliding import (  # noqa: F401
    STAT_FIELDS,
    STATS_DTYPE,
    DEFAULT_RESOLUTIONS,
    SlidingWindows,
    StandingQuery,
    topology_groups,
    busiest_summary,
)

__all__ = [
    'LN2',
    'Decay',
    'as_decay',
    'EW_FIELDS',
    'EW_DTYPE',
    'half_life_coefs',
    'decay_table',
    'EWStats',
    'check_batch',
    'check_slots',
    'check_groups',
    'BatchStatus',
    'QuantileSketch',
    'STAT_FIELDS',
    'STATS_DTYPE',
    'DEFAULT_RESOLUTIONS',
    'SlidingWindows',
    'StandingQuery',
    'topology_groups',
    'busiest_summary',
]
