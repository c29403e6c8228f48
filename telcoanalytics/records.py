"""Canonical record types: one NumPy structured dtype per source, units in field names.

Every reader and schema version ends in exactly these dtypes; every kernel downstream reads
them (or plain arrays cut from them). Time is event time as int64 milliseconds UTC.

Sources
-------
``cdr``      call detail records, one row per call / session attempt
``equip``    equipment performance metrics, one row per (time, element, metric)
``flow``     traffic flow statistics, one row per (time, source, destination) interval
``qos``      quality-of-service measurements, one row per (time, element) probe interval
``complaint`` customer complaints, one row per ticket (time, element and/or location, category)

Conventions
-----------
* ``answer_ms``: ``NO_TIME_MS`` (-1) means the call was never answered. At ingest an empty cell,
  a null or NaN (the usual ways exports leave the answer time out), or an absent column, also
  read as "not answered" (-1). Any other negative value is quarantined as ``out_of_domain``; a
  time before the start or after the end of the call as ``answer_outside_call``.
* ``mos`` NaN means "not measured" (optional field); complaint ``lat``/``lon`` NaN: no location;
  every other float field must be finite.
* Ids of parties and subscribers are int64 (hashed upstream where they are strings, so any value).
  Element ids must be in the topology when the Ingestor has one (``unknown_element`` otherwise),
  and without one they (and flow destinations) must be non-negative (``out_of_domain``).

Domain bounds
-------------
``DOMAIN`` below is the one table of the values ingest accepts; a value outside it is
quarantined (``out_of_domain``, or ``negative_counter`` for a counter below zero, or
``time_out_of_range`` for times, whose range is the Ingestor's ``time_range_ms``, default
2000-01-01 .. 2100-01-01). Bounds are inclusive. The analyses downstream (windows, EW
statistics, anomaly detectors, cubes) therefore never see a non-finite or absurd value.

=============  =======================  ========================  ===============================
source         field                    accepted                  why the bound
=============  =======================  ========================  ===============================
cdr            end_ms - start_ms        0 .. 7 days               longest plausible session
cdr            answer_ms                -1, or start .. end       see above
cdr            cause                    1 .. 127                  Q.850
cdr            service                  0 .. 3                    ``SERVICES`` codes
cdr            bytes_up, bytes_down     0 .. 1e15                 1 PB per record
cdr            element_id               >= 0                      ids are non-negative
equip          metric_id                0 .. 5                    ``METRICS`` codes
equip          value                    ``METRIC_DOMAIN``         per metric, below
equip          element_id               >= 0
flow           bytes                    0 .. 1e15                 1 PB per interval
flow           packets                  0 .. 1e13
flow           flows                    0 .. 1e10
flow           src/dst_element_id       >= 0
qos            latency_ms, jitter_ms    0 .. 600,000              10 minutes
qos            loss_pct                 0 .. 100                  percent
qos            mos                      1 .. 5, or NaN            ITU-T P.800 scale
qos            element_id               >= 0
=============  =======================  ========================  ===============================

``METRIC_DOMAIN`` (equipment values by metric): ``cpu_util_pct`` and ``prb_util_pct`` 0..100,
``throughput_mbps`` 0..1e7 (10 Tbit/s), ``unavailable_s`` 0..86,400 (a day per interval),
``error_count`` 0..1e12, ``temperature_c`` -60..150. Counters (``error_count``,
``unavailable_s``, bytes, packets, flows) below zero are ``negative_counter``.
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

COMPLAINT_DTYPE = np.dtype(
    [
        ("complaint_id", "i8"),  # ticket id
        ("ts_ms", "i8"),  # when the customer complained
        ("element_id", "i8"),  # serving cell the ticket names (analysis.locate_complaints fills it from lat/lon)
        ("lat", "f8"),  # location given by the customer, NaN when none
        ("lon", "f8"),
        ("category", "i2"),  # COMPLAINT_CATEGORIES code
        ("imsi_hash", "i8"),  # hashed IMSI of the subscriber, 0 if unknown
    ]
)

DTYPES: dict[str, np.dtype] = {
    "cdr": CDR_DTYPE,
    "equip": EQUIP_DTYPE,
    "flow": FLOW_DTYPE,
    "qos": QOS_DTYPE,
    "complaint": COMPLAINT_DTYPE,
}
SOURCES: tuple[str, ...] = tuple(DTYPES)

# Field holding the event time of each source (the CDR's event time is its start).
TIME_FIELD: dict[str, str] = {
    "cdr": "start_ms",
    "equip": "ts_ms",
    "flow": "ts_ms",
    "qos": "ts_ms",
    "complaint": "ts_ms",
}
# Field holding the element a record is routed by.
ELEMENT_FIELD: dict[str, str] = {
    "cdr": "element_id",
    "equip": "element_id",
    "flow": "src_element_id",
    "qos": "element_id",
    "complaint": "element_id",
}

# Natural key of each source: two rows with equal keys are the same record (duplicates are quarantined).
NATURAL_KEY: dict[str, tuple[str, ...]] = {
    "cdr": ("record_id",),
    "equip": ("element_id", "metric_id", "ts_ms"),
    "flow": ("src_element_id", "dst_element_id", "ts_ms"),
    "qos": ("element_id", "ts_ms"),
    "complaint": ("complaint_id",),
}

# ---- domain bounds (see the module docstring; ingest reads them from here) ----------------------
MAX_CALL_MS = 7 * 86_400_000
MAX_BYTES = 10**15
MAX_PACKETS = 10**13
MAX_FLOWS = 10**10
MAX_DELAY_MS = 600_000.0
DOMAIN: dict[str, dict[str, tuple[float, float]]] = {
    "cdr": {
        "duration_ms": (0, MAX_CALL_MS),
        "cause": (1, 127),
        "service": (0, 3),
        "bytes_up": (0, MAX_BYTES),
        "bytes_down": (0, MAX_BYTES),
        "element_id": (0, np.iinfo(np.int64).max),
    },
    "equip": {"metric_id": (0, 5), "element_id": (0, np.iinfo(np.int64).max)},
    "flow": {
        "bytes": (0, MAX_BYTES),
        "packets": (0, MAX_PACKETS),
        "flows": (0, MAX_FLOWS),
        "src_element_id": (0, np.iinfo(np.int64).max),
        "dst_element_id": (0, np.iinfo(np.int64).max),
    },
    "qos": {
        "latency_ms": (0.0, MAX_DELAY_MS),
        "jitter_ms": (0.0, MAX_DELAY_MS),
        "loss_pct": (0.0, 100.0),
        "mos": (1.0, 5.0),
        "element_id": (0, np.iinfo(np.int64).max),
    },
}
"""source -> field -> inclusive (lo, hi) of accepted values (``duration_ms`` is end - start)."""

METRIC_DOMAIN: dict[str, tuple[float, float]] = {
    "cpu_util_pct": (0.0, 100.0),
    "prb_util_pct": (0.0, 100.0),
    "throughput_mbps": (0.0, 1e7),
    "unavailable_s": (0.0, 86_400.0),
    "error_count": (0.0, 1e12),
    "temperature_c": (-60.0, 150.0),
}
"""Equipment metric -> inclusive (lo, hi) of its value."""

COUNTER_METRICS = ("unavailable_s", "error_count")
"""Equipment metrics that count: a value below zero is ``negative_counter``."""

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

# Complaint categories: name -> code.
COMPLAINT_CATEGORIES: tuple[str, ...] = (
    "dropped_calls",  # 0  calls cut or failing
    "no_coverage",  # 1  no service at all
    "slow_data",  # 2  low throughput, long page loads
    "voice_quality",  # 3  choppy / delayed voice
    "billing",  # 4  not a network problem
    "other",  # 5
)
COMPLAINT_CATEGORY_CODE = {name: i for i, name in enumerate(COMPLAINT_CATEGORIES)}

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
    """A zero-filled canonical array of ``source`` with ``n`` rows (``answer_ms``/``mos``/``lat``/``lon`` unset)."""
    try:
        dt = DTYPES[source]
    except KeyError:
        raise ValueError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}") from None
    out = np.zeros(n, dtype=dt)
    if source == "cdr":
        out["answer_ms"] = NO_TIME_MS
    elif source == "qos":
        out["mos"] = np.nan
    elif source == "complaint":
        out["lat"] = np.nan
        out["lon"] = np.nan
    return out
