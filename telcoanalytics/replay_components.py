"""Adapters that plug the analysis capabilities into the pipeline for ``telcoanalytics replay``.

Each adapter implements the component protocol of :mod:`telcoanalytics.pipeline`
(``update``, ``advance``, ``report_lines``, ``to_state``, ``load_state``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

COMPONENTS: dict = {}
"""name -> factory(topology, day, out_dir, built) of the available components, in run order;
``built`` holds the components made so far (the alert component is made first)."""


def build_components(topology, day, out_dir: Path, enabled=None) -> dict:
    """Instantiate the enabled components (default: all) for a replay."""
    names = list(COMPONENTS) if enabled is None else list(enabled)
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise SystemExit(f"unknown components {unknown}; available: {', '.join(COMPONENTS) or 'none'}")
    built: dict = {}
    if "alerts" in names:   # built first: the others hand it their findings
        built["alerts"] = COMPONENTS["alerts"](topology, day, out_dir, built)
    for n in names:
        if n not in built:
            built[n] = COMPONENTS[n](topology, day, out_dir, built)
    # feed order: the alert manager last, so it ticks after the others pushed their findings
    return {n: built[n] for n in names if n != "alerts"} | ({"alerts": built["alerts"]} if "alerts" in built else {})


# ---- windows (issue 3) -------------------------------------------------------------------------
class WindowsComponent:
    """Per-element sliding windows of three replay metrics, with continuous EW decay.

    Slots are ``element_index * 3 + k`` for k = 0 call holding time (s, answered CDRs),
    1 QoS latency (ms), 2 equipment throughput (Mbit/s). Resolutions: 1 min x 60 and 1 h x 24;
    continuous EW mean/variance at half-lives 60 s, 1 h and 1 day. Memory is reported.
    """

    METRICS = ("holding_s", "latency_ms", "throughput_mbps")
    RESOLUTIONS = ((60_000, 60), (3_600_000, 24))
    HALF_LIVES_S = (60.0, 3600.0, 86400.0)

    def __init__(self, topology, allowed_lateness_ms: int = 900_000):
        from .windows import SlidingWindows
        self.topology = topology
        self.win = SlidingWindows(topology.n_elements * 3, self.RESOLUTIONS, allowed_lateness_ms, self.HALF_LIVES_S)
        self.n_side = 0   # events behind the windows' watermark (side output), counted, not folded in

    def update(self, source, rows, element_index):
        from .records import METRIC_CODE
        if source == "cdr":
            ok = rows["answer_ms"] >= 0
            ts, e, v = rows["start_ms"][ok], element_index[ok], (rows["end_ms"][ok] - rows["answer_ms"][ok]) / 1000.0
            k = 0
        elif source == "qos":
            ts, e, v, k = rows["ts_ms"], element_index, rows["latency_ms"], 1
        elif source == "equip":
            ok = rows["metric_id"] == METRIC_CODE["throughput_mbps"]
            ts, e, v, k = rows["ts_ms"][ok], element_index[ok], rows["value"][ok], 2
        else:
            return
        if len(ts):
            st = self.win.update(ts, e * 3 + k, v)
            self.n_side += int(np.count_nonzero(st.status == 1))

    def advance(self, watermark_ms):
        return []

    def topology_changed(self, topology, changes):
        """Added elements get new slots; existing elements keep theirs (dense indices are stable)."""
        n_new = topology.n_elements * 3
        if n_new > self.win.n_slots:
            self.win = self.win.rollup(np.arange(self.win.n_slots), n_new)   # identity groups: grow
        self.topology = topology

    def report_lines(self):
        from .decay import Decay
        w = self.win
        lines = [f"== windowed statistics ({len(self.RESOLUTIONS)} resolutions: 1 min x 60, 1 h x 24; "
                 f"EW half-lives 60 s / 1 h / 1 day; state {w.nbytes / 2**20:.0f} MiB for {w.n_slots:,} slots)"]
        t = w.max_ts_ms
        if t is None:
            return lines + ["  no data"]
        q_day = w.query(t, 24 * 3_600_000).reshape(-1, 3)
        q_hour = w.query(t, 3_600_000, decay=Decay.exponential(half_life_s=900.0)).reshape(-1, 3)
        ew = w.ew_values(t).reshape(-1, 3, len(self.HALF_LIVES_S))
        busiest = np.argsort(-q_day["count"][:, 0], kind="stable")[:5]
        eids = self.topology.ids[self.topology.element_level]
        lines.append("  busiest elements over the last 24 h (calls answered, holding time, QoS latency, throughput):")
        lines.append("  element      calls  hold_mean_s  hold_std_s  lat_mean_ms  lat_max_ms  lat_last_h_ms*  "
                     "lat_ew1h_ms  thr_mean_mbps")
        for e in busiest:
            a, b, c = q_day[e]
            lines.append(f"  {eids[e]:<10} {a['count']:7.0f} {a['mean']:12.1f} {a['std']:11.1f} {b['mean']:12.2f} "
                         f"{b['max']:11.2f} {q_hour[e, 1]['mean']:14.2f} {ew[e, 1, 1]['mean']:12.2f} {c['mean']:14.1f}")
        lines.append("  * last hour, exponentially decayed (half-life 15 min)")
        # roll the element slots up to regions (merge of window states along the topology)
        topo = self.topology
        slot = np.arange(w.n_slots)
        region = topo.element_to("region")[slot // 3] * 3 + slot % 3
        reg = w.rollup(region, topo.n_nodes("region") * 3).query(t, 3_600_000).reshape(-1, 3)
        lines.append("  regions over the last hour (windows rolled up the topology):")
        lines.append("  region    calls  hold_mean_s  lat_mean_ms  lat_std_ms  lat_max_ms")
        for r in range(topo.n_nodes("region")):
            a, b = reg[r, 0], reg[r, 1]
            lines.append(f"  {topo.ids['region'][r]:<7} {a['count']:7.0f} {a['mean']:12.1f} {b['mean']:12.2f} "
                         f"{b['std']:11.2f} {b['max']:11.2f}")
        lines.append(f"  events behind the windows' watermark (side output, not folded in): {self.n_side:,}")
        return lines

    def to_state(self):
        return {"win": self.win.to_state(), "n_side": self.n_side}

    def load_state(self, d):
        from .windows import SlidingWindows
        self.win = SlidingWindows.from_state(d["win"])
        self.n_side = int(d["n_side"])


COMPONENTS["windows"] = lambda topology, day, out_dir, built: WindowsComponent(topology)


# ---- KPI / SLA monitoring and alerts (issue 6) ------------------------------------------------------
class AlertsComponent:
    """The one alert path: SLA events and anomalies -> AlertManager -> JSON lines sink.

    Other components hand their findings to :meth:`push_sla` / :meth:`push_anomalies`; the manager
    is ticked with event time at every advance, and drained at :meth:`finish`.
    """

    def __init__(self, topology, out_dir: Path):
        from .alerts import AlertManager
        from .sinks import JsonlSink
        self.topology = topology
        self.path = Path(out_dir) / "alerts.jsonl"
        self.path.unlink(missing_ok=True)
        self.sink = JsonlSink(self.path, fsync=False)
        self.mgr = AlertManager(topology, sinks=[self.sink])
        self.now_ms = None
        self.n_notifications = 0

    def push_sla(self, events, now_ms):
        if events:
            self.mgr.ingest_sla(events, now_ms=now_ms)

    def push_anomalies(self, rows, now_ms):
        if len(rows):
            self.mgr.ingest_anomalies(rows, now_ms=now_ms)

    def update(self, source, rows, element_index):
        pass

    def advance(self, watermark_ms):
        self.now_ms = int(watermark_ms)
        sent = self.mgr.tick(now_ms=self.now_ms)
        self.n_notifications += len(sent)
        return sent

    def topology_changed(self, topology, changes):
        self.mgr.set_topology(topology)
        self.topology = topology

    def finish(self):
        if self.now_ms is not None:
            self.mgr.close(self.now_ms, drain=True)

    def report_lines(self):
        lines = [f"== alerts (deduplicated, grouped by site, inhibited along the topology; written to {self.path.name})"]
        lines += ["  " + x for x in self.mgr.summary_lines(self.now_ms)]
        return lines

    def to_state(self):
        return {"mgr": self.mgr.to_state(), "now_ms": -1 if self.now_ms is None else self.now_ms}

    def load_state(self, d):
        from .alerts import AlertManager
        self.mgr = AlertManager.from_state(d["mgr"], self.topology, sinks=[self.sink])
        self.now_ms = None if int(d["now_ms"]) < 0 else int(d["now_ms"])


class SlaComponent:
    """KPIs from raw records and SLA rules/SLOs (default rule set), events routed to alerts."""

    def __init__(self, topology, alerts: AlertsComponent | None, rules=None):
        from .sla import SlaMonitor
        self.mon = SlaMonitor(topology, rules)
        self.alerts = alerts
        self.events = []
        self.topology = topology

    def update(self, source, rows, element_index):
        if source in ("cdr", "equip", "qos"):
            self.mon.update(source, rows)

    def advance(self, watermark_ms):
        ev = self.mon.advance(int(watermark_ms))
        self.events.extend(ev)
        if self.alerts is not None:
            self.alerts.push_sla(ev, int(watermark_ms))
        return ev

    def report_lines(self):
        from collections import Counter
        lines = [f"== SLA monitoring ({len(self.mon.rules)} rules, KPIs from raw records; "
                 f"counter store {self.mon.store.memory_bytes() / 2**20:.0f} MiB)"]
        by = Counter((e.rule, e.state) for e in self.events)
        rules = sorted({r for r, _ in by})
        if not rules:
            return lines + ["  no violations"]
        lines.append("  rule                          pending  firing  resolved")
        for r in rules:
            lines.append(f"  {r:<29} {by[(r, 'pending')]:7d} {by[(r, 'firing')]:7d} {by[(r, 'resolved')]:9d}")
        firing = [e for e in self.events if e.state == "firing"]
        lines.append(f"  first firing violations (of {len(firing)}):")
        for e in firing[:8]:
            lines.append(f"    {e.summary}")
        return lines

    def to_state(self):
        return {"mon": self.mon.to_state(), "n_events": len(self.events)}

    def load_state(self, d):
        from .sla import SlaMonitor
        self.mon = SlaMonitor.from_state(d["mon"])


COMPONENTS["alerts"] = lambda topology, day, out_dir, built: AlertsComponent(topology, out_dir)
COMPONENTS["sla"] = lambda topology, day, out_dir, built: SlaComponent(topology, built.get("alerts"))
