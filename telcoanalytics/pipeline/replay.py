"""Adapters that plug the analysis capabilities into the pipeline for ``telcoanalytics replay``.

Each adapter implements the component protocol of :mod:`telcoanalytics.pipeline.pipeline`
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
    if "alerts" in names:  # built first: the others hand it their findings
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
        from telcoanalytics.windows.sliding import SlidingWindows

        self.topology = topology
        self.win = SlidingWindows(topology.n_elements * 3, self.RESOLUTIONS, allowed_lateness_ms, self.HALF_LIVES_S)
        self.n_side = 0  # events behind the windows' watermark (side output), counted, not folded in

    def update(self, source, rows, element_index):
        from telcoanalytics.records import METRIC_CODE

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
            self.win = self.win.rollup(np.arange(self.win.n_slots), n_new)  # identity groups: grow
        self.topology = topology

    def report_lines(self):
        from telcoanalytics.windows.decay import Decay

        w = self.win
        lines = [
            f"== windowed statistics ({len(self.RESOLUTIONS)} resolutions: 1 min x 60, 1 h x 24; "
            f"EW half-lives 60 s / 1 h / 1 day; state {w.nbytes / 2**20:.0f} MiB for {w.n_slots:,} slots)"
        ]
        t = w.max_ts_ms
        if t is None:
            return lines + ["  no data"]
        q_day = w.query(t, 24 * 3_600_000).reshape(-1, 3)
        q_hour = w.query(t, 3_600_000, decay=Decay.exponential(half_life_s=900.0)).reshape(-1, 3)
        ew = w.ew_values(t).reshape(-1, 3, len(self.HALF_LIVES_S))
        busiest = np.argsort(-q_day["count"][:, 0], kind="stable")[:5]
        eids = self.topology.ids[self.topology.element_level]
        lines.append("  busiest elements over the last 24 h (calls answered, holding time, QoS latency, throughput):")
        lines.append(
            "  element      calls  hold_mean_s  hold_std_s  lat_mean_ms  lat_max_ms  lat_last_h_ms*  "
            "lat_ew1h_ms  thr_mean_mbps"
        )
        for e in busiest:
            a, b, c = q_day[e]
            lines.append(
                f"  {eids[e]:<10} {a['count']:7.0f} {a['mean']:12.1f} {a['std']:11.1f} {b['mean']:12.2f} "
                f"{b['max']:11.2f} {q_hour[e, 1]['mean']:14.2f} {ew[e, 1, 1]['mean']:12.2f} {c['mean']:14.1f}"
            )
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
            lines.append(
                f"  {topo.ids['region'][r]:<7} {a['count']:7.0f} {a['mean']:12.1f} {b['mean']:12.2f} "
                f"{b['std']:11.2f} {b['max']:11.2f}"
            )
        lines.append(f"  events behind the windows' watermark (side output, not folded in): {self.n_side:,}")
        return lines

    def to_state(self):
        return {"win": self.win.to_state(), "n_side": self.n_side}

    def load_state(self, d):
        from telcoanalytics.windows.sliding import SlidingWindows

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
        from telcoanalytics.alerts.manager import AlertManager
        from telcoanalytics.alerts.sinks import JsonlSink

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
        lines = [
            f"== alerts (deduplicated, grouped by site, inhibited along the topology; written to {self.path.name})"
        ]
        lines += ["  " + x for x in self.mgr.summary_lines(self.now_ms)]
        return lines

    def to_state(self):
        return {"mgr": self.mgr.to_state(), "now_ms": -1 if self.now_ms is None else self.now_ms}

    def load_state(self, d):
        from telcoanalytics.alerts.manager import AlertManager

        self.mgr = AlertManager.from_state(d["mgr"], self.topology, sinks=[self.sink])
        self.now_ms = None if int(d["now_ms"]) < 0 else int(d["now_ms"])


class SlaComponent:
    """KPIs from raw records and SLA rules/SLOs (default rule set), events routed to alerts."""

    def __init__(self, topology, alerts: AlertsComponent | None, rules=None):
        from telcoanalytics.sla.sla import SlaMonitor

        self.mon = SlaMonitor(topology, rules)
        self.alerts = alerts
        self.events = []
        self.topology = topology
        self.now_ms = None

    def update(self, source, rows, element_index):
        if source in ("cdr", "equip", "qos"):
            self.mon.update(source, rows)

    def advance(self, watermark_ms):
        self.now_ms = int(watermark_ms)
        ev = self.mon.advance(self.now_ms)
        self.events.extend(ev)
        if self.alerts is not None:
            self.alerts.push_sla(ev, self.now_ms)
        return ev

    def topology_changed(self, topology, changes):
        """New elements get counters, re-homed ones count toward their new parents from now on;
        violations whose scope went away (retired elements) are closed and handed on."""
        ev = self.mon.set_topology(topology, changes)
        self.topology = topology
        self.events.extend(ev)
        if ev and self.alerts is not None and self.now_ms is not None:
            self.alerts.push_sla(ev, self.now_ms)

    def report_lines(self):
        from collections import Counter

        lines = [
            f"== SLA monitoring ({len(self.mon.rules)} rules, KPIs from raw records; "
            f"counter store {self.mon.store.memory_bytes() / 2**20:.0f} MiB)"
        ]
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
        return {"mon": self.mon.to_state(), "events": [e.to_dict() for e in self.events]}

    def load_state(self, d):
        from telcoanalytics.sla.sla import SlaEvent, SlaMonitor

        self.mon = SlaMonitor.from_state(d["mon"])
        self.events = [SlaEvent(**e) for e in d["events"]]


COMPONENTS["alerts"] = lambda topology, day, out_dir, built: AlertsComponent(topology, out_dir)
COMPONENTS["sla"] = lambda topology, day, out_dir, built: SlaComponent(topology, built.get("alerts"))


# ---- anomaly detection (issue 4) ---------------------------------------------------------------------
class AnomalyComponent:
    """Seasonal, self-tuning anomaly detection on equipment metrics and QoS latency/loss.

    Events are scored as they arrive (time-sorted within each batch); silence is checked at
    every advance against the pipeline's watermark (which already trails by the allowed lateness,
    so late-but-allowed reports do not look like silence). Faults, silences and collection gaps go
    to the alert manager; crowd/surge and change findings are reported here, not paged.
    """

    PAGED = ("fault", "silence")  # collection gaps are paged once per region (see _region_gaps)

    def __init__(self, topology, alerts: AlertsComponent | None):
        from telcoanalytics.anomaly.detector import NetworkAnomalyDetector
        from telcoanalytics.evaluate.evaluate import SYNTH_METRICS, synth_detector_config
        from telcoanalytics.records import METRICS

        self.metrics = SYNTH_METRICS
        self.n_eq = len(METRICS)
        self.net = NetworkAnomalyDetector(topology, SYNTH_METRICS, synth_detector_config(), silence_metrics=METRICS)
        self.topology = topology
        self.alerts = alerts
        self.rows = []
        self._pending = []
        # the harmful direction per metric: a "fault" the other way (less unavailability, lower
        # latency after a repair) is reported as benign, not paged; 0 = both directions harm
        harm = {m: 1 for m in self.metrics} | {"throughput_mbps": 0}
        self._metric_sorted = np.sort(np.array(self.metrics, dtype="U24"))
        self._harmful = np.array([harm[m] for m in self._metric_sorted], dtype=np.int64)

    def learn(self, day, until_ms: int):
        """Learn baselines and thresholds from the history: the clean equipment and QoS rows that
        *arrived* before ``until_ms`` (as a deployment restores them from yesterday's checkpoint).
        Rows arriving later are the replay's, so nothing is learned twice; findings of the
        history are dropped."""
        from telcoanalytics.synth.stream import ORIGIN_CLEAN

        parts = []
        for source in ("equip", "qos"):
            rows, arrival_ms, origin = day.raw(source)
            keep = (origin == ORIGIN_CLEAN) & (arrival_ms < until_ms)
            parts.append(self._events(source, rows[keep], self.topology.index_of(rows[keep]["element_id"])))
        ts, e, m, v = (np.concatenate([p[k] for p in parts]) for k in range(4))
        o = np.argsort(ts, kind="stable")
        ts, e, m, v = ts[o], e[o], m[o], v[o]
        step = 3_600_000
        lo = 0
        for t_end in range(day.start_ms + step, until_ms + step, step):
            k = int(np.searchsorted(ts, min(t_end, until_ms), side="left"))
            self.net.update(ts[lo:k], e[lo:k], m[lo:k], v[lo:k])
            self.net.check_silence(min(t_end, until_ms))
            lo = k
        self.net.update(ts[lo:], e[lo:], m[lo:], v[lo:])

    def _events(self, source, rows, element_index):
        """(ts_ms, element, metric, value) of equipment metrics and QoS latency/loss rows."""
        if source == "equip":
            return rows["ts_ms"], element_index, rows["metric_id"].astype(np.int64), rows["value"]
        n = len(rows)
        return (
            np.concatenate([rows["ts_ms"], rows["ts_ms"]]),
            np.concatenate([element_index, element_index]),
            np.repeat(np.array([self.n_eq, self.n_eq + 1], dtype=np.int64), n),
            np.concatenate([rows["latency_ms"], rows["loss_pct"]]),
        )

    def update(self, source, rows, element_index):
        if source not in ("equip", "qos"):
            return
        ts, e, m, v = self._events(source, rows, element_index)
        o = np.argsort(ts, kind="stable")  # causal scoring: in event-time order within the batch
        found = self.net.update(ts[o], e[o], m[o], v[o])
        if len(found):
            self._pending.append(found)

    def advance(self, watermark_ms):
        s = self.net.check_silence(int(watermark_ms))
        if len(s):
            self._pending.append(s)
        if not self._pending:
            return []
        found = np.concatenate(self._pending)
        self._pending = []
        harmless = (found["classification"] == "fault") & (
            found["direction"] == -self._harmful[np.searchsorted(self._metric_sorted, found["metric"])]
        )
        found["classification"][harmless] = "benign"
        self.rows.append(found)
        if self.alerts is not None:
            self.alerts.push_anomalies(found[np.isin(found["classification"], self.PAGED)], int(watermark_ms))
            self._region_gaps(found, int(watermark_ms))
        return list(found)

    def _region_gaps(self, found, now_ms):
        """A collection gap is one alert per region (its collector), not one per silent element."""
        from telcoanalytics.alerts.manager import Alert

        gaps = found[found["classification"] == "collection_gap"]
        if not len(gaps):
            return
        region_of = self.topology.element_to("region")
        reg = region_of[self.topology.index_of(gaps["element_id"])]
        out = []
        for r in np.unique(reg):
            g = gaps[reg == r]
            rid = str(int(self.topology.ids["region"][r]))
            opened = g[g["end_ms"] < 0]
            closed = g[g["end_ms"] >= 0]
            labels = {
                "alertname": "collection_gap",
                "region": rid,
                "source": "anomaly",
                "classification": "collection_gap",
                "severity": "warning",
            }
            if len(opened):
                start = int(opened["start_ms"].min())
                out.append(
                    Alert(
                        labels,
                        {
                            "summary": f"collection gap in region {rid}: {len(opened)} elements "
                            f"stopped reporting together since {_hhmm(start)}"
                        },
                        starts_at_ms=start,
                        updated_ms=now_ms,
                    )
                )
            elif len(closed):
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
        self.alerts.mgr.ingest(out, now_ms=now_ms)

    def report_lines(self):
        from collections import Counter

        from telcoanalytics.anomaly.detector import ANOMALY_DTYPE

        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, ANOMALY_DTYPE)
        opened = rows[rows["end_ms"] < 0]
        lines = [
            f"== anomalies (seasonal baselines, self-tuning thresholds, change and silence detection; "
            f"{self.net.detector.n_obs.size:,} slots)"
        ]
        if not len(opened):
            return lines + ["  none"]
        by = Counter(opened["classification"].tolist())
        lines.append(
            "  episodes opened by classification: "
            + ", ".join(f"{k}={v}" for k, v in sorted(by.items()))
            + "   (paged: fault, silence; collection gaps once per region; benign = a deviation in the harmless direction)"
        )
        top = opened[np.isin(opened["classification"], ("fault", "silence"))]
        top = top[np.argsort(-np.nan_to_num(top["peak_score"], nan=np.inf), kind="stable")][:8]
        for r in top:
            lines.append(
                f"    {r['classification']:<8} element {r['element_id']} {r['metric']:<16} "
                f"from {_hhmm(r['start_ms'])} value {r['value']:.4g} vs baseline {r['baseline']:.4g} "
                f"(score {r['peak_score']:.1f}, threshold {r['threshold']:.1f})"
            )
        gaps = opened[opened["classification"] == "collection_gap"]
        if len(gaps):
            reg = self.topology.ids["region"][
                self.topology.element_to("region")[self.topology.index_of(gaps["element_id"])]
            ]
            for rid in np.unique(reg):
                g = gaps[reg == rid]
                lines.append(
                    f"  collection gap: region {rid}, {len(g)} elements silent together from "
                    f"{_hhmm(g['start_ms'].min())} (network fine, collector down: silence alerts inhibited)"
                )
        crowd = opened[np.isin(opened["classification"], ("crowd", "surge"))]
        if len(crowd):
            sites = Counter(int(x) for x in crowd["scope_id"])
            lines.append(
                f"  crowd / demand surge (reported, not paged): {len(crowd)} episodes at scopes "
                + ", ".join(f"{k} (x{v})" for k, v in sites.most_common(5))
            )
        return lines

    def topology_changed(self, topology, changes):
        self.net.set_topology(topology)
        self.topology = topology

    def to_state(self):
        from telcoanalytics.anomaly.detector import ANOMALY_DTYPE

        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, ANOMALY_DTYPE)
        return {"net": self.net.to_state(), "rows": rows}

    def load_state(self, d):
        from telcoanalytics.anomaly.detector import NetworkAnomalyDetector

        self.net = NetworkAnomalyDetector.from_state(d["net"], self.topology)
        self.rows = [d["rows"]] if len(d["rows"]) else []


def _hhmm(t_ms) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(int(t_ms) / 1000, tz=_dt.UTC).strftime("%d %H:%M")


COMPONENTS["anomaly"] = lambda topology, day, out_dir, built: AnomalyComponent(topology, built.get("alerts"))


# ---- cubes (issue 5) -----------------------------------------------------------------------------------
class CubeComponent:
    """Cubes kept up to date from the CDR stream: the exploration cube (drop rates by region,
    site, equipment class, service, hour of day) and a subscriber cube (distinct subscribers and
    holding-time percentiles by region, service and hour)."""

    def __init__(self, topology):
        from telcoanalytics.cube import CubeSet, CubeSpec, explore_spec

        self.topology = topology
        self.cubes = CubeSet(
            {
                "explore": explore_spec(),
                "subscribers": CubeSpec(
                    dimensions=["region", "service", "hour_of_day"],
                    measures=["count", "distinct:imsi_hash", "p95:duration_ms", "sum:bytes"],
                ),
            },
            topology,
        )
        self.n = 0

    def update(self, source, rows, element_index):
        if source == "cdr":
            self.cubes.update(rows, element_idx=element_index)
            self.n += len(rows)

    def advance(self, watermark_ms):
        return []

    def topology_changed(self, topology, changes):
        """Cells keep the parents their events had; later rows roll up by the new structure."""
        self.cubes.set_topology(topology, changes)
        self.topology = topology

    def report_lines(self):
        from telcoanalytics.cube import explore_summary

        mem = sum(self.cubes[name].nbytes for name in self.cubes)
        lines = [f"== cubes ({len(self.cubes)} cubes over {self.n:,} call records; {mem / 2**20:.1f} MiB)"]
        lines += ["  " + x for x in explore_summary(self.cubes)]
        sub = self.cubes["subscribers"].view().group_by("region", "service").top_k("distinct:imsi_hash", 5)
        lines.append("  most distinct subscribers by region x service (HyperLogLog, ~1.6% error):")
        for r in sub:
            lines.append(
                f"    region {r['region']} {r['service']:<6} subscribers~{r['distinct_imsi_hash']:,.0f} "
                f"calls {r['count']:,} p95 duration {r['p95_duration_ms'] / 1000:.0f} s "
                f"bytes {r['sum_bytes'] / 1e9:.1f} GB"
            )
        return lines

    def to_state(self):
        return {"cubes": self.cubes.to_state(), "n": self.n}

    def load_state(self, d):
        from telcoanalytics.cube import CubeSet

        self.cubes = CubeSet.from_state(d["cubes"])
        self.n = int(d["n"])


COMPONENTS["cube"] = lambda topology, day, out_dir, built: CubeComponent(topology)


# ---- scoring a synthetic replay against its injected scenarios --------------------------------------
def scenario_scorecard(day, replay_from: int, components: dict, grace_ms: int = 900_000) -> list[str]:
    """Lines saying, for each scenario injected in the replayed span, what caught it.

    A scenario counts as caught by a component when one of its findings touches an affected
    element (or, for scopes, an element of the site/region) between the scenario's start minus and
    end plus ``grace_ms``: anomaly episodes (any classification), SLA events (firing), alerts.
    """
    topo = day.topology
    eid = topo.ids[topo.element_level]
    lines = ["== injected scenarios of the replayed span, and what caught them (ground truth of the synthetic day)"]
    anom = components.get("anomaly")
    sla = components.get("sla")
    rows = np.concatenate(anom.rows) if anom is not None and anom.rows else None
    sla_ev = [e for e in sla.events if e.state == "firing"] if sla is not None else []
    region_of = topo.element_to("region")
    site_of = topo.element_to("site")
    caught_total = 0
    listed = 0
    for lab, det in zip(day.labels, day.scenarios):
        if lab["end_ms"] <= replay_from:
            continue
        listed += 1
        kind = str(lab["scenario"])
        if kind == "collection_gap":
            r = int(np.searchsorted(topo.ids["region"], lab["scope_id"]))
            elems = eid[region_of == r]
        else:
            elems = np.asarray(det.get("element_ids", [lab["element_id"]]), dtype=np.int64)
        lo, hi = int(lab["start_ms"]) - grace_ms, int(lab["end_ms"]) + grace_ms
        how = []
        if rows is not None:
            m = np.isin(rows["element_id"], elems) & (rows["t_ms"] >= lo) & (rows["t_ms"] <= hi)
            if m.any():
                cls = sorted(set(rows["classification"][m].tolist()))
                first = int(rows["t_ms"][m].min())
                how.append(f"anomaly {'/'.join(cls)} at +{max(0, first - int(lab['start_ms'])) / 60000:.0f} min")
        idx = topo.index_of(elems)
        scope_ids = {("element", int(x)) for x in elems}
        scope_ids |= {("site", int(topo.ids["site"][s])) for s in np.unique(site_of[idx[idx >= 0]])}
        scope_ids |= {("region", int(topo.ids["region"][x])) for x in np.unique(region_of[idx[idx >= 0]])}
        hits = [e for e in sla_ev if (e.scope_level, int(e.scope_id)) in scope_ids and lo <= e.t_ms <= hi]
        if hits:
            how.append("SLA " + "/".join(sorted({e.rule for e in hits})))
        caught_total += bool(how)
        where = f"{lab['scope_level']} {lab['scope_id']}" + (f" {lab['metric']}" if lab["metric"] else "")
        lines.append(
            f"  {kind:<15} {where:<34} {_hhmm(lab['start_ms'])}-{_hhmm(lab['end_ms'])}: "
            + ("; ".join(how) if how else "NOT CAUGHT")
        )
    lines.append(f"  caught {caught_total} of {listed} injected scenarios")
    return lines
