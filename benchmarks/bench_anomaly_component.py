"""Benchmark: the replay's anomaly component alone (event building, detector, classification,
silence checks, paging policy, episode rows streamed to ``anomalies.jsonl``) on the calls a replay
makes.

A replay of the synthetic day (``BENCH_ELEMENTS`` elements, default 2,000, seed 7, one day of
history) runs once with the anomaly component only, recording every call the pipeline makes to it
(routed equipment and QoS batches, the per-minute advances, the topology change) and its state
after learning the history; the timed rounds replay those calls on a fresh component restored
from that state and streaming its findings to a file as in the replay, so only the component's
own work is timed. The events per second count each
equipment row once and each QoS row twice (latency and loss).

Run: ``.venv/bin/python -m pytest benchmarks/bench_anomaly_component.py --benchmark-only -q -s
--benchmark-timer=time.process_time`` (CPU time: on a shared machine wall time mostly measures the
other tenants). Figures go to the benchmark output and the notes, not here. For an A/B against
other code, run it from outside the repository with ``PYTHONPATH`` pointing at that code (the line
printed names the package that ran).
"""

import os
import time

import numpy as np
import pytest

from telcoanalytics.pipeline import components as C
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.pipeline.replay import run_replay
from telcoanalytics.pipeline.run import OutputLog

N_ELEMENTS = int(os.environ.get("BENCH_ELEMENTS", 2_000))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(learned state, topology, calls) of one replay with the anomaly component only."""
    calls, rec = [], {}
    cls = C.AnomalyComponent
    orig = cls.update, cls.advance, cls.topology_changed, cls.learn

    def update(self, batch):
        if batch.source in ("equip", "qos"):
            calls.append(
                ("u", RoutedBatch(batch.source, batch.rows.copy(), batch.element_index.copy(), batch.partition))
            )
        return orig[0](self, batch)

    def advance(self, wm):
        calls.append(("a", int(wm)))
        return orig[1](self, wm)

    def topology_changed(self, topology, changes):
        calls.append(("t", topology))
        return orig[2](self, topology, changes)

    def learn(self, day, until_ms):
        orig[3](self, day, until_ms)
        rec["state"], rec["topology"] = self.to_state(), self.topology

    cls.update, cls.advance, cls.topology_changed, cls.learn = update, advance, topology_changed, learn
    try:
        out = tmp_path_factory.mktemp("anomaly_component")
        settings = {"elements": N_ELEMENTS, "components": ["anomaly"], "checkpoints": False, "out": str(out)}
        run_replay(settings, say=lambda m: None, progress=None)
    finally:
        cls.update, cls.advance, cls.topology_changed, cls.learn = orig
    return rec["state"], rec["topology"], calls


def _replay(comp, calls, seconds):
    pages = 0
    for kind, arg in calls:
        t0 = time.process_time()
        if kind == "u":
            comp.update(arg)
        elif kind == "a":
            pages += len(comp.advance(arg))
        else:
            comp.topology_changed(arg, [])
        seconds[kind] += time.process_time() - t0
    return pages


def test_bench_anomaly_component(benchmark, recorded, tmp_path_factory):
    state, topology, calls = recorded
    n_events = sum(len(b.rows) * (1 if b.source == "equip" else 2) for k, b in calls if k == "u")
    _replay(C.AnomalyComponent.from_state(state, topology), calls[:200], {"u": 0, "a": 0, "t": 0})  # JIT
    seconds = {"u": 0.0, "a": 0.0, "t": 0.0}
    log_dir = tmp_path_factory.mktemp("anomaly_log")

    def fresh():  # findings streamed to anomalies.jsonl, as the replay's component does
        comp = C.AnomalyComponent.from_state(state, topology)
        comp.attach_log(OutputLog(log_dir / "anomalies.jsonl"))
        return (comp, calls, seconds), {}

    benchmark.pedantic(_replay, setup=fresh, rounds=3, iterations=1)
    st = benchmark.stats.stats
    benchmark.extra_info.update(events=n_events, events_per_s=n_events / st.median)
    r = st.rounds
    print(
        f"\nanomaly component, {N_ELEMENTS:,} elements: {n_events:,} events, median {st.median:.2f} s "
        f"({n_events / st.median / 1e6:.2f} M events/s; best {st.min:.2f} s of {r}); per round: updates "
        f"{seconds['u'] / r:.2f} s, advances {seconds['a'] / r:.2f} s; load {os.getloadavg()[0]:.1f}; code {C.__file__}"
    )
    assert np.isfinite(st.median)
