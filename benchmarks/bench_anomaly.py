"""Benchmark: causal anomaly scoring, 20,000 elements x 3 metrics, 10M events (BENCH_N to change).

Ours: ``AnomalyDetector.update`` with the product defaults for 5-minute data (earned hour-of-day and
hour-of-week profiles in 15-minute buckets, robust scale, calibrated tail score, CUSUM, episodes
with re-fire suppression), fed in PM rounds (one batch per 5-minute interval, as the pipeline does).
Baselines doing only a decayed z-score (score before update): a minimal Numba loop
(``kernels.detect.zscore_decayed``), polars and pandas, each on one core.

Run: ``.venv/bin/python -m pytest benchmarks/bench_anomaly.py --benchmark-only -q -s
--benchmark-timer=time.process_time`` (CPU time of the one thread: on a shared machine wall time
mostly measures the other tenants). Figures go to the benchmark output and the notes, not here.
"""

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # before polars is imported anywhere

import dataclasses  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kernels import detect as K  # noqa: E402
from telcoanalytics.anomaly.detector import AnomalyDetector, DetectorConfig  # noqa: E402

N_EVENTS = int(os.environ.get("BENCH_N", 10_000_000))
N_ELEMENTS = 20_000
N_METRICS = 3
N_SLOTS = N_ELEMENTS * N_METRICS
PM_MS = 300_000
ALPHA = 0.05


