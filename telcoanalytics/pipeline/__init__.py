"""Pipeline: micro-batches through ingest and topology to the components, watermarks and allowed
lateness, checkpoint and restore, the replay's component wiring and partitioned (Dask) runs.
"""

from telcoanalytics.pipeline.checkpoint import (  # noqa: F401
    CheckpointError,
    read_checkpoint,
    write_atomic,
)
from telcoanalytics.pipeline.components import (  # noqa: F401
    ALL_NAMES,
    AnomalyComponent,
    CubeComponent,
    SlaComponent,
    WindowsComponent,
    build_alert_manager,
    build_components,
)
from telcoanalytics.pipeline.contract import (  # noqa: F401
    CONTRACT_METHODS,
    Component,
    RoutedBatch,
    check_component,
    class_path,
    load_class,
)
from telcoanalytics.pipeline.distributed import (  # noqa: F401
    PartitionedComponents,
    map_merge,
    partitioned_pipeline,
    split_by_level,
    windows_by_partition,
)
from telcoanalytics.pipeline.pipeline import (  # noqa: F401
    CHECKPOINT_FORMAT,
    Pipeline,
)

__all__ = [
    "ALL_NAMES",
    "build_components",
    "build_alert_manager",
    "WindowsComponent",
    "SlaComponent",
    "AnomalyComponent",
    "CubeComponent",
    "RoutedBatch",
    "Component",
    "CONTRACT_METHODS",
    "check_component",
    "class_path",
    "load_class",
    "split_by_level",
    "map_merge",
    "PartitionedComponents",
    "partitioned_pipeline",
    "windows_by_partition",
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "read_checkpoint",
    "write_atomic",
    "Pipeline",
]
