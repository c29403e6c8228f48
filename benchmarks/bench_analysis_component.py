"""Benchmark: the replay's analysis component alone (series, flows, localisation and complaint
cubes) on the calls a replay makes, and its end-of-run report.

A replay of the synthetic day (``BENCH_ELEMENTS`` elements, default 2,000, seed 7, one day of
history) runs once with the analysis component only, recording every call the pipeline makes to it
(routed batches, advances, the topology change, the finish) and its state after learning the
history; the timed rounds replay those calls on a fresh component restored from that state, then
build the report's analysis lines, so only the component's own work is timed (the first calls
run once outside the timing: kernels load from the JIT cache once per process).

Run: ``.venv/bin/python -m pytest benchmarks/bench_analysis_component.py --benchmark-only -q -s
--benchmark-timer=time.process_time`` (CPU time: on a shared machine wall time mostly measures the
other tenants). For an A/B against other code, run it from outside the repository with
``PYTHONPATH`` pointing at that code (the line printed names the package that ran). Figures go to
the benchmark output and the notes, not here.
"""

import os
import time

import numpy as np
import pytest

from telcoanalytics.analysis import component as A
from telcoanalytics.analysis.report import analysis_report_lines
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.pipeline.replay import run_replay

N_ELEMENTS = int(os.environ.get("BENCH_ELEMENTS", 2_000))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(learned state, topology, capacities, calls) of one replay with the analysis component only."""
    calls, rec = [], {}
    cls = A.AnalysisComponent
    orig = cls.update, cls.advance, cls.topology_changed, cls.learn, cls.finish

    def update(self, batch):
        rows, idx = batch.rows.copy(), batch.element_index.copy()
        calls.append(("u", RoutedBatch(batch.source, rows, idx, batch.partition.copy())))
        return orig[0](self, batch)

    def advance(self, wm):
        calls.append(("a", int(wm)))
        return orig[1](self, wm)

    def topology_changed(self, topology, changes):
        calls.append(("t", (topology, changes)))
        return orig[2](self, topology, changes)

    def learn(self, day, until_ms):
        orig[3](self, day, until_ms)
        rec["state"], rec["topology"], rec["capacity"] = self.to_state(), self.topology, self.capacity_mbps

    def finish(self, wm):
        calls.append(("f", int(wm)))
        return orig[4](self, wm)

    cls.update, cls.advance, cls.topology_changed, cls.learn, cls.finish = (
        update,
        advance,
        topology_changed,
        learn,
        finish,
    )
    try:
        out = tmp_path_factory.mktemp("analysis_component")
        settings = {"elements": N_ELEMENTS, "components": ["analysis"], "checkpoints": False, "out": str(out)}
        run_replay(settings, say=lambda m: None, progress=None)
    finally:
        cls.update, cls.advance, cls.topology_changed, cls.learn, cls.finish = orig
    return rec["state"], rec["topology"], rec["capacity"], calls


def _fresh(state, topology, capacity):
    comp = A.AnalysisComponent.from_state(state, topology)
    comp.capacity_mbps = capacity
    return comp


def _replay(comp, calls, seconds):
    t0 = time.process_time()
    for kind, arg in calls:
        if kind == "u":
            comp.update(arg)
        elif kind == "a":
            comp.advance(arg)
        elif kind == "t":
            comp.topology_changed(*arg)
        else:
            comp.finish(arg)
    t1 = time.process_time()
    lines = analysis_report_lines(None, comp)
    seconds["stream"] += t1 - t0
    seconds["report"] += time.process_time() - t1
    return lines


def test_bench_analysis_component(benchmark, recorded):
    state, topology, capacity, calls = recorded
    n_rows = sum(len(arg.rows) for kind, arg in calls if kind == "u")
    _replay(_fresh(state, topology, capacity), calls[:400], {"stream": 0.0, "report": 0.0})  # JIT cache loads
    seconds = {"stream": 0.0, "report": 0.0}
    lines = benchmark.pedantic(
        _replay,
        setup=lambda: ((_fresh(state, topology, capacity), calls, seconds), {}),
        rounds=3,
        iterations=1,
    )
    st = benchmark.stats.stats
    r = st.rounds
    benchmark.extra_info.update(rows=n_rows, stream_s=seconds["stream"] / r, report_s=seconds["report"] / r)
    print(
        f"\nanalysis component, {N_ELEMENTS:,} elements: {n_rows:,} rows, median {st.median:.2f} s (best "
        f"{st.min:.2f} s of {r}); per round: stream {seconds['stream'] / r:.2f} s, report "
        f"{seconds['report'] / r:.2f} s; load {os.getloadavg()[0]:.1f}; code {A.__file__}"
    )
    assert lines[0].startswith("== analysis") and np.isfinite(st.median)
