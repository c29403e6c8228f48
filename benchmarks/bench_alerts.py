"""Alert path benchmarks: latency from an event's arrival in a micro-batch to the alert reaching
a local Alertmanager-like HTTP server, under replayed load; plus manager/converter throughput.

Latency (``test_alert_latency_replay``)
    A synthetic producer replays equipment-metric events at ``BENCH_RATE`` events/s (default
    1,000,000) in micro-batches of ``BENCH_BATCH`` events (default 100,000 = 0.1 s), each batch
    one minute of event time, over a 20,000-element topology (500 sites of 40 cells, 10 regions).
    Incidents (whole sites and single cells) push values over a threshold rule; the producer's
    vectorised rule evaluation emits ``SlaEvent`` transitions (firing / resolved), which go
    through ``alerts_from_sla_events`` -> ``AlertManager.ingest`` / ``tick`` -> ``WebhookSink``
    (background thread, durable spool with fsync) -> HTTP POST to a server on 127.0.0.1 in a
    separate process (like a real Alertmanager).
    Batch *i* "arrives" at ``t0 + i * BENCH_BATCH / BENCH_RATE`` (wall clock); if the pipeline
    falls behind, its queueing delay is part of the latency. An alert's latency is the server's
    receipt time minus the arrival time of the batch holding the event that caused it.
    Two manager configurations: "bare" (``group_wait_ms=0``, ``group_interval_ms`` = one batch
    of event time: every transition is notified at the tick of its own batch, so this is the
    processing + delivery latency) and "alertmanager_defaults" (``group_wait`` 30 s,
    ``group_interval`` 5 min of event time: an alert joining an already notified group, and a
    resolution, wait for the group's next flush, i.e. up to 5 batches = 0.5 s of wall time at
    this replay speed; by design, not processing delay).

SLA path (``test_alert_latency_sla_monitor``)
    When ``telcoanalytics.sla.sla`` and ``telcoanalytics.synth.network`` are present: a synthetic day
    (``BENCH_SLA_ELEMENTS`` elements, default 2,000, ``BENCH_SLA_DAYS`` default 0.5 day) replayed in arrival order through
    ``SlaMonitor.update`` / ``advance`` -> alerts -> manager -> webhook, unpaced (as fast as the
    monitor goes); reports events/s and the latency from a batch's hand-over to its alerts'
    receipt.

Real path at 1M events/s (``test_alert_latency_sla_paced``)
    ``BENCH_PACED_ELEMENTS`` elements (default 20,000; 500 sites of 40 cells), one micro-batch a
    second of wall clock with ``BENCH_RATE`` events (1M) covering ``BENCH_PACED_MIN_PER_BATCH``
    minutes of event time (default 1), CDR-heavy (88 % call records at 20,000 elements, the rest
    PM and QoS every 5 minutes), ``BENCH_PACED_LATE`` (0.5 %) of the calls 1-14 minutes late;
    site congestion incidents. ``SlaMonitor.update`` -> ``advance`` (ticks + late-data
    re-evaluation) -> alerts -> manager -> webhook -> server process, for
    ``BENCH_PACED_SECONDS`` (60) batches after 30 unmeasured minutes of history. Reports per-batch
    processing time (wall and CPU), whether it kept up, and arrival -> receipt latency p50/p99.
    ``.venv/bin/python benchmarks/bench_alerts.py --paced`` prints it alone.

Run: ``.venv/bin/python -m pytest benchmarks/bench_alerts.py --benchmark-only -q`` or
``.venv/bin/python benchmarks/bench_alerts.py`` (prints the figures). ``BENCH_N`` sets the
number of replayed events (default 10,000,000 = 10 s at 1M events/s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pytest

from telcoanalytics.alerts.manager import AlertManager, alerts_from_anomalies, alerts_from_sla_events, fingerprint_of
from telcoanalytics.alerts.sinks import WebhookSink
from telcoanalytics.topology.model import Topology

BENCH_N = int(os.environ.get("BENCH_N", 10_000_000))
BENCH_RATE = float(os.environ.get("BENCH_RATE", 1_000_000))
BENCH_BATCH = int(os.environ.get("BENCH_BATCH", 100_000))
BENCH_SLA_ELEMENTS = int(os.environ.get("BENCH_SLA_ELEMENTS", 2_000))
BENCH_SLA_DAYS = float(os.environ.get("BENCH_SLA_DAYS", 0.5))
T0 = 1_772_409_600_000  # 2026-03-02 00:00 UTC
MIN = 60_000

try:  # the real event class when the SLA module is there, else the brief's field list
    from telcoanalytics.sla.sla import SlaEvent
except ImportError:  # pragma: no cover

    @dataclass
    class SlaEvent:
        rule: str
        kpi: str
        severity: str
        state: str
        scope_level: str
        scope_id: int
        service: str
        t_ms: int
        start_ms: int
        end_ms: int
        value: float
        threshold: float
        worst_value: float
        summary: str


# ---- receiving side ------------------------------------------------------------------------
_RECEIVER_SRC = r"""
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
got, posts = [], [0]

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        now = time.monotonic_ns()
        for a in json.loads(body):
            got.append((now, a["labels"], a["startsAt"], a.get("endsAt", "")))
        posts[0] += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        out = json.dumps({"posts": posts[0], "got": got}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever(poll_interval=0.01)
"""


class Receiver:
    """Alertmanager stand-in: a separate process serving 127.0.0.1 (as a real Alertmanager
    would be, so it does not compete for this process's GIL), recording for every alert its
    receipt time (``time.monotonic_ns``, CLOCK_MONOTONIC: the same clock in both processes on
    Linux), labels, startsAt and endsAt."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _RECEIVER_SRC], stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"
        self.posts = 0

    def records(self) -> list[tuple[int, str, str, str]]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url + "/records", timeout=60) as r:
            d = json.loads(r.read())
        self.posts = d["posts"]
        return [(t, fingerprint_of(labels), s, e) for t, labels, s, e in d["got"]]

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


def _iso(t_ms: int) -> str:
    from telcoanalytics.alerts.manager import rfc3339_ms

    return rfc3339_ms(t_ms)


def match_latencies(sent: list[tuple[str, str, str, int]], got) -> tuple[np.ndarray, int]:
    """Latency (ms) of each produced transition the server received: first receipt of its
    fingerprint carrying its startsAt (firing) or endsAt (resolved), minus the arrival time of
    its batch; and the number of transitions never sent.

    Notes
    -----
    An alert that fires and resolves before its group's next flush is never notified (neither
    firing nor resolved), as in Alertmanager; those are the unsent transitions, and the manager
    counts them as ``resolved_before_notify``.
    """
    first: dict[tuple, int] = {}
    for t, fp, starts, ends in got:
        first.setdefault((fp, "firing", starts), t)
        first.setdefault((fp, "resolved", ends), t)
    lat = [(first[(fp, st, k)] - arrival_ns) / 1e6 for fp, st, k, arrival_ns in sent if (fp, st, k) in first]
    return np.asarray(lat), len(sent) - len(lat)


def _pct(lat: np.ndarray, q: float) -> float:
    return float(np.percentile(lat, q)) if len(lat) else float("nan")


# ---- synthetic producer --------------------------------------------------------------------
def bench_topology(n_sites=500, cells_per_site=40, n_regions=10) -> Topology:
    n = n_sites * cells_per_site
    site = np.repeat(np.arange(n_sites, dtype=np.int64) + 10_000, cells_per_site)
    region = (site - 10_000) % n_regions + 1
    return Topology.from_columns(np.arange(n, dtype=np.int64) + 1_000_000, {"region": region, "site": site})


class ThresholdProducer:
    """Vectorised stand-in for an SLA rule: an element fires when a value in the batch exceeds
    ``threshold`` and resolves in the first batch without one (emits ``SlaEvent``s)."""

    def __init__(self, topo: Topology, threshold=90.0):
        self.topo = topo
        self.thr = threshold
        self.firing = np.zeros(topo.n_elements, bool)
        self.start_ms = np.full(topo.n_elements, -1, np.int64)
        self.worst = np.zeros(topo.n_elements)
        self.eids = topo.ids[topo.element_level]

    def step(self, elem, value, t_ms) -> list:
        over = value > self.thr
        hot = np.zeros(self.topo.n_elements, bool)
        hot[elem[over]] = True
        peak = np.zeros(self.topo.n_elements)
        np.maximum.at(peak, elem[over], value[over])
        new = np.flatnonzero(hot & ~self.firing)
        gone = np.flatnonzero(self.firing & ~hot)
        self.firing[new] = True
        self.start_ms[new] = t_ms
        self.worst = np.maximum(self.worst, peak)
        self.firing[gone] = False
        out = []
        for i in new.tolist():
            out.append(
                SlaEvent(
                    "cell_prb_congestion",
                    "prb_util_pct",
                    "major",
                    "firing",
                    "element",
                    int(self.eids[i]),
                    "",
                    t_ms,
                    t_ms,
                    -1,
                    float(peak[i]),
                    self.thr,
                    float(peak[i]),
                    "PRB utilisation over 90%",
                )
            )
        for i in gone.tolist():
            out.append(
                SlaEvent(
                    "cell_prb_congestion",
                    "prb_util_pct",
                    "major",
                    "resolved",
                    "element",
                    int(self.eids[i]),
                    "",
                    t_ms,
                    int(self.start_ms[i]),
                    t_ms,
                    50.0,
                    self.thr,
                    float(self.worst[i]),
                    "PRB utilisation back under 90%",
                )
            )
            self.worst[i] = 0.0
        return out


def replay_latency(
    n_events=BENCH_N, rate=BENCH_RATE, batch=BENCH_BATCH, group_wait_ms=0, group_interval_ms=MIN, seed=42, spool=True
) -> dict:
    """Paced replay through the alert path; returns latency percentiles and rates."""
    rng = np.random.default_rng(seed)
    topo = bench_topology()
    for lv in topo.levels:  # warm the topology's cached maps (and their kernels)
        topo.element_to(lv)
    n_el = topo.n_elements
    n_batches = max(1, n_events // batch)
    # pre-generated pool of base batches (reused), incidents applied at replay time
    pool = [(rng.integers(0, n_el, batch), rng.normal(50.0, 8.0, batch)) for _ in range(4)]
    site_of = topo.element_to("site")
    # incidents: every batch one site (40 cells) goes bad for 3 batches, and 5 single cells for 2
    site_bad_until = np.full(topo.n_nodes("site"), -1)
    cell_bad_until = np.full(n_el, -1)
    rcv = Receiver()
    tmp = tempfile.mkdtemp(prefix="bench_alerts_")
    sink = WebhookSink(rcv.url, spool_dir=os.path.join(tmp, "spool") if spool else None, timeout_s=5)
    mgr = AlertManager(
        topo,
        [sink],
        group_wait_ms=group_wait_ms,
        group_interval_ms=group_interval_ms,
        repeat_interval_ms=4 * 3_600_000,
        clock=lambda: 0,
    )
    prod = ThresholdProducer(topo)
    sent: list[tuple[str, str, str, int]] = []
    period_ns = int(batch / rate * 1e9)
    busy_ns = alert_ns = 0
    busy_max_ns = 0
    t_start = time.monotonic_ns() + 50_000_000
    for i in range(n_batches):
        arrival = t_start + i * period_ns
        while True:
            d = arrival - time.monotonic_ns()
            if d <= 0:
                break
            time.sleep(min(d / 1e9, 0.01))
        t_busy = time.monotonic_ns()
        t_ms = T0 + i * MIN
        site_bad_until[rng.integers(0, len(site_bad_until))] = i + 3
        cell_bad_until[rng.integers(0, n_el, 5)] = i + 2
        elem, base = pool[i % len(pool)]
        bad = (site_bad_until[site_of[elem]] > i) | (cell_bad_until[elem] > i)
        value = np.where(bad, 95.0, base)
        events = prod.step(elem, value, t_ms)
        t_alert = time.monotonic_ns()
        alerts = alerts_from_sla_events(events, topo)
        for a in alerts:
            key = _iso(a.starts_at_ms) if a.state == "firing" else _iso(a.ends_at_ms)
            sent.append((a.fingerprint, a.state, key, arrival))
        mgr.ingest(alerts, t_ms)
        mgr.tick(t_ms)
        alert_ns += time.monotonic_ns() - t_alert
        busy_ns += time.monotonic_ns() - t_busy
        busy_max_ns = max(busy_max_ns, time.monotonic_ns() - t_busy)
    wall_s = (time.monotonic_ns() - t_start) / 1e9
    # transitions still waiting for their group's next flush at the end are sent by the final
    # drain, not by the running pipeline: exclude the batches within one group interval of it
    tail = 0 if (group_wait_ms == 0 and group_interval_ms <= MIN) else -(-group_interval_ms // MIN)
    cutoff = t_start + (n_batches - tail) * period_ns
    ok = sink.flush(60)
    got = rcv.records()
    measured = [s for s in sent if s[3] < cutoff]
    lat, unsent = match_latencies(measured, got)
    withheld = mgr.stats["resolved_before_notify"]
    summary = mgr.summary_lines(T0 + n_batches * MIN)
    mgr.close(T0 + n_batches * MIN)
    rcv.close()
    return {
        "events": n_batches * batch,
        "batches": n_batches,
        "target_rate_eps": rate,
        "achieved_rate_eps": n_batches * batch / wall_s,
        "busy_fraction": busy_ns / 1e9 / wall_s,
        "alert_transitions": len(sent),
        "measured": int(len(lat)),
        "posts": rcv.posts,
        "unsent_transitions": unsent,
        "resolved_before_notify": int(withheld),
        "p50_ms": _pct(lat, 50),
        "p99_ms": _pct(lat, 99),
        "max_ms": _pct(lat, 100),
        "group_wait_ms": group_wait_ms,
        "unmeasured_tail_batches": int(tail),
        "group_interval_ms": group_interval_ms,
        "flushed": ok,
        "batch_ms_mean": busy_ns / 1e6 / n_batches,
        "batch_ms_max": busy_max_ns / 1e6,
        "alert_path_ms_per_batch": alert_ns / 1e6 / n_batches,
        "summary": summary,
    }


def replay_sla_monitor(n_elements=BENCH_SLA_ELEMENTS, days=BENCH_SLA_DAYS, seed=7) -> dict:
    """Synthetic day through SlaMonitor -> alerts -> manager -> webhook, unpaced."""
    from telcoanalytics.sla.sla import SlaMonitor, default_rules
    from telcoanalytics.synth.network import SynthConfig, generate

    day = generate(SynthConfig(n_elements=n_elements, days=days, seed=seed))
    batches = list(day.raw_batches(60_000, with_arrival=True))
    topo = day.topology
    rcv = Receiver()
    tmp = tempfile.mkdtemp(prefix="bench_alerts_sla_")
    sink = WebhookSink(rcv.url, spool_dir=os.path.join(tmp, "spool"))
    mgr = AlertManager(topo, [sink], group_wait_ms=0, clock=lambda: 0)
    mon = SlaMonitor(topo, default_rules())
    sent = []
    n_events = 0
    sla_ns = alert_ns = 0
    t_start = time.monotonic_ns()
    for src, rows, arrival_ms, _ in batches:
        handed = time.monotonic_ns()
        mon.update(src, rows)
        n_events += len(rows)
        if src != "qos":  # one advance per arrival window (qos comes last)
            sla_ns += time.monotonic_ns() - handed
            continue
        wm = int(arrival_ms.max()) - 2 * MIN
        events = mon.advance(wm)
        t1 = time.monotonic_ns()
        sla_ns += t1 - handed
        alerts = alerts_from_sla_events(events, topo)
        for a in alerts:
            key = _iso(a.starts_at_ms) if a.state == "firing" else _iso(a.ends_at_ms)
            sent.append((a.fingerprint, a.state, key, handed))
        mgr.ingest(alerts, wm)
        mgr.tick(wm)
        alert_ns += time.monotonic_ns() - t1
    wall_s = (time.monotonic_ns() - t_start) / 1e9
    sink.flush(60)
    got = rcv.records()
    # transitions resolved by a later event before their group flushed are never sent
    # (Alertmanager semantics); measure those the server received
    lat, unsent = match_latencies(sent, got)
    summary = mgr.summary_lines(wm)
    mgr.close(wm)
    rcv.close()
    return {
        "events": n_events,
        "elements": n_elements,
        "rate_eps": n_events / wall_s,
        "sla_s": sla_ns / 1e9,
        "alert_path_s": alert_ns / 1e9,
        "alert_transitions": len(sent),
        "received": int(len(lat)),
        "unsent_transitions": unsent,
        "p50_ms": _pct(lat, 50),
        "p99_ms": _pct(lat, 99),
        "summary": summary,
    }


# ---- the real path at 1M events/s -----------------------------------------------------------
PACED_ELEMENTS = int(os.environ.get("BENCH_PACED_ELEMENTS", 20_000))
PACED_SECONDS = int(os.environ.get("BENCH_PACED_SECONDS", 60))
PACED_MIN_PER_BATCH = int(os.environ.get("BENCH_PACED_MIN_PER_BATCH", 1))
PACED_LATE = float(os.environ.get("BENCH_PACED_LATE", 0.005))
# healthy release-cause mix: 98.5 % normal / user-side, 0.5 % congestion, 1 % failures
_CAUSES = np.array([16] * 170 + [31] * 8 + [17] * 8 + [18] * 6 + [19] * 4 + [21] + [34] + [27, 38])
_LATENCY_MEDIAN_MS = np.array([200.0, 80.0, 30.0, 10.0])  # 2g, 3g, 4g, 5g cells (healthy)


class CdrHeavyProducer:
    """One minute of event time per call: ``rate`` events, CDR-heavy (about 88 % call records at
    20,000 elements), plus equipment PM (5 metrics per element) and one QoS probe per element every
    5 minutes at the interval start, as collectors deliver them.

    About ``p_late`` of the call records arrive 1-14 minutes late (the synthetic generator's
    default lateness mix), so every batch also drives the late-data re-evaluation; the rest are
    spread over the minute (out of order within it). Incidents: sites in congestion (30 % of
    their attempts released with cause 34) for ``incident_min`` minutes, which fire cell, site and
    SLO alerts and resolve after recovery. Two templates (with and without PM rows) are shifted in
    place each minute, so producing a batch costs ~ a copy, not a generation.
    """

    def __init__(self, topo: Topology, rate: int, seed: int = 42, p_late: float = PACED_LATE):
        rng = self.rng = np.random.default_rng(seed)
        from telcoanalytics.records import empty

        n = topo.n_elements
        self.topo = topo
        eids = topo.ids[topo.element_level]
        self.site_of = topo.element_to("site")
        self.templates = []
        for k, n_cdr in enumerate((rate, rate - 6 * n)):
            c = empty("cdr", n_cdr)
            c["record_id"] = np.arange(n_cdr) + k * rate
            e = rng.integers(0, n, n_cdr)
            c["element_id"] = eids[e]
            off = rng.integers(0, MIN, n_cdr)
            late = rng.random(n_cdr) < p_late
            off[late] -= rng.integers(1, 15, int(late.sum())) * MIN
            c["start_ms"] = off
            cause = _CAUSES[rng.integers(0, len(_CAUSES), n_cdr)].astype(np.int16)
            ans = (cause == 16) | (rng.random(n_cdr) < 0.05)
            c["answer_ms"] = np.where(ans, off + 3000, -1)
            c["end_ms"] = off + 3000 + rng.integers(0, 180_000, n_cdr)
            c["service"] = rng.integers(0, 4, n_cdr)
            c["cause"] = cause
            self.templates.append(
                {
                    "cdr": c,
                    "elem": e,
                    "cause": cause,
                    "answered": np.flatnonzero(ans),
                    "hit": rng.random(n_cdr) < 0.3,
                    "t": 0,
                }
            )
        eq = empty("equip", 5 * n)
        eq["element_id"] = np.repeat(eids, 5)
        eq["metric_id"] = np.tile(np.arange(5, dtype=np.int32), n)
        eq["value"] = np.where(eq["metric_id"] == 3, 0.0, rng.uniform(0, 80, 5 * n))
        q = empty("qos", n)
        q["element_id"] = eids
        tech = topo.attributes["technology"] if "technology" in topo.attributes else np.full(n, 2)
        q["latency_ms"] = _LATENCY_MEDIAN_MS[np.clip(tech, 0, 3)] * rng.lognormal(0.0, 0.3, n)
        q["jitter_ms"] = rng.lognormal(1.0, 0.4, n)
        q["loss_pct"] = rng.uniform(0, 0.1, n)
        self.eq, self.q = eq, q
        self.rate = rate

    def batch(self, minute: int, bad_sites: np.ndarray) -> list:
        """Rows of event minute ``minute`` (plus the late ones) as ``[(source, rows), ...]``;
        ``bad_sites`` holds dense site indices in congestion."""
        k = 1 if minute % 5 == 0 else 0
        tp = self.templates[k]
        c = tp["cdr"]
        t = T0 + minute * MIN
        d = t - tp["t"]
        tp["t"] = t
        c["start_ms"] += d
        c["end_ms"] += d
        ans = tp["answered"]
        c["answer_ms"][ans] += d
        cause = tp["cause"].copy()
        if len(bad_sites):
            cause[np.isin(self.site_of[tp["elem"]], bad_sites) & tp["hit"]] = 34
        c["cause"] = cause
        out = [("cdr", c)]
        if k:
            self.eq["ts_ms"] = t
            self.q["ts_ms"] = t
            out += [("equip", self.eq), ("qos", self.q)]
        return out


def replay_sla_paced(
    n_elements=PACED_ELEMENTS,
    seconds=PACED_SECONDS,
    rate=BENCH_RATE,
    minutes_per_batch=PACED_MIN_PER_BATCH,
    warm_minutes=30,
    incident_every=8,
    incident_min=15,
    seed=42,
) -> dict:
    """The real alert path under a sustained, paced load of ``rate`` events/s.

    Every second (wall clock) one micro-batch "arrives" holding ``minutes_per_batch`` minutes of
    event time (``rate`` events in all): ``SlaMonitor.update`` per source, ``advance`` to the end
    of its event time (minute ticks, late-data re-evaluation), ``alerts_from_sla_events`` ->
    ``AlertManager.ingest`` / ``tick`` -> ``WebhookSink`` (durable spool, background thread) ->
    HTTP POST to a local Alertmanager stand-in in its own process. A transition's latency is its
    receipt at the server minus the scheduled arrival of the batch that produced it, so falling
    behind (queueing) counts. The default rules of :func:`telcoanalytics.sla.sla.default_rules`
    (cell/site call KPIs, availability, packet loss, latency p95, a site SLO with burn rates).
    ``warm_minutes`` of history are fed unpaced first (windows fill; not measured).
    """
    from telcoanalytics.sla.sla import SlaMonitor, default_rules

    base = bench_topology(n_sites=max(1, n_elements // 40), cells_per_site=40, n_regions=10)
    el = base.ids["element"]
    topo = Topology.from_columns(
        el,
        {"region": base.ids["region"][base.element_to("region")], "site": base.ids["site"][base.element_to("site")]},
        {"technology": (np.arange(len(el)) % 4).astype(np.int16)},
    )  # 5g/4g/3g/2g cells
    for lv in topo.levels:
        topo.element_to(lv)
    per_min = int(rate // minutes_per_batch)
    t0 = time.perf_counter()
    prod = CdrHeavyProducer(topo, per_min, seed)
    t_gen = time.perf_counter() - t0
    mon = SlaMonitor(topo, default_rules(topo))
    wt = bench_topology(3, 4, 1)
    warm = SlaMonitor(wt, default_rules(wt))  # load every kernel once
    for m in range(3):
        warm.step("cdr", CdrHeavyProducer(warm.topology, 500, 1).batch(m, np.zeros(0))[0][1], T0 + (m + 1) * MIN)
    rcv = Receiver()
    tmp = tempfile.mkdtemp(prefix="bench_alerts_paced_")
    sink = WebhookSink(rcv.url, spool_dir=os.path.join(tmp, "spool"), timeout_s=5)
    mgr = AlertManager(
        topo,
        [sink],
        group_wait_ms=0,
        group_interval_ms=MIN * minutes_per_batch,
        repeat_interval_ms=4 * 3_600_000,
        clock=lambda: 0,
    )
    n_sites = topo.n_nodes("site")
    minute = 0
    t0 = time.perf_counter()
    # history fills the windows without lifecycles (the first minutes hold only early late rows);
    # the last warm-up tick is evaluated (it builds the running aggregates), unmeasured
    for _ in range(warm_minutes):
        for src, rows in prod.batch(minute, np.zeros(0, np.int64)):
            mon.update(src, rows)
        minute += 1
        if minute == warm_minutes - 1:
            mon.skip_to(T0 + minute * MIN)
    mgr.ingest(alerts_from_sla_events(mon.advance(T0 + minute * MIN), topo), T0 + minute * MIN)
    mgr.tick(T0 + minute * MIN)
    t_warm = time.perf_counter() - t0
    sent = []
    busy, busy_cpu, upd, adv, produce, behind = [], [], [], [], [], []
    n_events = n_late = 0
    period_ns = 1_000_000_000
    t_start = time.monotonic_ns() + 200_000_000
    cpu0 = time.process_time()
    for i in range(seconds):
        # the producer prepares the next batch (outside the pipeline's budget, as another process would)
        p0 = time.perf_counter()
        minutes = []
        for j in range(minutes_per_batch):
            m = minute + j
            inc = [k for k in range(0, m + 1, incident_every) if k <= m - warm_minutes < k + incident_min]
            bad = np.array([(k // incident_every * 37) % n_sites for k in inc], np.int64)  # dense site indices
            minutes.append(prod.batch(m, bad))
        produce.append(time.perf_counter() - p0)
        arrival = t_start + i * period_ns
        while True:
            dwait = arrival - time.monotonic_ns()
            if dwait <= 0:
                break
            time.sleep(min(dwait / 1e9, 0.005))
        behind.append((time.monotonic_ns() - arrival) / 1e6)
        w0, c0 = time.monotonic_ns(), time.process_time()
        for parts in minutes:
            for src, rows in parts:
                r = mon.update(src, rows)
                n_events += len(rows)
                n_late += r.get("late", 0)
        minute += minutes_per_batch
        w1 = time.monotonic_ns()
        wm = T0 + minute * MIN
        events = mon.advance(wm)
        w2 = time.monotonic_ns()
        alerts = alerts_from_sla_events(events, topo)
        for a in alerts:
            key = _iso(a.starts_at_ms) if a.state == "firing" else _iso(a.ends_at_ms)
            sent.append((a.fingerprint, a.state, key, arrival))
        mgr.ingest(alerts, wm)
        mgr.tick(wm)
        w3 = time.monotonic_ns()
        busy.append((w3 - w0) / 1e9)
        busy_cpu.append(time.process_time() - c0)
        upd.append((w1 - w0) / 1e9)
        adv.append((w2 - w1) / 1e9)
    wall_s = (time.monotonic_ns() - t_start) / 1e9
    cpu_s = time.process_time() - cpu0
    ok = sink.flush(60)
    got = rcv.records()
    lat, unsent = match_latencies(sent, got)
    summary = mgr.summary_lines(T0 + minute * MIN)
    mgr.close(T0 + minute * MIN)
    rcv.close()
    b = np.asarray(busy)
    return {
        "elements": topo.n_elements,
        "rules": len(mon.rules),
        "lifecycles": len(mon.evals),
        "target_rate_eps": rate,
        "events": n_events,
        "late_rows": int(n_late),
        "achieved_rate_eps": n_events / wall_s,
        "batches": seconds,
        "event_minutes_per_batch": minutes_per_batch,
        "batch_s_p50": float(np.median(b)),
        "batch_s_p99": float(np.percentile(b, 99)),
        "batch_s_max": float(b.max()),
        "batch_cpu_s_p50": float(np.median(busy_cpu)),
        "batch_cpu_s_max": float(np.max(busy_cpu)),
        "process_cpu_s_per_batch": cpu_s / seconds,
        "update_s_p50": float(np.median(upd)),
        "advance_s_p50": float(np.median(adv)),
        "advance_s_max": float(np.max(adv)),
        "kept_up": bool(b.max() < 1.0),
        "started_late_ms_max": float(max(behind)),
        "alert_transitions": len(sent),
        "received": int(len(lat)),
        "unsent_transitions": unsent,
        "p50_ms": _pct(lat, 50),
        "p99_ms": _pct(lat, 99),
        "max_ms": _pct(lat, 100),
        "flushed": ok,
        "producer_s_p50": float(np.median(produce)),
        "generator_setup_s": t_gen,
        "warm_s": t_warm,
        "store_memory_mb": mon.store.memory_bytes() / 2**20,
        "summary": summary,
    }


# ---- pytest-benchmark entry points ---------------------------------------------------------
def _record(benchmark, res: dict):
    for k, v in res.items():
        if k != "summary":
            benchmark.extra_info[k] = v


CONFIGS = {
    "bare": {"group_wait_ms": 0, "group_interval_ms": MIN},
    "alertmanager_defaults": {"group_wait_ms": 30_000, "group_interval_ms": 5 * MIN},
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_alert_latency_replay(benchmark, config):
    res = benchmark.pedantic(replay_latency, kwargs=CONFIGS[config], rounds=1, iterations=1)
    _record(benchmark, res)
    if res["batches"] <= res["unmeasured_tail_batches"]:
        pytest.skip(
            f"{res['batches']} batches leave nothing to measure before the last "
            f"{res['unmeasured_tail_batches']} (one group interval); raise BENCH_N"
        )
    assert res["measured"] > 0


def test_alert_latency_sla_monitor(benchmark):
    import telcoanalytics.sla.sla  # noqa: F401
    import telcoanalytics.synth.network  # noqa: F401

    res = benchmark.pedantic(replay_sla_monitor, rounds=1, iterations=1)
    _record(benchmark, res)


def test_alert_latency_sla_paced(benchmark):
    """The real path (SlaMonitor -> AlertManager -> webhook) at 1M events/s, 1-second batches."""
    res = benchmark.pedantic(replay_sla_paced, rounds=1, iterations=1)
    _record(benchmark, res)
    assert res["events"] == res["batches"] * int(BENCH_RATE) and res["flushed"]
    assert PACED_SECONDS < 15 or res["received"] > 0  # incidents fire from ~6 minutes in


def _alerts_for_throughput(n=10_000):
    topo = bench_topology()
    for lv in topo.levels:  # warm the topology's cached maps (and their kernels)
        topo.element_to(lv)
    eids = topo.ids["element"][:n]
    from telcoanalytics.anomaly.detector import ANOMALY_DTYPE

    rows = np.zeros(n, dtype=ANOMALY_DTYPE)
    rows["element_id"] = eids
    rows["metric"] = "prb_util_pct"
    rows["classification"] = "crowd"
    rows["start_ms"] = T0
    rows["end_ms"] = -1
    return topo, rows


def test_convert_anomalies_throughput(benchmark):
    import telcoanalytics.anomaly.detector  # noqa: F401

    topo, rows = _alerts_for_throughput()
    benchmark(alerts_from_anomalies, rows, topo)
    benchmark.extra_info["alerts_per_s"] = len(rows) / benchmark.stats.stats.mean


def test_manager_ingest_tick_throughput(benchmark):
    import telcoanalytics.anomaly.detector  # noqa: F401

    topo, rows = _alerts_for_throughput()
    alerts = alerts_from_anomalies(rows, topo)

    def run():
        mgr = AlertManager(topo, [], group_wait_ms=0)
        mgr.ingest(alerts, T0)
        mgr.ingest(alerts, T0 + 1)  # every alert re-sent once (dedup path)
        return mgr.tick(T0 + 1)

    notes = benchmark(run)
    assert sum(len(n.alerts) for n in notes) == len(alerts)
    benchmark.extra_info["alerts_per_s"] = 2 * len(alerts) / benchmark.stats.stats.mean
    benchmark.extra_info["notifications"] = len(notes)


@pytest.mark.parametrize("grouping", ["site_alertname", "incidents"])
def test_manager_grouping_throughput(benchmark, grouping):
    """The same alert stream grouped by (region, site, alertname) and by incident: the cost of
    correlating into incidents. 10,000 faults on the first 10,000 elements, each re-sent once and
    then resolved, ticked; incidents closed at the end."""
    import telcoanalytics.anomaly.detector  # noqa: F401
    from telcoanalytics.alerts.incidents import IncidentBook

    topo, rows = _alerts_for_throughput()
    rows["classification"] = "fault"
    firing = alerts_from_anomalies(rows, topo)
    rows["end_ms"] = T0 + 600_000
    resolved = alerts_from_anomalies(rows, topo)

    def run():
        book = IncidentBook(topo.levels) if grouping == "incidents" else None
        mgr = AlertManager(topo, [], group_wait_ms=0, incidents=book)
        mgr.ingest(firing, T0)
        mgr.ingest(firing, T0 + 60_000)
        n = len(mgr.tick(T0 + 60_000))
        mgr.ingest(resolved, T0 + 600_000)
        n += len(mgr.tick(T0 + 900_000))
        mgr.close(T0 + 4 * 3_600_000)
        return n

    benchmark(run)
    benchmark.extra_info["alerts_per_s"] = 3 * len(firing) / benchmark.stats.stats.mean


if __name__ == "__main__":  # pragma: no cover
    print(datetime.utcnow().isoformat(), "BENCH_N", BENCH_N, "rate", BENCH_RATE, "batch", BENCH_BATCH)
    if "--paced" in sys.argv:
        r = replay_sla_paced()
        print(json.dumps({k: v for k, v in r.items() if k != "summary"}, indent=1))
        print("\n".join(r["summary"]))
        sys.exit(0)
    for name, cfg in CONFIGS.items():
        r = replay_latency(**cfg)
        print(name)
        print(json.dumps({k: v for k, v in r.items() if k != "summary"}, indent=1))
        print("\n".join(r["summary"]))
    if "--sla" in sys.argv:
        r = replay_sla_monitor()
        print(json.dumps({k: v for k, v in r.items() if k != "summary"}, indent=1))
        print("\n".join(r["summary"]))
