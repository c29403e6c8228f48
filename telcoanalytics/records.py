"""Canonical record types: one NumPy structured dtype per source, units in field names.

Every reader and schema version ends in exactly these dtypes; every kernel downstream reads
them (or plain arrays cut from them). Time is event time as int64 milliseconds UTC.

Sources
-------
``cdr``      call detail records, one row per call / session attempt
``equip``    equipment performance metrics, one row per (time, element, metric)
``flow``     traffic flow statistics, one row per (time, source, destination) interval
``qos``      quality-of-service measurements, one row per (time, element) probe interval

Conventions
-----------
* ``NO_TIME_MS`` (-1) in ``answer_ms`` means the call was never answered. Real timestamps are
  always inside the sane range checked at ingest (after 2000-01-01), so any negative is "none".
* ``mos`` NaN means "not measured" (optional field).
* Ids of parties, subscribers and elements are int64 (hashed upstream where they are strings).
"""

from __future__ import annotations

import numpy as np

NO_TIME_MS = -1

CDR_DTYPE = np.dtype(
    [
        ("record_id", "i8"),  # unique per call record; duplicates are quarantined
        ("start_ms", "i8"),  # seizure / attempt time
        ("answer_ms", "i8"),  # answer time, NO_TIME_MS when not answered
        ("end_ms", "i8"),  # release time
        ("calling_id", "i8"),  # hashed calling party
        ("called_id", "i8"),  # hashed called party
        ("imsi_hash", "i8"),  # hashed IMSI of the subscriber
        ("element_id", "i8"),  # serving cell / element
        ("service", "i2"),  # SERVICES code
        ("cause", "i2"),  # Q.850 release cause, 1..127
        ("bytes_up", "i8"),
        ("bytes_down", "i8"),
    ]
)

EQUIP_DTYPE = np.dtype(
    [
        ("ts_ms", "i8"),
        ("element_id", "i8"),
        ("metric_id", "i4"),  # METRICS code
        ("value", "f8"),  # in the unit named by METRICS[metric_id]
    ]
)

FLOW_DTYPE = np.dtype(
    [
        ("ts_ms", "i8"),
        ("src_element_id", "i8"),
        ("dst_element_id", "i8"),  # destination element, or link id
        ("bytes", "i8"),
        ("packets", "i8"),
        ("flows", "i8"),
    ]
)

QOS_DTYPE = np.dtype(
    [
        ("ts_ms", "i8"),
        ("element_id", "i8"),
        ("latency_ms", "f8"),
        ("jitter_ms", "f8"),
        ("loss_pct", "f8"),  # packet loss in percent, 0..100
        ("mos", "f8"),  # mean opinion score 1..5, NaN when not measured
    ]
)

DTYPES: dict[str, np.dtype] = {"cdr": CDR_DTYPE, "equip": EQUIP_DTYPE, "flow": FLOW_DTYPE, "qos": QOS_DTYPE}
SOURCES: tuple[str, ...] = tuple(DTYPES)

# Field holding the event time of each source (the CDR's event time is its start).
TIME_FIELD: dict[str, str] = {"cdr": "start_ms", "equip": "ts_ms", "flow": "ts_ms", "qos": "ts_ms"}
# Field holding the element a record is routed by.
ELEMENT_FIELD: dict[str, str] = {
    "cdr": "element_id",
    "equip": "element_id",
    "flow": "src_element_id",
    "qos": "element_id",
}

# Natural key of each source: two rows with equal keys are the same record (duplicates are quarantined).
NATURAL_KEY: dict[str, tuple[str, ...]] = {
    "cdr": ("record_id",),
    "equip": ("element_id", "metric_id", "ts_ms"),
    "flow": ("src_element_id", "dst_element_id", "ts_ms"),
    "qos": ("element_id", "ts_ms"),
}

# ---- code tables -------------------------------------------------------------------------
SERVICES: tuple[str, ...] = ("voice", "video", "sms", "data")
SERVICE_CODE = {name: i for i, name in enumerate(SERVICES)}

# Equipment performance metrics: name -> code; the unit is in the name.
METRICS: tuple[str, ...] = (
    "cpu_util_pct",  # 0
    "prb_util_pct",  # 1  radio / port utilisation
    "throughput_mbps",  # 2
    "unavailable_s",  # 3  seconds unavailable within the reporting interval
    "error_count",  # 4  error counter increment within the interval
    "temperature_c",  # 5
)
METRIC_CODE = {name: i for i, name in enumerate(METRICS)}

EQUIPMENT_CLASSES: tuple[str, ...] = ("macro_cell", "small_cell", "core_router", "aggregation_switch", "packet_gateway")
EQUIPMENT_CLASS_CODE = {name: i for i, name in enumerate(EQUIPMENT_CLASSES)}
VENDORS: tuple[str, ...] = ("vendor_a", "vendor_b", "vendor_c")
TECHNOLOGIES: tuple[str, ...] = ("2g", "3g", "4g", "5g", "ip")

# Q.850 release causes used by the KPIs.
Q850_MIN, Q850_MAX = 1, 127
CAUSE_NORMAL = (16, 31)  # normal clearing, normal unspecified
CAUSE_USER = (17, 18, 19, 20, 21)  # user busy, no user responding, no answer, absent, rejected
CAUSE_CONGESTION = (34, 42, 44, 47)  # no circuit, switching congestion, channel n/a, resource n/a
CAUSE_FAILURE = (27, 38, 41, 102)  # destination out of order, network out of order, temp failure, timer

# Topology table: one row per element with its place in the hierarchy and attributes.
TOPOLOGY_DTYPE = np.dtype(
    [
        ("element_id", "i8"),
        ("site_id", "i8"),
        ("region_id", "i8"),
        ("equipment_class", "i2"),  # EQUIPMENT_CLASSES code
        ("vendor", "i2"),  # VENDORS code
        ("technology", "i2"),  # TECHNOLOGIES code
        ("lat", "f8"),
        ("lon", "f8"),
    ]
)


def empty(source: str, n: int = 0) -> np.ndarray:
    """A zero-filled canonical array of ``source`` with ``n`` rows (``answer_ms``/``mos`` unset)."""
    try:
        dt = DTYPES[source]
    except KeyError:
        raise ValueError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}") from None
    out = np.zeros(n, dtype=dt)
    if source == "cdr":
        out["answer_ms"] = NO_TIME_MS
    elif source == "qos":
        out["mos"] = np.nan
    return out
