"""Evaluation of the product anomaly detector on labelled data (NAB, router telemetry, synthetic
scenarios). Not used at run time.
"""

from telcoanalytics.evaluate.evaluate import (  # noqa: F401
    EXPECTED,
    PAGED,
    REPO,
    SHARED,
    SYNTH_METRICS,
    blocked_onset,
    evaluate_synth,
    main,
    synth_detector_config,
    synth_events,
    synth_table,
    threshold_transfer,
    transfer_table,
)
from telcoanalytics.evaluate.nab import (  # noqa: F401
    THRESHOLD_GRID,
    NabCorpus,
    choose_threshold,
    detections,
    lofo_table,
    nab_lofo,
    read_nab_csv,
)
from telcoanalytics.evaluate.scorecard import (  # noqa: F401
    scenario_scorecard,
)
from telcoanalytics.evaluate.telemetry import evaluate_telemetry, scenario_alarms, telemetry_table  # noqa: F401

__all__ = [
    "REPO",
    "SHARED",
    "SYNTH_METRICS",
    "PAGED",
    "EXPECTED",
    "synth_detector_config",
    "synth_events",
    "blocked_onset",
    "evaluate_synth",
    "synth_table",
    "threshold_transfer",
    "transfer_table",
    "THRESHOLD_GRID",
    "NabCorpus",
    "choose_threshold",
    "detections",
    "lofo_table",
    "nab_lofo",
    "read_nab_csv",
    "evaluate_telemetry",
    "scenario_alarms",
    "telemetry_table",
    "main",
    "scenario_scorecard",
]