@pytest.fixture(scope="module", params=["shuffled", "collector"])
def data(request):
    """Events of ``n_rounds`` PM intervals. "shuffled": elements in a random order within each
    interval (worst case for the state caches); "collector": ascending element order within each
    interval, as a PM collector delivers its files."""
    rng = np.random.default_rng(42)
    n_rounds = max(1, N_EVENTS // N_SLOTS)
    n = n_rounds * N_SLOTS if N_EVENTS >= N_SLOTS else N_EVENTS
    per_round = min(N_SLOTS, n)
    ts = np.repeat(np.arange(n_rounds, dtype=np.int64) * PM_MS, per_round)[:n]
    # elements report in a shuffled order within each interval, metrics of one element together
    if request.param == "shuffled":
        order = np.concatenate([rng.permutation(N_ELEMENTS) for _ in range(n_rounds)])
    else:
        order = np.tile(np.arange(N_ELEMENTS), n_rounds)
    slot = (np.repeat(order, N_METRICS) * N_METRICS + np.tile(np.arange(N_METRICS), len(order)))[:n]
    base = 20.0 + 30.0 * rng.random(N_SLOTS)
    day = np.sin(2 * np.pi * (ts % 86_400_000) / 86_400_000)
    value = base[slot] * (1 + 0.3 * day) + rng.standard_normal(n)
    cuts = np.arange(0, n + 1, per_round)
    return ts, slot.astype(np.int64), value, cuts, request.param


def _fresh(**rules):
    det = AnomalyDetector(N_SLOTS, dataclasses.replace(DetectorConfig.for_interval(300), **rules))  # day, week
    det.state.seas_d[:] = 0.0  # touch the pages outside the timing
    det.state.seas_w[:] = 0.0
    return det


def _ours(det, ts, slot, value, cuts):
    n_rows = 0
    for a, b in zip(cuts[:-1], cuts[1:]):
        n_rows += len(det.update(ts[a:b], slot[a:b], value[a:b]))
    return n_rows


def _report(benchmark, n, name):
    st = benchmark.stats.stats
    benchmark.extra_info["events"] = n
    benchmark.extra_info["events_per_s"] = n / st.median
    benchmark.extra_info["events_per_s_best"] = n / st.min
    print(
        f"\n{name}: {n / st.median / 1e6:.1f} M events/s median, {n / st.min / 1e6:.1f} best of {st.rounds} "
        f"({n:,} events, median {st.median:.3f} s)"
    )


def test_bench_ours_seasonal_threshold(benchmark, data):
    ts, slot, value, cuts, order = data
    small = slice(0, min(len(ts), 1000))
    _ours(AnomalyDetector(N_SLOTS), ts[small], slot[small], value[small], np.array([0, small.stop]))  # JIT
    benchmark.pedantic(_ours, setup=lambda: ((_fresh(), ts, slot, value, cuts), {}), rounds=5, iterations=1)
    _report(benchmark, len(ts), f"ours (earned season + calibrated score + CUSUM + episodes), {order}")


def test_bench_ours_rules_before(benchmark, data):
    """The same detector with the rules before the season earned by evidence and learning from
    recurrence (``season_snr=False, recur_tol=0``): the throughput those rules must keep."""
    ts, slot, value, cuts, order = data
    rules = {"season_snr": False, "recur_tol": 0.0}
    small = slice(0, min(len(ts), 1000))
    _ours(_fresh(**rules), ts[small], slot[small], value[small], np.array([0, small.stop]))  # JIT
    benchmark.pedantic(_ours, setup=lambda: ((_fresh(**rules), ts, slot, value, cuts), {}), rounds=5, iterations=1)
    _report(benchmark, len(ts), f"ours, rules before (season_snr=False, recur_tol=0), {order}")


def test_bench_numba_minimal_zscore(benchmark, data):
    ts, slot, value, _, order = data

    def run():
        mean, var, z = np.zeros(N_SLOTS), np.zeros(N_SLOTS), np.empty(len(slot))
        K.zscore_decayed(slot, value, ALPHA, mean, var, z)
        return z

    run()
    benchmark.pedantic(run, rounds=3, iterations=1)
    _report(benchmark, len(ts), f"numba minimal decayed z-score, {order}")


def test_bench_polars_zscore(benchmark, data):
    pl = pytest.importorskip("polars")
    ts, slot, value, _, order = data
    df = pl.DataFrame({"slot": slot, "value": value})

    def run():
        m = pl.col("value").ewm_mean(alpha=ALPHA, adjust=False)
        v = pl.col("value").ewm_var(alpha=ALPHA, adjust=False, bias=True)
        return df.with_columns(
            ((pl.col("value") - m.shift(1).over("slot")) / v.shift(1).over("slot").sqrt()).alias("z")
        )

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["threads"] = pl.thread_pool_size()
    _report(benchmark, len(ts), f"polars ({pl.thread_pool_size()} thread) decayed z-score")


def test_bench_pandas_zscore(benchmark, data):
    pd = pytest.importorskip("pandas")
    ts, slot, value, _, order = data
    df = pd.DataFrame({"slot": slot, "value": value})

    def run():
        ew = df.groupby("slot")["value"].ewm(alpha=ALPHA, adjust=False)
        mean = ew.mean().reset_index(level=0, drop=True).sort_index()
        var = ew.var(bias=True).reset_index(level=0, drop=True).sort_index()
        prev_m = mean.groupby(df["slot"]).shift(1)
        prev_v = var.groupby(df["slot"]).shift(1)
        return (df["value"] - prev_m) / np.sqrt(prev_v)

    benchmark.pedantic(run, rounds=1, iterations=1)
    _report(benchmark, len(ts), "pandas decayed z-score")


def test_bench_cold_start_jit(benchmark):
    """Compile time of the detection kernel in a fresh process with an empty Numba cache."""
    code = textwrap.dedent("""
        import time, numpy as np
        t0 = time.perf_counter()
        from telcoanalytics.anomaly.detector import AnomalyDetector, DetectorConfig
        det = AnomalyDetector(4, DetectorConfig())
        t1 = time.perf_counter()
        det.update(np.arange(8, dtype=np.int64), np.arange(8, dtype=np.int64) % 4, np.ones(8))
        t2 = time.perf_counter()
        det.update(np.arange(8, dtype=np.int64), np.arange(8, dtype=np.int64) % 4, np.ones(8))
        t3 = time.perf_counter()
        print(t1 - t0, t2 - t1, t3 - t2)
    """)

    def run():
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            out = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
        return [float(v) for v in out.stdout.split()]

    imp, first, second = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(import_s=imp, first_call_s=first, warm_call_s=second)
    print(f"\ncold start: import {imp:.2f} s, first call (JIT compile) {first:.2f} s, warm call {second * 1e6:.0f} us")
