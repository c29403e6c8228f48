"""Synthetic network generation and arrival-stream throughput.

Run: ``.venv/bin/python -m pytest benchmarks/bench_synth.py --benchmark-only -q
--benchmark-min-rounds=1``; ``BENCH_N`` sets the number of elements (default 10,000, the default
day: ~20M events), ``BENCH_DAYS`` the span in days (default 1).

Measured: ``generate()`` end to end (topology, load, four sources, scenarios, arrival stream),
``raw_batches(60 s)`` iteration over the whole stream, and writing Parquet. The generator is NumPy
plus a few compiled passes (``telcoanalytics.synth._kernels``: equipment rows, arrival orders,
stable sorts), loaded from Numba's cache by a small warm-up generation before timing; the peer is
writing the same arrays with pandas' ``to_parquet`` (pyarrow engine, one thread).
"""

import os

import numpy as np
import pytest

from telcoanalytics.records import SOURCES
from telcoanalytics.synth.network import SynthConfig, generate

N_ELEMENTS = int(os.environ.get("BENCH_N", 10_000))
DAYS = float(os.environ.get("BENCH_DAYS", 1.0))
CFG = SynthConfig(n_elements=N_ELEMENTS, days=DAYS, seed=7)


def _record(benchmark, n):
    s = benchmark.stats.stats
    benchmark.extra_info["events"] = int(n)
    benchmark.extra_info["events_per_s_median"] = n / s.median
    benchmark.extra_info["seconds_median"] = s.median


@pytest.fixture(scope="module")
def day():
    return generate(CFG)


def test_generate(benchmark):
    generate(SynthConfig(n_elements=100, days=0.1, seed=1))  # warm-up: the compiled passes load (or compile) once
    d = benchmark.pedantic(generate, args=(CFG,), rounds=1, iterations=1)
    _record(benchmark, d.n_events)
    benchmark.extra_info.update({f"n_{s}": len(d[s]) for s in SOURCES})


def test_raw_batches(benchmark, day):
    def run():
        return sum(len(rows) for _, rows in day.raw_batches(60_000))

    n = benchmark.pedantic(run, rounds=1, iterations=1)
    assert n == sum(day.stats["n_arrived"].values())
    _record(benchmark, n)


def test_write_parquet(benchmark, day, tmp_path):
    pytest.importorskip("pyarrow")
    benchmark.pedantic(day.write, args=(tmp_path / "pq", "parquet"), rounds=1, iterations=1)
    _record(benchmark, sum(day.stats["n_arrived"].values()))


def test_peer_pandas_to_parquet(benchmark, day, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import pyarrow as pa

    pa.set_cpu_count(1)
    frames = {s: pd.DataFrame({f: np.ascontiguousarray(day[s][f]) for f in day[s].dtype.names}) for s in SOURCES}

    def run():
        for s, df in frames.items():
            df.to_parquet(tmp_path / f"{s}.parquet", engine="pyarrow")

    benchmark.pedantic(run, rounds=1, iterations=1)
    _record(benchmark, sum(len(df) for df in frames.values()))
