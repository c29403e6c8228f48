"""Pipeline: micro-batches through ingest and topology to the components, watermarks and allowed
lateness, checkpoint and restore, the replay's component wiring and partitioned (Dask) runs.
"""

from telcoanalytics.pipeline.distributed import (  # noqa: F401
    map_merge,
    split_by_level,
    windows_by_partition,
)
from telcoanalytics.pipeline.pipeline import (  # noqa: F401
    CHECKPOINT_FORMAT,
    Pipeline,
)
from telcoanalytics.pipeline.replay import (  # noqa: F401
    AlertsComponent,
    AnomalyComponent,
    CubeComponent,
    SlaComponent,
    WindowsComponent,
    build_components,
    scenario_scorecard,
)

__all__ = [
    "split_by_level",
    "map_merge",
    "windows_by_partition",
    "CHECKPOINT_FORMAT",
    "Pipeline",
    "build_components",
    "WindowsComponent",
    "AlertsComponent",
    "SlaComponent",
    "AnomalyComponent",
    "CubeComponent",
    "scenario_scorecard",
]
