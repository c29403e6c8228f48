"""Pipeline: micro-batches through ingest and topology to the components, watermarks and allowed
lateness, crash-safe checkpoints (:mod:`.checkpoint`), the replay and real-time drivers with exact
resume (:mod:`.run`, :mod:`.replay`, :mod:`.follow`), one TOML configuration (:mod:`.config`), the
replay's component wiring and the pipeline partitioned on Dask (:mod:`.distributed`).
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
from telcoanalytics.pipeline.config import ConfigError, load_config  # noqa: F401
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
    PartitionedPipeline,
    local_client,
    map_merge,
    partitioned_pipeline,
    split_by_level,
    windows_by_partition,
)
from telcoanalytics.pipeline.follow import DirectorySource, run_stream  # noqa: F401
from telcoanalytics.pipeline.pipeline import (  # noqa: F401
    CHECKPOINT_FORMAT,
    Pipeline,
)
from telcoanalytics.pipeline.replay import run_replay  # noqa: F401
from telcoanalytics.pipeline.run import DEFAULT_CHECKPOINT_EVERY_MIN, OutputLog, Progress, Runner  # noqa: F401

__all__ = [
    "ConfigError",
    "load_config",
    "DirectorySource",
    "run_stream",
    "run_replay",
    "DEFAULT_CHECKPOINT_EVERY_MIN",
    "OutputLog",
    "Progress",
    "Runner",
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
    "PartitionedPipeline",
    "local_client",
    "windows_by_partition",
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "read_checkpoint",
    "write_atomic",
    "Pipeline",
]
