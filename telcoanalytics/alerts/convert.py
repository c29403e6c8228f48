"""Converters from SLA lifecycle events and anomaly records to :class:`~telcoanalytics.alerts.model.Alert`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from telcoanalytics.alerts.model import (
    ANOMALY_FIELDS,
    ANOMALY_SEVERITY,
    FIRING,
    RESOLVED,
    SEVERITIES,
    SLA_FIELDS,
    SLA_STATES,
    Alert,
    _fmt,
    rfc3339_ms,
)

__all__ = ["alerts_from_sla_events", "alerts_from_anomalies"]


# ---- converters -----------------------------------------------------------------------------
class _Labeler:
    """Maps (scope level, external id) to the label dict of the node and all its ancestors."""

    def __init__(self, topology):
        self.topology = topology
        self.levels = tuple(topology.levels) if topology is not None else ()
        self._lookup: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _dense(self, level: str, ids: np.ndarray) -> np.ndarray:
        topo = self.topology
        if level == topo.element_level:
            return topo.index_of(ids)
        if level not in self._lookup:
            node_ids = topo.ids[level]
            order = np.argsort(node_ids, kind="stable")
            self._lookup[level] = (node_ids[order], order.astype(np.int64))
        sorted_ids, order = self._lookup[level]
        if len(sorted_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return np.where(sorted_ids[pos] == ids, order[pos], -1)

    def labels(self, level: str, ids: np.ndarray) -> tuple[list[dict], np.ndarray]:
        """Label dicts per id and a bool mask of ids found in the topology."""
        ids = np.asarray(ids, dtype=np.int64)
        out = [{"scope": level, level: str(int(i))} for i in ids]
        if level not in self.levels:
            return out, np.zeros(len(ids), dtype=bool)
        dense = self._dense(level, ids)
        found = dense >= 0
        topo = self.topology
        depth = self.levels.index(level)
        if depth and found.any():
            # ancestors of a level-L node: go through any element below it is not possible for
            # childless nodes, so walk the parent arrays upward from this level
            node = np.where(found, dense, 0)
            for up in range(depth, 0, -1):
                node = topo.parent[self.levels[up]][node]
                name = self.levels[up - 1]
                vals = topo.ids[name][node].tolist()
                for j in np.flatnonzero(found).tolist():
                    out[j][name] = str(vals[j])
        return out, found


def _sla_fields(ev, i: int) -> dict:
    """The SLA_FIELDS of one event (object or dict) as a dict; ValueError naming a missing one."""
    if isinstance(ev, dict):
        d = ev
    else:
        try:
            d = {name: getattr(ev, name) for name in SLA_FIELDS}
        except AttributeError:
            d = {name: getattr(ev, name) for name in SLA_FIELDS if hasattr(ev, name)}
    if not isinstance(ev, dict):  # optional fields of newer SlaEvents (window, unit, ...)
        d.update({name: getattr(ev, name) for name in SLA_EXTRA_FIELDS if hasattr(ev, name)})
    if not all(name in d for name in SLA_FIELDS):
        name = next(n for n in SLA_FIELDS if n not in d)
        raise ValueError(
            f"SLA event #{i} ({type(ev).__name__}) has no field {name!r}; expected the fields {SLA_FIELDS}"
        )
    return d


def alerts_from_sla_events(
    events: Iterable, topology, *, include_pending: bool = False, generator_url: str = ""
) -> list[Alert]:
    """Convert SLA lifecycle events (``telcoanalytics.sla.sla.SlaEvent`` or dicts) into alerts.

    Parameters
    ----------
    events : iterable of SlaEvent-like objects or dicts
        Fields rule, kpi, severity, state, scope_level, scope_id, service, t_ms, start_ms,
        end_ms, value, threshold, worst_value, summary.
    topology : Topology or None
        Fills the ancestor labels (e.g. region of a site). Scopes whose level is not a topology
        level (e.g. "network") or whose id is unknown keep only their own label and get the
        annotation ``topology`` saying so (they are still alerted, never dropped).
    include_pending : bool
        ``pending`` events are not alerts (Prometheus sends only firing ones); they are skipped
        unless this is True, in which case they raise (a pending alert has no meaning here).
    generator_url : str
        ``generatorURL`` of the alerts.

    Returns
    -------
    list of Alert
        One per firing or resolved event, in input order. alertname is the rule name; the
        fingerprint covers rule, kpi, scope, service (severity may change without a new alert).

    Raises
    ------
    ValueError
        Missing field, unknown state or severity, or a pending event with include_pending.
    """
    labeler = _Labeler(topology)
    out: list[Alert] = []
    keep: list[dict] = []
    for i, ev in enumerate(events):
        d = _sla_fields(ev, i)
        state = d["state"]
        if state not in SLA_STATES:
            raise ValueError(f"SLA event #{i} has state {state!r}; expected one of {SLA_STATES}")
        if state == "pending":
            if include_pending:
                raise ValueError(
                    f"SLA event #{i} is pending; only firing/resolved events become "
                    "alerts, filter pending events or use include_pending=False"
                )
            continue
        if d["severity"] not in SEVERITIES:
            raise ValueError(
                f"SLA event #{i} (rule {d['rule']!r}) has severity {d['severity']!r}; expected one of {SEVERITIES}"
            )
        keep.append(d)
    by_level: dict[str, list[int]] = {}
    for j, d in enumerate(keep):
        by_level.setdefault(str(d["scope_level"]), []).append(j)
    scope_labels: list = [None] * len(keep)
    found_all = np.zeros(len(keep), dtype=bool)
    for level, js in by_level.items():
        ids = np.array([int(keep[j]["scope_id"]) for j in js], dtype=np.int64)
        labs, found = labeler.labels(level, ids)
        for k, j in enumerate(js):
            scope_labels[j] = labs[k]
            found_all[j] = found[k]
    for j, d in enumerate(keep):
        rule, kpi, level, sid = str(d["rule"]), str(d["kpi"]), str(d["scope_level"]), int(d["scope_id"])
        service, state, sev = str(d["service"] or ""), d["state"], d["severity"]
        labels = {
            "alertname": rule,
            "source": "sla",
            "rule": rule,
            "kpi": kpi,
            "service": service,
            "severity": sev,
            "classification": "sla",
        }
        labels.update(scope_labels[j])
        start_ms, t_ms, end_ms = int(d["start_ms"]), int(d["t_ms"]), int(d["end_ms"])
        ann = sla_annotations(d, level, sid, service, start_ms, t_ms, end_ms)
        if not found_all[j]:
            ann["topology"] = f"{level} {sid} is not in the topology; ancestor labels missing"
        out.append(
            Alert(
                labels=labels,
                annotations=ann,
                starts_at_ms=start_ms,
                ends_at_ms=(end_ms if end_ms >= 0 else t_ms) if state == RESOLVED else -1,
                state=state,
                updated_ms=t_ms,
                generator_url=generator_url,
            )
        )
    return out


def alerts_from_anomalies(
    rows: np.ndarray, topology, *, severity: dict | None = None, generator_url: str = "", transform: dict | None = None
) -> list[Alert]:
    """Convert anomaly records (``ANOMALY_DTYPE`` rows) into element-scope alerts.

    Parameters
    ----------
    rows : structured ndarray
        Fields element_id, metric, start_ms, end_ms (-1 while open), peak_score, direction,
        classification, baseline, threshold, value (``slot`` is optional; an optional ``t_ms``,
        the event time of the transition, becomes ``updated_ms``, so a re-issued row with a new
        classification updates the alert and an older row cannot override a newer one).
    topology : Topology or None
        Fills the site/region labels of each element; unknown elements keep only the element
        label and get the annotation ``topology`` (still alerted, never dropped).
    severity : dict classification -> severity, optional
        Overrides :data:`ANOMALY_SEVERITY`; unknown classifications get "warning".
    generator_url : str
        ``generatorURL`` of the alerts.
    transform : dict metric -> c, optional
        Metrics the detector scores on ``log(x + c)`` (default the detector's
        ``DEFAULT_METRIC_TRANSFORM``), to express its band in the metric's unit
        (:func:`anomaly_annotations`).

    Returns
    -------
    list of Alert
        One per row: firing while ``end_ms == -1``, else resolved at ``end_ms``. alertname is
        ``anomaly_<metric>``; the classification is a label but not part of the fingerprint,
        so a re-classified anomaly updates its alert.

    Raises
    ------
    ValueError
        ``rows`` is not a structured array with the fields above.
    """
    names = getattr(getattr(rows, "dtype", None), "names", None)
    if names is None:
        raise ValueError(
            f"rows must be a structured array with fields {ANOMALY_FIELDS}, got "
            f"{type(rows).__name__}; pass the ANOMALY_DTYPE array from anomaly.py"
        )
    missing = [f for f in ANOMALY_FIELDS if f not in names]
    if missing:
        raise ValueError(f"anomaly rows lack fields {missing}; expected {ANOMALY_FIELDS}")
    rows = np.atleast_1d(rows)
    sev_map = dict(ANOMALY_SEVERITY)
    sev_map.update(severity or {})
    bad = [s for s in sev_map.values() if s not in SEVERITIES]
    if bad:
        raise ValueError(f"severity map has unknown severities {bad}; expected {SEVERITIES}")
    labeler = _Labeler(topology)
    level = topology.element_level if topology is not None else "element"
    scope_labels, found = labeler.labels(level, rows["element_id"])
    if transform is None:
        try:
            from telcoanalytics.anomaly.detector import DEFAULT_METRIC_TRANSFORM as transform
        except ImportError:  # pragma: no cover - the anomaly package is part of the library
            transform = {}
    c = {f: rows[f].tolist() for f in ANOMALY_FIELDS}  # plain Python values, no numpy scalars
    # optional extension field: event time of this transition (open, close, re-issue)
    t_col = rows["t_ms"].tolist() if "t_ms" in names else None
    found = found.tolist()
    out = []
    for j in range(len(rows)):
        metric, cls = c["metric"][j], c["classification"][j]
        eid, end_ms, start = c["element_id"][j], c["end_ms"][j], c["start_ms"][j]
        labels = {
            "alertname": f"anomaly_{metric}" if metric else "anomaly",
            "source": "anomaly",
            "metric": metric,
            "classification": cls,
            "severity": sev_map.get(cls, "warning"),
        }
        labels.update(scope_labels[j])
        ann = anomaly_annotations(
            metric,
            cls,
            eid,
            c["value"][j],
            c["baseline"][j],
            c["peak_score"][j],
            c["threshold"][j],
            c["direction"][j],
            start,
            transform,
        )
        if end_ms >= 0:
            ann["summary"] = f"resolved: {ann['summary']}"
        if not found[j]:
            ann["topology"] = f"element {eid} is not in the topology; site/region labels missing"
        out.append(
            Alert(
                labels=labels,
                annotations=ann,
                starts_at_ms=start,
                ends_at_ms=end_ms if end_ms >= 0 else -1,
                state=RESOLVED if end_ms >= 0 else FIRING,
                updated_ms=(t_col[j] if t_col is not None and t_col[j] >= 0 else end_ms if end_ms >= 0 else start),
                generator_url=generator_url,
            )
        )
    return out


_UNIT_SUFFIX = (("_pct", "%"), ("_ms", "ms"), ("_mbps", "Mbit/s"), ("_s", "s"), ("_count", ""))


def metric_unit(metric: str) -> str:
    """The unit of a metric named with a unit suffix ("" when none).

    Examples
    --------
    >>> metric_unit("latency_ms"), metric_unit("prb_util_pct"), metric_unit("error_count")
    ('ms', '%', '')
    """
    for suffix, unit in _UNIT_SUFFIX:
        if metric.endswith(suffix):
            return unit
    return ""


def _u(x: float, unit: str) -> str:
    if x != x:
        return "n/a"
    return f"{x:.3g}" + ("" if not unit else "%" if unit == "%" else f" {unit}")


def anomaly_band(value, baseline, score, score_threshold, c=None) -> tuple[float, float]:
    """The expected band (low, high) of a metric in its own unit: the values whose score stays
    within ``score_threshold``, from the value and baseline at the peak and the peak score.

    The detector scores ``z = (f(x) - f(baseline)) / s`` with ``f`` the identity or ``log(x + c)``;
    ``s`` follows from the peak (``|f(value) - f(baseline)| / score``) and the band is
    ``f^-1(f(baseline) -+ score_threshold * s)``. NaN when the peak does not determine ``s``.

    Examples
    --------
    >>> [round(x, 6) for x in anomaly_band(16.0, 10.0, 3.0, 2.0)]  # s = 2: band 10 -+ 4
    [6.0, 14.0]
    >>> lo, hi = anomaly_band(np.e**3 - 1, 0.0, 3.0, 1.0, c=1.0)  # log scale: s = 1
    >>> round(lo, 4), round(hi, 4)
    (-0.6321, 1.7183)
    """
    nan = float("nan")
    value, baseline, score, thr = float(value), float(baseline), float(score), float(score_threshold)
    if not (np.isfinite(score) and score > 0 and np.isfinite(thr)):
        return nan, nan
    if c is None:
        s = abs(value - baseline) / score
        return (baseline - thr * s, baseline + thr * s) if s > 0 else (nan, nan)
    if value + c <= 0 or baseline + c <= 0:
        return nan, nan
    lb = np.log(baseline + c)
    s = abs(np.log(value + c) - lb) / score
    if s <= 0:
        return nan, nan
    return float(np.exp(lb - thr * s) - c), float(np.exp(lb + thr * s) - c)


def anomaly_annotations(metric, cls, eid, value, baseline, score, threshold, direction, start_ms, transform) -> dict:
    """Summary and annotations of an anomaly alert, values in the metric's unit: the value, the
    expected value (baseline) and band, the line it crossed, and the score separately."""
    if not metric:  # a silence: value = time without reports, threshold = the allowed gap (ms)
        return {
            "summary": f"{cls} on element {eid}: no report for {value / 60_000:.0f} min "
            f"(expected every {baseline / 60_000:.0f} min, flagged after {threshold / 60_000:.0f} min)",
            "description": f"{cls} since {rfc3339_ms(start_ms)}",
            "value": f"{value / 60_000:.0f} min",
            "expected": f"{baseline / 60_000:.0f} min",
            "threshold": f"{threshold / 60_000:.0f} min",
        }
    unit = metric_unit(metric)
    lo, hi = anomaly_band(value, baseline, score, threshold, transform.get(metric))
    lo = max(lo, 0.0) if lo == lo else lo  # the metrics are non-negative quantities
    up = direction > 0
    line = hi if up else lo
    summary = (
        f"{cls} on element {eid}: {metric} {_u(value, unit)} {'above' if up else 'below'} the expected "
        f"{_u(baseline, unit)} (normal {'up to' if up else 'down to'} {_u(line, unit)}); "
        f"score {_fmt(score)} vs threshold {_fmt(threshold)}"
    )
    return {
        "summary": summary,
        "description": f"{cls} since {rfc3339_ms(start_ms)}: expected band {_u(lo, unit)} to {_u(hi, unit)} "
        f"(baseline {_u(baseline, unit)}); peak score {_fmt(score)} (robust sigmas), score threshold {_fmt(threshold)}",
        "value": _u(value, unit),
        "expected": _u(baseline, unit),
        "expected_range": f"{_u(lo, unit)} to {_u(hi, unit)}",
        "threshold": _u(line, unit),
        "score": _fmt(score),
        "score_threshold": _fmt(threshold),
    }


SLA_EXTRA_FIELDS = ("window_min", "comparator", "unit", "kind")
"""Optional SLA event fields that make the alert text complete (older events lack them)."""


def _dur(ms: int) -> str:
    m = max(int(ms), 0) // 60_000
    return f"{m} min" if m < 120 else f"{m // 60} h {m % 60:02d} min"


def sla_annotations(d: dict, level: str, sid: int, service: str, start_ms: int, t_ms: int, end_ms: int) -> dict:
    """Summary and annotations of an SLA alert: the rule, its KPI with value and threshold in the
    KPI's unit, its window, and how long it has been breached (or was, once resolved)."""
    rule, kpi, unit = str(d["rule"]), str(d["kpi"]), str(d.get("unit", "") or "")
    window, comp = int(d.get("window_min", 0) or 0), str(d.get("comparator", "") or "")
    value, thr = _fmt(d["value"]), _fmt(d["threshold"])
    u = "" if not unit else unit if unit in ("%", "x") else f" {unit}"
    svc = f" ({service})" if service else ""
    over = f" over {window} min" if window else ""
    where = f"{level} {sid}{svc}"
    if d["state"] == FIRING:
        breached = _dur(t_ms - start_ms)
        if d.get("kind") == "burn":
            text = f"{kpi} error budget burning {value}{u} (alert at {thr}{u}{over}) on {where}"
        else:
            text = f"{kpi} {value}{u} {comp or 'breaches'} {thr}{u}{over} on {where}"
        summary = f"{rule}: {text}, breached for {breached} (since {rfc3339_ms(start_ms)[11:16]} UTC)"
    else:
        breached = _dur((end_ms if end_ms >= 0 else t_ms) - start_ms)
        summary = f"{rule}: {kpi} {value}{u} back within {thr}{u}{over} on {where} after {breached}"
    desc = f"SLA rule {rule} ({d['severity']}): violation since {rfc3339_ms(start_ms)}, worst {kpi} {_fmt(d['worst_value'])}{u}"
    if d["summary"]:
        desc += f". {d['summary']}"
    return {
        "summary": summary,
        "description": desc,
        "kpi": kpi,
        "value": f"{value}{u}",
        "threshold": f"{comp + ' ' if comp else ''}{thr}{u}",
        "window": f"{window} min" if window else "",
        "breached_for": breached,
    }
