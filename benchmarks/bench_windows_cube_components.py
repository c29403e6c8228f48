"""Benchmark: the replay's windows and cube components alone, on the calls a replay makes.

A replay of the synthetic day (``BENCH_ELEMENTS`` elements, default 2,000, seed 7) runs once with
these two components only, recording every call the pipeline makes to them (routed batches,
advances, the topology change, the finish); the timed rounds replay those calls on fresh
components, so only the components' own work is timed (the first calls run once outside the
timing: kernels load from the JIT cache once per process).

Run: ``.venv/bin/python -m pytest benchmarks/bench_windows_cube_components.py --benchmark-only -q -s
--benchmark-timer=time.process_time`` (CPU time: on a shared machine wall time mostly measures the
other tenants). For an A/B against other code, run it from outside the repository with
``PYTHONPATH`` pointing at that code (the line printed names the package that ran). Figures go to
the benchmark output and the notes, not here.
"""

import os

import numpy as np
import pytest

from telcoanalytics.pipeline import components as C
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.pipeline.replay import run_replay

N_ELEMENTS = int(os.environ.get("BENCH_ELEMENTS", 2_000))
CLASSES = {"windows": C.WindowsComponent, "cube": C.CubeComponent}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(topology at the start, {name: calls}) of one replay with the windows and cube components."""
    calls = {name: [] for name in CLASSES}
    rec = {}
    saved = {}
    for name, cls in CLASSES.items():
        orig = cls.update, cls.advance, cls.topology_changed, cls.finish
        saved[name] = orig
        log = calls[name]

        def update(self, batch, orig=orig, log=log):
            rec.setdefault("topology", self.topology)
            log.append(("u", RoutedBatch(batch.source, batch.rows.copy(), batch.element_index.copy(), batch.partition)))
            return orig[0](self, batch)

        def advance(self, wm, orig=orig, log=log):
            log.append(("a", int(wm)))
            return orig[1](self, wm)

        def topology_changed(self, topology, changes, orig=orig, log=log):
            log.append(("t", (topology, changes)))
            return orig[2](self, topology, changes)

        def finish(self, wm, orig=orig, log=log):
            log.append(("f", int(wm)))
            return orig[3](self, wm)

        cls.update, cls.advance, cls.topology_changed, cls.finish = update, advance, topology_changed, finish
    try:
        out = tmp_path_factory.mktemp("windows_cube_components")
        settings = {"elements": N_ELEMENTS, "components": list(CLASSES), "checkpoints": False, "out": str(out)}
        run_replay(settings, say=lambda m: None, progress=None)
    finally:
        for name, cls in CLASSES.items():
            cls.update, cls.advance, cls.topology_changed, cls.finish = saved[name]
    return rec["topology"], calls


def _replay(comp, calls):
    for kind, arg in calls:
        if kind == "u":
            comp.update(arg)
        elif kind == "a":
            comp.advance(arg)
        elif kind == "t":
            comp.topology_changed(*arg)
        else:
            comp.finish(arg)
    return comp


@pytest.mark.parametrize("name", list(CLASSES))
def test_bench_component(benchmark, recorded, name):
    topology, calls = recorded
    calls = calls[name]
    n_rows = sum(len(arg.rows) for kind, arg in calls if kind == "u")
    _replay(CLASSES[name](topology), calls[:400])  # JIT cache loads
    comp = benchmark.pedantic(_replay, setup=lambda: ((CLASSES[name](topology), calls), {}), rounds=3, iterations=1)
    st = benchmark.stats.stats
    benchmark.extra_info.update(rows=n_rows)
    print(
        f"\n{name} component, {N_ELEMENTS:,} elements: {n_rows:,} rows in {len(calls):,} calls, median "
        f"{st.median:.3f} s (best {st.min:.3f} s of {st.rounds}); load {os.getloadavg()[0]:.1f}; code {C.__file__}"
    )
    assert comp.report_lines()[0].startswith("==") and np.isfinite(st.median)
