"""Anomaly detection: earned seasonal baselines, calibrated scores, change detection, silence
(collection gaps) and the network-level classification of anomalies along the topology.
"""

from telcoanalytics.anomaly.detector import *  # noqa: F401,F403
from telcoanalytics.anomaly.detector import __all__  # noqa: F401
