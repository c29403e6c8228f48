"""What of the detector's findings an operations centre is paged for, and how.

The detector classifies episodes (fault, silence, collection_gap, crowd, surge, change); this
module holds the paging policy on top:

* a "fault" in a metric's harmless direction (less unavailability, lower latency after a repair)
  is relabelled ``benign`` and not paged (:func:`relabel_benign`);
* faults and silences are paged per element (:data:`PAGED`);
* a collection gap is paged once per collector (a region), not once per silent element
  (:func:`region_gap_alerts`);
* a confirmed level shift of a service-quality metric (latency, loss, jitter) in its harmful
  direction is a degradation, paged until a shift back (:func:`degradation_alerts`): a cell whose
  latency drifts to 3-8x its own baseline is judged against that baseline, where an absolute SLA
  line (calibrated above the slowest healthy cells) sees it late or never;
* crowd / surge findings and other changes are reported, not paged.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

from telcoanalytics.alerts.convert import metric_unit
from telcoanalytics.alerts.manager import Alert, alerts_from_anomalies, fingerprint_of

PAGED = ("fault", "silence")
"""Classifications paged per element."""

HARMFUL_DIRECTION = {"throughput_mbps": 0}
"""Metric -> the direction that harms (+1 up, -1 down, 0 both); metrics not listed harm upwards."""

DEGRADATION_METRICS = ("latency_ms", "loss_pct", "jitter_ms")
"""Metrics whose confirmed change in the harmful direction is paged as a degradation."""

DEGRADATION_MIN_RATIO = 1.6
"""A harmful change is paged as a degradation only when its level is at least this many times the
level before (an injected degradation drifts to 3-8x; at confirmation the synthetic ones stood at
1.7-2.2x, busy-hour level changes of healthy cells at 1.2-1.5x: chosen on seeds 7 and 11)."""


def relabel_benign(rows: np.ndarray, harmful: dict | None = None) -> int:
    """Relabel, in place, faults that deviate in their metric's harmless direction as ``benign``.

    Parameters
    ----------
    rows : structured ndarray with fields ``classification``, ``direction``, ``metric``
    harmful : dict metric -> direction, optional
        Overrides :data:`HARMFUL_DIRECTION`.

    Returns
    -------
    int
        Rows relabelled.

    Examples
    --------
    >>> r = np.array([("fault", -1, "latency_ms"), ("fault", 1, "latency_ms"), ("fault", -1, "throughput_mbps")],
    ...              dtype=[("classification", "U16"), ("direction", "i1"), ("metric", "U24")])
    >>> relabel_benign(r), r["classification"].tolist()
    (1, ['benign', 'fault', 'fault'])
    """
    table = HARMFUL_DIRECTION if harmful is None else harmful
    if not len(rows):
        return 0
    direction = np.array([table.get(str(m), 1) for m in rows["metric"]], dtype=np.int64)
    harmless = (rows["classification"] == "fault") & (direction != 0) & (rows["direction"] == -direction)
    rows["classification"][harmless] = "benign"
    return int(harmless.sum())


def paged_alerts(rows: np.ndarray, topology, now_ms: int) -> list[Alert]:
    """Alerts for the paged findings of ``rows``: faults and silences per element, degradations,
    then collection gaps once per region."""
    out = alerts_from_anomalies(rows[np.isin(rows["classification"], PAGED)], topology)
    return out + degradation_alerts(rows, topology) + region_gap_alerts(rows, topology, now_ms)


def degradation_alerts(
    rows: np.ndarray,
    topology,
    metrics=DEGRADATION_METRICS,
    harmful: dict | None = None,
    min_ratio: float = DEGRADATION_MIN_RATIO,
) -> list:
    """Degradation alerts from confirmed changes (classification ``change``) of ``metrics``.

    A change in the metric's harmful direction (:data:`HARMFUL_DIRECTION`) to at least
    ``min_ratio`` times the level before (upward; downward: at most ``1 / min_ratio``; a level
    before that is not positive is not judged) opens a firing ``degradation_<metric>`` alert on its
    element from the change's start; a change back (the other direction) resolves it at that
    change's start. Both carry the same labels, so the
    alert manager pairs them by fingerprint; a change back without an open degradation is
    dropped there (a resolution of an unseen alert).

    Examples
    --------
    >>> r = np.zeros(2, dtype=[("element_id", "i8"), ("metric", "U24"), ("start_ms", "i8"), ("end_ms", "i8"),
    ...     ("peak_score", "f8"), ("direction", "i1"), ("classification", "U16"), ("baseline", "f8"),
    ...     ("threshold", "f8"), ("value", "f8")])
    >>> r["metric"], r["classification"], r["direction"], r["start_ms"] = "latency_ms", "change", [1, -1], [0, 60_000]
    >>> r["baseline"], r["value"] = [10.0, 30.0], [30.0, 10.0]
    >>> [(a.state, a.labels["alertname"], a.ends_at_ms) for a in degradation_alerts(r, None)]
    [('firing', 'degradation_latency_ms', -1), ('resolved', 'degradation_latency_ms', 60000)]
    """
    table = HARMFUL_DIRECTION if harmful is None else harmful
    ch = rows[(rows["classification"] == "change") & np.isin(rows["metric"], list(metrics))]
    if not len(ch):
        return []
    bad = np.array([table.get(str(m), 1) for m in ch["metric"]], dtype=np.int64)
    ch = ch[bad != 0]
    bad = bad[bad != 0]
    ch = ch.copy()
    worse = ch["direction"] == bad
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ch["value"] / ch["baseline"]
    big = (ch["baseline"] > 0) & np.where(bad > 0, ratio >= min_ratio, ratio <= 1.0 / min_ratio)
    keep = ~worse | big  # small shifts are reported by the detector, not paged
    ch, worse = ch[keep], worse[keep]
    if not len(ch):
        return []
    ch["end_ms"] = np.where(worse, -1, ch["start_ms"])  # a shift back ends the degradation
    ch["classification"] = "degradation"
    out = alerts_from_anomalies(ch, topology, severity={"degradation": "major"})
    for a, w, r in zip(out, worse.tolist(), ch):
        a.labels["alertname"] = f"degradation_{a.labels.get('metric', '')}"
        a.fingerprint = fingerprint_of(a.labels)
        unit = metric_unit(str(r["metric"]))
        u = f"{'' if unit == '%' else ' '}{unit}" if unit else ""
        shift = f"{r['metric']} level {r['baseline']:.3g}{u} -> {r['value']:.3g}{u} (a confirmed shift)"
        a.annotations = {
            "summary": f"degradation on element {r['element_id']}: {shift}"
            if w
            else f"resolved: degradation on element {r['element_id']}: {shift}, back",
            "description": f"confirmed level shift since {_hhmm(r['start_ms'])} UTC; the change statistic "
            f"{r['peak_score']:.3g} is no z-score, so no band is given",
            "value": f"{r['value']:.3g}{u}",
            "expected": f"{r['baseline']:.3g}{u}",
        }
    return out


def region_gap_alerts(rows: np.ndarray, topology, now_ms: int) -> list[Alert]:
    """One alert per region for the collection gaps among ``rows`` (its collector stopped), firing
    while any of its gap episodes is open, else resolved at the last end."""
    gaps = rows[rows["classification"] == "collection_gap"]
    if not len(gaps):
        return []
    reg = topology.element_to("region")[topology.index_of(gaps["element_id"])]
    out = []
    for r in np.unique(reg):
        g = gaps[reg == r]
        rid = str(int(topology.ids["region"][r]))
        opened, closed = g[g["end_ms"] < 0], g[g["end_ms"] >= 0]
        labels = {
            "alertname": "collection_gap",
            "region": rid,
            "source": "anomaly",
            "classification": "collection_gap",
            "severity": "warning",
        }
        if len(opened):
            start = int(opened["start_ms"].min())
            summary = f"collection gap in region {rid}: {len(opened)} elements stopped reporting together since {_hhmm(start)}"
            out.append(Alert(labels, {"summary": summary}, starts_at_ms=start, updated_ms=now_ms))
        else:
            out.append(
                Alert(
                    labels,
                    {"summary": f"collection gap in region {rid} ended"},
                    starts_at_ms=int(closed["start_ms"].min()),
                    ends_at_ms=int(closed["end_ms"].max()),
                    state="resolved",
                    updated_ms=now_ms,
                )
            )
    return out


def _hhmm(t_ms) -> str:
    return _dt.datetime.fromtimestamp(int(t_ms) / 1000, tz=_dt.UTC).strftime("%d %H:%M")
