"""Incidents on real router telemetry: the Cisco IOS-XR lab recordings of ``shared/data/cisco``.

Not used at run time. A small reader turns three tables per router into alerts (the README of
the data describes them):

* interface state (``interface-briefs``): an interface that leaves ``im-state-up`` is an
  ``interface_down`` alert (classification "down") until it is up again;
* BFD sessions (``session-briefs``): a session that goes down is a ``bfd_down`` alert
  (classification "down");

The state found at a series' first sample is its configured state (unused ports are admin-down,
some sessions are down from the start): only changes from it raise alerts.
* interface rates (``latest_data-rate``): input and output data rate per interface are scored
  by the library's :class:`~telcoanalytics.anomaly.detector.AnomalyDetector` (no season: a
  recording lasts 15-30 minutes), and its episodes become ``anomaly_<metric>`` alerts.

Routers are the sites of a one-region topology (``lab``), interfaces its elements. The alerts run
through an :class:`~telcoanalytics.alerts.manager.AlertManager` with an
:class:`~telcoanalytics.alerts.incidents.IncidentBook` on event time. :func:`evaluate_scenario`
scores both the raw alerts (every alert start) and the notified incidents (first notification)
with the data's own scorer ``shared/tools/event_score.py`` (events detected within 5 minutes,
false alarms per hour outside 10 minutes after each event).
"""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from telcoanalytics.alerts.convert import anomaly_annotations
from telcoanalytics.alerts.incidents import IncidentBook
from telcoanalytics.alerts.manager import AlertManager
from telcoanalytics.alerts.model import Alert

BRIEF = "Cisco-IOS-XR-pfi-im-cmd-oper_interfaces_interface-briefs_interface-brief"
BFD = "Cisco-IOS-XR-ip-bfd-oper_bfd_session-briefs_session-brief"
RATE = "Cisco-IOS-XR-infra-statsd-oper_infra-statistics_interfaces_interface_latest_data-rate"
RATE_FIELDS = ("input-data-rate", "output-data-rate")


def read_table(path: Path) -> list[dict]:
    """Rows of one ``.csv.gz`` table as dicts (blank lines skipped, ``t_ms`` from the unnamed
    timestamp column); columns are looked up by name, as both header layouts occur."""
    with gzip.open(path, "rt", newline="") as f:
        rows = csv.reader(line for line in f if line.strip())
        header = next(rows)
        out = []
        for i, r in enumerate(rows):
            if len(r) != len(header):
                raise ValueError(f"{path}: row {i + 2} has {len(r)} fields, the header {len(header)}")
            d = dict(zip(header, r))
            d["t_ms"] = int(datetime.fromisoformat(r[0]).timestamp() * 1000)
            out.append(d)
    return out


def _labels(router: str, interface: str, alertname: str, classification: str, severity: str, **extra) -> dict:
    lab = {
        "alertname": alertname,
        "region": "lab",
        "site": router,
        "element": f"{router} {interface}",
        "scope": "element",
        "classification": classification,
        "severity": severity,
    }
    lab.update(extra)
    return lab


def state_alerts(router: str, rows: list[dict], key: str, field: str, up: str, alertname: str) -> list:
    """(t_ms, Alert) transitions of a state series: firing when it leaves ``up``, resolved back."""
    out, last = [], {}
    for r in sorted(rows, key=lambda r: r["t_ms"]):
        itf, state = r.get(key, ""), r.get(field, "")
        if not itf or not state:
            continue
        down, prev = state != up, last.get(itf)
        if prev is None:  # the state found at the start is the configured one (unused ports are
            last[itf] = (down, r["t_ms"], None, None)  # admin-down): only changes are alerts
            continue
        if prev[0] != down:
            if down:
                lab = _labels(router, itf, alertname, "down", "critical", source="state")
                ann = {"summary": f"{alertname} on {router} {itf}: state {state}", "value": state}
                out.append((r["t_ms"], Alert(lab, ann, starts_at_ms=r["t_ms"])))
                last[itf] = (True, r["t_ms"], lab, ann)
            else:
                _, start, lab, ann = prev
                if lab is not None:  # not for a port found down at the start and brought up
                    out.append((r["t_ms"], Alert(lab, ann, start, r["t_ms"], "resolved")))
                last[itf] = (False, r["t_ms"], None, None)
    return out


