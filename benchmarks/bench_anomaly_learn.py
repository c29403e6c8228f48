"""Benchmark: the replay's anomaly component learning from one day of history
(``AnomalyComponent.learn``, what the replay's "anomaly: learned baselines" line times).

The synthetic day of a replay (``BENCH_ELEMENTS`` elements, default 2,000, seed 7, one day of
history then one replayed) is generated once; each round learns the history into a fresh
component. The events per second count each equipment row once and each QoS row twice (latency
and loss), as the detector sees them.

Run: ``.venv/bin/python -m pytest benchmarks/bench_anomaly_learn.py --benchmark-only -q -s
--benchmark-timer=time.process_time`` (CPU time: on a shared machine wall time mostly measures the
other tenants). For an A/B against other code, run it from outside the repository with
``PYTHONPATH`` pointing at that code (the line printed names the package that ran). Figures go to
the benchmark output and the notes, not here.
"""

import os

import numpy as np
import pytest

from telcoanalytics.pipeline import components as C
from telcoanalytics.pipeline.replay import DEFAULTS, SyntheticSource
from telcoanalytics.synth.stream import ORIGIN_CLEAN

N_ELEMENTS = int(os.environ.get("BENCH_ELEMENTS", 2_000))


@pytest.fixture(scope="module")
def source():
    return SyntheticSource({**DEFAULTS, "elements": N_ELEMENTS, "seed": 7, "checkpoints": False}, say=lambda m: None)


def test_bench_anomaly_learn(benchmark, source):
    day, until = source.day, source.replay_from
    C.AnomalyComponent(source.topology).learn(day, until)  # compile / load the kernels

    def fresh():
        return (day, until), {}

    comps = []

    def learn(day, until):
        comp = C.AnomalyComponent(source.topology)
        comp.learn(day, until)
        comps.append(comp)

    benchmark.pedantic(learn, setup=fresh, rounds=3, iterations=1)
    n_events = 0
    for k, s in ((1, "equip"), (2, "qos")):  # the clean rows that arrived before the replay
        _rows, arrival, origin = day.raw(s)
        n_events += k * int(np.count_nonzero((origin == ORIGIN_CLEAN) & (arrival < until)))
    st = benchmark.stats.stats
    benchmark.extra_info.update(events=n_events, events_per_s=n_events / st.median)
    print(
        f"\nanomaly learning, {N_ELEMENTS:,} elements: {n_events:,} history events, median {st.median:.2f} s "
        f"({n_events / st.median / 1e6:.2f} M events/s; best {st.min:.2f} s of {st.rounds}); "
        f"load {os.getloadavg()[0]:.1f}; code {C.__file__}"
    )
    assert np.isfinite(st.median) and comps[-1].net.detector.n_obs.max() > 0
