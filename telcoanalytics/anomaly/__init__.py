"""Anomaly detection: earned seasonal baselines, calibrated scores, change detection, silence
(collection gaps) and the network-level classification of anomalies along the topology.
"""

from telcoanalytics.anomaly.detector import *  # noqa: F401,F403
from telcoanalytics.anomaly.detector import __all__ as _detector_all
from telcoanalytics.anomaly.policy import (  # noqa: F401
    HARMFUL_DIRECTION,
    PAGED,
    paged_alerts,
    region_gap_alerts,
    relabel_benign,
)
from telcoanalytics.anomaly.warmup import warm_up  # noqa: F401

__all__ = [
    *_detector_all,
    "PAGED",
    "HARMFUL_DIRECTION",
    "relabel_benign",
    "paged_alerts",
    "region_gap_alerts",
    "warm_up",
]
