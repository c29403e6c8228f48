"""Anomaly detection: seasonal baselines, self-tuning thresholds, change detection, silence
(collection gaps) and the network-level classification of anomalies along the topology.
"""

from telcoanalytics.anomaly.detector import (  # noqa: F401
    ANOMALY_DTYPE,
    CLASSIFICATIONS,
    DEFAULT_METRIC_CONFIRM,
    DEFAULT_METRIC_FLOOR,
    DEFAULT_METRIC_TRANSFORM,
    AnomalyDetector,
    BatchScores,
    CalendarEvent,
    ClassifyConfig,
    DetectorConfig,
    NetworkAnomalyDetector,
    SilenceMonitor,
    default_parents,
)
from telcoanalytics.anomaly.policy import (  # noqa: F401
    HARMFUL_DIRECTION,
    PAGED,
    paged_alerts,
    region_gap_alerts,
    relabel_benign,
)
from telcoanalytics.anomaly.warmup import (  # noqa: F401
    warm_up,
)

__all__ = [
    "ANOMALY_DTYPE",
    "CLASSIFICATIONS",
    "DEFAULT_METRIC_TRANSFORM",
    "DEFAULT_METRIC_FLOOR",
    "DEFAULT_METRIC_CONFIRM",
    "DetectorConfig",
    "BatchScores",
    "AnomalyDetector",
    "SilenceMonitor",
    "CalendarEvent",
    "ClassifyConfig",
    "default_parents",
    "NetworkAnomalyDetector",
    "PAGED",
    "HARMFUL_DIRECTION",
    "relabel_benign",
    "paged_alerts",
    "region_gap_alerts",
    "warm_up",
]
