"""End-to-end replay throughput and cold start.

Run: ``.venv/bin/python -m pytest benchmarks/bench_pipeline.py --benchmark-only -q``.
``BENCH_ELEMENTS`` sets the synthetic network size (default 10,000 elements, one day: ~20M
events). Reports rows/s of the whole pipeline (ingest + validation + routing + every replay
component) on the arrival-ordered stream, and the cold-start time of a fresh process with an
empty Numba cache (compilation of every kernel the replay touches).
"""

import os
import subprocess
import sys
import tempfile
import time

import pytest

from telcoanalytics.pipeline.components import build_alert_manager, build_components
from telcoanalytics.pipeline.pipeline import Pipeline
from telcoanalytics.synth.network import generate

N_ELEMENTS = int(os.environ.get("BENCH_ELEMENTS", 10_000))


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=N_ELEMENTS, days=1.0, seed=7)


def _replay(day, components: bool, out_dir):
    comps = build_components(day.topology) if components else {}
    mgr = build_alert_manager(day.topology, out_dir) if components else None
    p = Pipeline(day.topology, components=comps, alerts=mgr)
    n = p.feed(day.raw_batches())
    p.advance(p.max_event_ms + 1)
    assert p.conserved()
    return n


@pytest.mark.parametrize("components", [False, True], ids=["ingest+route", "all-components"])
def test_replay_rate(benchmark, day, components, tmp_path):
    _replay(generate(n_elements=200, days=0.05, seed=1), components, tmp_path)  # warm the JIT
    n = benchmark.pedantic(_replay, args=(day, components, tmp_path), rounds=1, iterations=1)
    benchmark.extra_info["rows"] = n
    benchmark.extra_info["rows_per_s"] = n / benchmark.stats.stats.median


def test_cold_start(benchmark, tmp_path):
    """A fresh process with an empty Numba cache: replay of a tiny network (compile time dominates)."""

    def run():
        env = dict(os.environ, NUMBA_CACHE_DIR=tempfile.mkdtemp(dir=tmp_path))
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "telcoanalytics",
                "replay",
                "--elements",
                "200",
                "--days",
                "0.05",
                "--out",
                str(tmp_path / "o"),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - t0

    s = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["cold_start_s"] = s


@pytest.mark.parametrize("path", ["arrival_batches", "raw_batches"])
def test_batch_production(benchmark, day, path):
    """The replay's batch source alone: the day's arrival-ordered batches from mid-day on, as the
    replay produces them (``arrival_batches``, the batches before the start skipped unbuilt)
    against ``raw_batches`` filtered by first arrival (the replay's earlier source)."""
    from telcoanalytics.synth.stream import arrival_batches

    from_ms = day.start_ms + (day.end_ms - day.start_ms) // 2

    def produce():
        if path == "arrival_batches":
            batches = arrival_batches({s: getattr(day, s) for s in day.sources}, day._streams, 60_000, from_ms)
        else:
            batches = (
                (s, rows)
                for s, rows, arr, _ in day.raw_batches(batch_ms=60_000, with_arrival=True)
                if len(arr) and arr[0] >= from_ms
            )
        return sum(len(rows) for _, rows in batches)

    n = benchmark.pedantic(produce, rounds=3, iterations=1)
    benchmark.extra_info["rows"] = n
    benchmark.extra_info["rows_per_s"] = n / benchmark.stats.stats.median