def rate_alerts(routers: dict, config=None, paging: bool = True) -> list:
    """(t_ms, Alert) of anomaly episodes on the interface rates of all routers (one detector).

    With ``paging`` (the default) the episodes pass the product's paging policy as the pipeline
    does (:meth:`~telcoanalytics.anomaly.policy.PagingPolicy.for_interval` of 10 s, replayed on a
    10-s clock): a fault is alerted once it stayed open 30 s or the other direction of its
    interface faults too; ``paging=False`` alerts every episode as it opens (the raw findings)."""
    from telcoanalytics.anomaly.detector import AnomalyDetector, DetectorConfig

    slots: dict[tuple, int] = {}
    ts, sl, val = [], [], []
    for router, rows in routers.items():
        for r in rows:
            for f in RATE_FIELDS:
                v = r.get(f, "")
                if v == "" or not r.get("interface-name"):
                    continue
                k = slots.setdefault((router, r["interface-name"], f), len(slots))
                ts.append(r["t_ms"])
                sl.append(k)
                val.append(float(v))
    if not ts:
        return []
    order = np.argsort(np.asarray(ts), kind="stable")
    det = AnomalyDetector(len(slots), config or DetectorConfig.for_interval(10))
    rows = det.update(np.asarray(ts, np.int64)[order], np.asarray(sl, np.int64)[order], np.asarray(val)[order])
    name = {v: k for k, v in slots.items()}
    rows = rows[rows["classification"] != "change"]
    timed = [(int(r["start_ms"]) if r["end_ms"] < 0 else int(r["end_ms"]), r) for r in rows]
    if paging:
        timed = _paged_rows(rows, name)
    out = []
    for t_row, row in timed:
        router, itf, f = name[int(row["slot"])]
        metric = f.replace("-", "_") + "_kbps"
        lab = _labels(router, itf, f"anomaly_{metric}", "fault", "critical", source="anomaly", metric=metric)
        ann = anomaly_annotations(
            metric, "fault", f"{router} {itf}", row["value"], row["baseline"], row["peak_score"],
            row["threshold"], row["direction"], int(row["start_ms"]), {},
        )  # fmt: skip
        if row["end_ms"] < 0:
            out.append((t_row, Alert(lab, ann, starts_at_ms=int(row["start_ms"]))))
        else:
            end = int(row["end_ms"])
            out.append((t_row, Alert(lab, ann, int(row["start_ms"]), end, "resolved")))
    return out


def _paged_rows(rows: np.ndarray, name: dict, tick_ms: int = 10_000) -> list:
    """(t_ms, row) of the rows the paging policy lets through, replayed on a ``tick_ms`` clock: a
    row reaches the policy at its emission time ``t_ms``; input and output of one interface are
    one element (two metrics of their own family, which corroborate each other)."""
    from telcoanalytics.anomaly.policy import PagingPolicy

    if not len(rows):
        return []
    rows = rows[np.argsort(rows["t_ms"], kind="stable")].copy()
    iface: dict = {}
    for i, r in enumerate(rows):
        router, itf, f = name[int(r["slot"])]
        rows["element_id"][i] = iface.setdefault((router, itf), len(iface))
        rows["metric"][i] = f
    pol = PagingPolicy.for_interval(tick_ms / 1000)
    out, k = [], 0
    t = int(rows["t_ms"][0])
    end = int(rows["t_ms"][-1]) + pol.persist_ms + tick_ms
    while t <= end:
        j = int(np.searchsorted(rows["t_ms"], t, side="right"))
        out += [(t, r) for r in pol.select(rows[k:j], t)]
        k = j
        t += tick_ms
    return out


