"""Slow, obvious row-by-row references for ingest validation and duplicate detection.

Written from the rules in ``telcoanalytics.ingest.ingestor``'s docstring, one row at a time in plain
Python, without sharing code with the vectorised implementation.
"""

import math

from telcoanalytics.records import METRICS, SERVICES

# reasons in check order, as documented
ORDER = (
    "unparseable",
    "missing_value",
    "non_finite",
    "time_out_of_range",
    "negative_duration",
    "end_before_start",
    "answer_outside_call",
    "bad_cause",
    "out_of_domain",
    "negative_counter",
    "unknown_element",
    "duplicate_id",
    "time_in_future",
)

# the documented domain bounds (records module docstring), written out independently
MAX_CALL_MS = 7 * 86_400_000
MAX_BYTES, MAX_PACKETS, MAX_FLOWS = 10**15, 10**13, 10**10
METRIC_RANGE = {
    "cpu_util_pct": (0, 100),
    "prb_util_pct": (0, 100),
    "throughput_mbps": (0, 1e7),
    "unavailable_s": (0, 86_400),
    "error_count": (0, 1e12),
    "temperature_c": (-60, 150),
}
KEY = {
    "cdr": ("record_id",),
    "equip": ("element_id", "metric_id", "ts_ms"),
    "flow": ("src_element_id", "dst_element_id", "ts_ms"),
    "qos": ("element_id", "ts_ms"),
}


def _row_problems(source, r, lo, hi, neg_duration):
    """All (reason, field) problems of one canonical row (a dict), in check order."""
    out = []

    def t_bad(x):
        return not (lo <= x < hi)

    if source == "cdr":
        s, e, a = r["start_ms"], r["end_ms"], r["answer_ms"]
        if t_bad(s):
            out.append(("time_out_of_range", "start_ms"))
        if t_bad(e):
            out.append(("time_out_of_range", "end_ms"))
        if e < s:
            out.append(("negative_duration" if neg_duration else "end_before_start", "end_ms"))
        if a >= 0 and (a < s or a > e):
            out.append(("answer_outside_call", "answer_ms"))
        if not (1 <= r["cause"] <= 127):
            out.append(("bad_cause", "cause"))
        if not (0 <= r["service"] < len(SERVICES)):
            out.append(("out_of_domain", "service"))
        if e - s > MAX_CALL_MS:
            out.append(("out_of_domain", "end_ms"))
        if a < 0 and a != -1:
            out.append(("out_of_domain", "answer_ms"))
        for f in ("bytes_up", "bytes_down"):
            if r[f] > MAX_BYTES:
                out.append(("out_of_domain", f))
        for f in ("bytes_up", "bytes_down"):
            if r[f] < 0:
                out.append(("negative_counter", f))
    elif source == "equip":
        v, m = r["value"], r["metric_id"]
        if not math.isfinite(v):
            out.append(("non_finite", "value"))
        if t_bad(r["ts_ms"]):
            out.append(("time_out_of_range", "ts_ms"))
        name = METRICS[m] if 0 <= m < len(METRICS) else None
        counter = name in ("unavailable_s", "error_count")
        if name is None:
            out.append(("out_of_domain", "metric_id"))
        elif v > METRIC_RANGE[name][1] or (v < METRIC_RANGE[name][0] and not counter):
            out.append(("out_of_domain", "value"))
        if counter and v < 0:
            out.append(("negative_counter", "value"))
    elif source == "flow":
        if t_bad(r["ts_ms"]):
            out.append(("time_out_of_range", "ts_ms"))
        for f, top in (("bytes", MAX_BYTES), ("packets", MAX_PACKETS), ("flows", MAX_FLOWS)):
            if r[f] > top:
                out.append(("out_of_domain", f))
        for f in ("bytes", "packets", "flows"):
            if r[f] < 0:
                out.append(("negative_counter", f))
    elif source == "qos":
        for f in ("latency_ms", "jitter_ms", "loss_pct"):
            if not math.isfinite(r[f]):
                out.append(("non_finite", f))
        if math.isinf(r["mos"]):
            out.append(("non_finite", "mos"))
        if t_bad(r["ts_ms"]):
            out.append(("time_out_of_range", "ts_ms"))
        if not (0 <= r["latency_ms"] <= 600_000):
            out.append(("out_of_domain", "latency_ms"))
        if not (0 <= r["jitter_ms"] <= 600_000):
            out.append(("out_of_domain", "jitter_ms"))
        if not (0 <= r["loss_pct"] <= 100):
            out.append(("out_of_domain", "loss_pct"))
        if not math.isnan(r["mos"]) and not (1 <= r["mos"] <= 5):
            out.append(("out_of_domain", "mos"))
    return out


def reference_reasons(source, arr, time_range_ms, known_ids=None, neg_duration=False, seen=None):
    """First reason (or None) for every row of a canonical array, row by row.

    ``seen`` is a Python set of natural keys accepted before (updated in place). Without
    ``known_ids`` element ids must be non-negative.
    """
    lo, hi = time_range_ms
    elem = {"cdr": "element_id", "equip": "element_id", "flow": "src_element_id", "qos": "element_id"}[source]
    known = None if known_ids is None else set(int(x) for x in known_ids)
    seen = set() if seen is None else seen
    out = []
    for row in arr:
        r = {f: row[f].item() for f in arr.dtype.names}
        probs = _row_problems(source, r, lo, hi, neg_duration)
        if known is not None and r[elem] not in known:
            probs.append(("unknown_element", elem))
        if known is None:
            for f in ("element_id",) if source != "flow" else ("src_element_id", "dst_element_id"):
                if r[f] < 0:
                    probs.append(("out_of_domain", f))
        if not probs:
            key = tuple(r[f] for f in KEY[source])
            if key in seen:
                probs.append(("duplicate_id", "+".join(KEY[source])))
            else:
                seen.add(key)
        probs.sort(key=lambda p: ORDER.index(p[0]))  # stable: field order kept within a reason
        out.append(probs[0] if probs else None)
    return out


def reference_dedup(keys, active):
    """Duplicate flags of a Python-set pass over ``keys`` (only active rows count)."""
    seen = set()
    dup = []
    for k, a in zip(keys.tolist(), active.tolist()):
        if not a:
            dup.append(False)
        elif k in seen:
            dup.append(True)
        else:
            seen.add(k)
            dup.append(False)
    return dup
