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
    When ``telcoanalytics.sla`` and ``telcoanalytics.synth`` are present: a synthetic day
    (``BENCH_SLA_ELEMENTS`` elements, default 2,000, ``BENCH_SLA_DAYS`` default 0.5 day) replayed in arrival order through
    ``SlaMonitor.update`` / ``advance`` -> alerts -> manager -> webhook, unpaced (as fast as the
    monitor goes); reports events/s and the latency from a batch's hand-over to its alerts'
    receipt.

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

from telcoanalytics.alerts import AlertManager, alerts_from_anomalies, alerts_from_sla_events, fingerprint_of
from telcoanalytics.sinks import WebhookSink
from telcoanalytics.topology import Topology

BENCH_N = int(os.environ.get("BENCH_N", 10_000_000))
BENCH_RATE = float(os.environ.get("BENCH_RATE", 1_000_000))
BENCH_BATCH = int(os.environ.get("BENCH_BATCH", 100_000))
BENCH_SLA_ELEMENTS = int(os.environ.get("BENCH_SLA_ELEMENTS", 2_000))
BENCH_SLA_DAYS = float(os.environ.get("BENCH_SLA_DAYS", 0.5))
T0 = 1_772_409_600_000          # 2026-03-02 00:00 UTC
MIN = 60_000

try:  # the real event class when the SLA module is there, else the brief's field list
    from telcoanalytics.sla import SlaEvent
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
    from telcoanalytics.alerts import rfc3339_ms
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
            out.append(SlaEvent("cell_prb_congestion", "prb_util_pct", "major", "firing", "element",
                                int(self.eids[i]), "", t_ms, t_ms, -1, float(peak[i]), self.thr,
                                float(peak[i]), "PRB utilisation over 90%"))
        for i in gone.tolist():
            out.append(SlaEvent("cell_prb_congestion", "prb_util_pct", "major", "resolved", "element",
                                int(self.eids[i]), "", t_ms, int(self.start_ms[i]), t_ms, 50.0, self.thr,
                                float(self.worst[i]), "PRB utilisation back under 90%"))
            self.worst[i] = 0.0
        return out


def replay_latency(n_events=BENCH_N, rate=BENCH_RATE, batch=BENCH_BATCH, group_wait_ms=0,
                   group_interval_ms=MIN, seed=42, spool=True) -> dict:
    """Paced replay through the alert path; returns latency percentiles and rates."""
    rng = np.random.default_rng(seed)
    topo = bench_topology()
    for lv in topo.levels:                  # warm the topology's cached maps (and their kernels)
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
    mgr = AlertManager(topo, [sink], group_wait_ms=group_wait_ms, group_interval_ms=group_interval_ms,
                       repeat_interval_ms=4 * 3_600_000, clock=lambda: 0)
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
    return {"events": n_batches * batch, "batches": n_batches, "target_rate_eps": rate,
            "achieved_rate_eps": n_batches * batch / wall_s, "busy_fraction": busy_ns / 1e9 / wall_s,
            "alert_transitions": len(sent), "measured": int(len(lat)), "posts": rcv.posts,
            "unsent_transitions": unsent, "resolved_before_notify": int(withheld),
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "max_ms": _pct(lat, 100),
            "group_wait_ms": group_wait_ms,
            "group_interval_ms": group_interval_ms, "flushed": ok,
            "batch_ms_mean": busy_ns / 1e6 / n_batches, "batch_ms_max": busy_max_ns / 1e6,
            "alert_path_ms_per_batch": alert_ns / 1e6 / n_batches,
            "summary": summary}


def replay_sla_monitor(n_elements=BENCH_SLA_ELEMENTS, days=BENCH_SLA_DAYS, seed=7) -> dict:
    """Synthetic day through SlaMonitor -> alerts -> manager -> webhook, unpaced."""
    from telcoanalytics.sla import SlaMonitor, default_rules
    from telcoanalytics.synth import SynthConfig, generate
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
        if src != "qos":                       # one advance per arrival window (qos comes last)
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
    return {"events": n_events, "elements": n_elements, "rate_eps": n_events / wall_s,
            "sla_s": sla_ns / 1e9, "alert_path_s": alert_ns / 1e9, "alert_transitions": len(sent),
            "received": int(len(lat)), "unsent_transitions": unsent,
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "summary": summary}


# ---- pytest-benchmark entry points ---------------------------------------------------------
def _record(benchmark, res: dict):
    for k, v in res.items():
        if k != "summary":
            benchmark.extra_info[k] = v


CONFIGS = {"bare": {"group_wait_ms": 0, "group_interval_ms": MIN},
           "alertmanager_defaults": {"group_wait_ms": 30_000, "group_interval_ms": 5 * MIN}}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_alert_latency_replay(benchmark, config):
    res = benchmark.pedantic(replay_latency, kwargs=CONFIGS[config], rounds=1, iterations=1)
    _record(benchmark, res)
    assert res["measured"] > 0


def test_alert_latency_sla_monitor(benchmark):
    pytest.importorskip("telcoanalytics.sla")
    pytest.importorskip("telcoanalytics.synth")
    res = benchmark.pedantic(replay_sla_monitor, rounds=1, iterations=1)
    _record(benchmark, res)


def _alerts_for_throughput(n=10_000):
    topo = bench_topology()
    for lv in topo.levels:                  # warm the topology's cached maps (and their kernels)
        topo.element_to(lv)
    eids = topo.ids["element"][:n]
    from telcoanalytics.anomaly import ANOMALY_DTYPE
    rows = np.zeros(n, dtype=ANOMALY_DTYPE)
    rows["element_id"] = eids
    rows["metric"] = "prb_util_pct"
    rows["classification"] = "crowd"
    rows["start_ms"] = T0
    rows["end_ms"] = -1
    return topo, rows


def test_convert_anomalies_throughput(benchmark):
    pytest.importorskip("telcoanalytics.anomaly")
    topo, rows = _alerts_for_throughput()
    benchmark(alerts_from_anomalies, rows, topo)
    benchmark.extra_info["alerts_per_s"] = len(rows) / benchmark.stats.stats.mean


def test_manager_ingest_tick_throughput(benchmark):
    pytest.importorskip("telcoanalytics.anomaly")
    topo, rows = _alerts_for_throughput()
    alerts = alerts_from_anomalies(rows, topo)

    def run():
        mgr = AlertManager(topo, [], group_wait_ms=0)
        mgr.ingest(alerts, T0)
        mgr.ingest(alerts, T0 + 1)            # every alert re-sent once (dedup path)
        return mgr.tick(T0 + 1)
    notes = benchmark(run)
    assert sum(len(n.alerts) for n in notes) == len(alerts)
    benchmark.extra_info["alerts_per_s"] = 2 * len(alerts) / benchmark.stats.stats.mean
    benchmark.extra_info["notifications"] = len(notes)


if __name__ == "__main__":  # pragma: no cover
    print(datetime.utcnow().isoformat(), "BENCH_N", BENCH_N, "rate", BENCH_RATE, "batch", BENCH_BATCH)
    for name, cfg in CONFIGS.items():
        r = replay_latency(**cfg)
        print(name)
        print(json.dumps({k: v for k, v in r.items() if k != "summary"}, indent=1))
        print("\n".join(r["summary"]))
    if "--sla" in sys.argv:
        r = replay_sla_monitor()
        print(json.dumps({k: v for k, v in r.items() if k != "summary"}, indent=1))
        print("\n".join(r["summary"]))