def scenario_alerts(scenario_dir, config=None, paging: bool = True) -> list:
    """All (t_ms, Alert) of one scenario folder, in time order (``paging``: see :func:`rate_alerts`)."""
    scenario_dir = Path(scenario_dir)
    alerts, rates = [], {}
    for rdir in sorted(p for p in scenario_dir.iterdir() if p.is_dir()):
        router = rdir.name
        if (rdir / f"{BRIEF}.csv.gz").exists():
            rows = read_table(rdir / f"{BRIEF}.csv.gz")
            alerts += state_alerts(router, rows, "interface-name", "actual-state", "im-state-up", "interface_down")
        if (rdir / f"{BFD}.csv.gz").exists():
            rows = read_table(rdir / f"{BFD}.csv.gz")
            alerts += state_alerts(router, rows, "interface-name", "state", "bfd-mgmt-session-state-up", "bfd_down")
        if (rdir / f"{RATE}.csv.gz").exists():
            rates[router] = read_table(rdir / f"{RATE}.csv.gz")
    alerts += rate_alerts(rates, config, paging)
    return sorted(alerts, key=lambda x: x[0])


def run_incidents(alerts: list, *, confirm_ms: int = 0, hold_ms: int = 600_000, tick_ms: int = 10_000):
    """Feed (t_ms, Alert) through an incident-grouping AlertManager on event time; returns the
    book and the notifications."""
    book = IncidentBook(("region", "site", "element"), confirm_ms=confirm_ms, hold_ms=hold_ms)
    sent = []
    mgr = AlertManager(None, sinks=[], incidents=book, group_wait_ms=30_000, group_interval_ms=60_000)
    if not alerts:
        return book, sent
    t, i, end = alerts[0][0], 0, alerts[-1][0] + 3_600_000
    while t <= end:
        batch = []
        while i < len(alerts) and alerts[i][0] <= t:
            batch.append(alerts[i][1])
            i += 1
        if batch:
            mgr.ingest(batch, t)
        sent += mgr.tick(t)
        t += tick_ms
    mgr.close(end, flush_timeout_s=None)
    return book, sent


def _series(labels: dict) -> tuple[str, str]:
    router = labels.get("site", "")
    el = labels.get("element", "")
    return router, el.split(" ", 1)[1] if " " in el else ""


def score_alarms(scenario_dir, alarms: list, scorer: Path) -> dict:
    """Score (t_ms, router, interface) alarms with the data's ``event_score.py`` (its JSON)."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "device", "interface"])
        for t, dev, itf in alarms:
            w.writerow([f"{t / 1000:.3f}", dev, itf])
        path = f.name
    res = subprocess.run(
        [sys.executable, str(scorer), str(scenario_dir), path, "--json"], capture_output=True, text=True, check=True
    )
    Path(path).unlink()
    return json.loads(res.stdout)


def evaluate_scenario(scenario_dir, scorer, *, confirm_ms: int = 0, paging: bool = True) -> dict:
    """Raw alerts and notified incidents of one scenario, each scored with the data's scorer
    (``paging``: rate anomalies pass the paging policy, see :func:`rate_alerts`). An incident's
    alarms are its first notification (on its root scope) and each later page (an escalation or
    a new interface joining: on the router)."""
    alerts = scenario_alerts(scenario_dir, paging=paging)
    raw = [(t, *_series(a.labels)) for t, a in alerts if a.state == "firing"]
    book, _ = run_incidents(alerts, confirm_ms=confirm_ms)
    incs = [i for i in book.all() if i.notifications]
    inc_alarms = []
    for i in incs:
        dev = i.root_path[1] if len(i.root_path) > 1 else ""
        itf = i.root_path[2].split(" ", 1)[1] if len(i.root_path) > 2 else ""
        inc_alarms.append((i.first_notified_ms, dev, itf))
        # later pages (a new interface joined the router's incident) are alarms on the router
        inc_alarms += [(t, dev, "") for t in i.pages_ms[1:]]
    return {
        "scenario": Path(scenario_dir).name,
        "alerts": len(raw),
        "incidents": len(incs),
        "unconfirmed": len(book.all()) - len(incs),
        "raw": score_alarms(scenario_dir, raw, scorer),
        "incident": score_alarms(scenario_dir, inc_alarms, scorer),
        "book": book,
    }
