"""Streaming anomaly detection with calibrated scores and topology-aware classification.

The implementation is split by concern; this module keeps the names importable from one place:

:mod:`~telcoanalytics.anomaly.config`
    :class:`DetectorConfig` (time-based settings scaled to the sampling interval), the metric
    registry and the anomaly record ``ANOMALY_DTYPE``.
:mod:`~telcoanalytics.anomaly.slots`
    :class:`AnomalyDetector`: causal per-slot detector (earned seasonality, robust scale, calibrated
    tail score, CUSUM, episodes that do not teach the baseline).
:mod:`~telcoanalytics.anomaly.silence`
    :class:`SilenceMonitor`: per-element reporting intervals and silence.
:mod:`~telcoanalytics.anomaly.network`
    :class:`NetworkAnomalyDetector`: the two above over a topology with classification.
"""

from telcoanalytics.anomaly.config import (  # noqa: F401
    ANOMALY_DTYPE,
    CLASSIFICATIONS,
    DEFAULT_METRIC_CONFIRM,
    DEFAULT_METRIC_FLOOR,
    DEFAULT_METRIC_TRANSFORM,
    DEFAULT_REGISTRY,
    NAME_LEN,
    DetectorConfig,
    MetricRegistry,
    MetricSpec,
    to_ms,
)
from telcoanalytics.anomaly.network import (  # noqa: F401
    CalendarEvent,
    ClassifyConfig,
    NetworkAnomalyDetector,
    default_parents,
)
from telcoanalytics.anomaly.silence import SilenceMonitor  # noqa: F401
from telcoanalytics.anomaly.slots import AnomalyDetector, BatchScores  # noqa: F401

__all__ = [
    "ANOMALY_DTYPE",
    "CLASSIFICATIONS",
    "DEFAULT_METRIC_CONFIRM",
    "DEFAULT_METRIC_FLOOR",
    "DEFAULT_METRIC_TRANSFORM",
    "DEFAULT_REGISTRY",
    "NAME_LEN",
    "DetectorConfig",
    "MetricRegistry",
    "MetricSpec",
    "to_ms",
    "CalendarEvent",
    "ClassifyConfig",
    "NetworkAnomalyDetector",
    "default_parents",
    "SilenceMonitor",
    "AnomalyDetector",
    "BatchScores",
]
