"""Benchmarks of issue 3: continuous EW statistics, multi-resolution windows, queries, memory.

Run::

    .venv/bin/python -m pytest benchmarks/bench_windows.py --benchmark-only -q -s
    BENCH_N=1000000 .venv/bin/python -m pytest benchmarks/bench_windows.py --benchmark-only -q -s

Data: ``BENCH_N`` events (default 10M), 20,000 elements x 3 metrics = 60,000 slots, one day of
event time, arrival order = time order with up to 2 s of jitter (out of order inside a 5 s
allowed lateness), values around a per-slot level. All peers are limited to one thread
(polars ``POLARS_MAX_THREADS=1`` set before its import, DuckDB ``SET threads=1``). Every
benchmark records events/s from wall time (pytest-benchmark's minimum) and from CPU time
(``time.process_time``; steadier on a shared machine) in ``extra_info``; ``-s`` prints a table
at the end. JIT compile time is measured in a fresh process with an empty Numba cache.

Peers compute the same thing as ``EWStats``: the final exponentially weighted mean and variance
per slot at three half-lives, with weights ``2 ** (-(t_last - t) / half_life)``. polars and
DuckDB do it as a vectorised group-by (the natural way in those engines); pandas with
``groupby().ewm(times=...)`` on a subset of the slots (all events of 1 % of the slots, so the
events per group match the full data), scaled to events/s.
"""

from __future__ import annotations

import gc
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # before polars is imported anywhere

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kernels._numba import prefetch_at, prefetch_row  # noqa: E402
from telcoanalytics.windows.decay import Decay, EWStats  # noqa: E402
from telcoanalytics.windows.sketch import QuantileSketch  # noqa: E402
from telcoanalytics.windows.sliding import DEFAULT_RESOLUTIONS, SlidingWindows  # noqa: E402

N = int(os.environ.get("BENCH_N", 10_000_000))
N_ELEMENTS, N_METRICS = 20_000, 3
N_SLOTS = N_ELEMENTS * N_METRICS
HALF_LIVES_S = (60.0, 3600.0, 86400.0)
LATENESS_MS = 5_000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
PANDAS_SLOT_FRACTION = float(os.environ.get("BENCH_PANDAS_FRACTION", 0.01))
T0 = 1_700_000_000_000
LIGHT_RESOLUTIONS = ((60_000, 60), (3_600_000, 24), (86_400_000, 7))

RESULTS: list[tuple[str, str, float, float, str]] = []


def _record(benchmark, group, name, n_events, cpu_s, note=""):
    wall = benchmark.stats.stats.min
    cpu = min(cpu_s)
    benchmark.extra_info.update(
        events=n_events, events_per_s_wall=n_events / wall, events_per_s_cpu=n_events / cpu, cpu_s=cpu, note=note
    )
    RESULTS.append((group, name, n_events / wall, n_events / cpu, note))


def _timed(fn, cpu_s):
    def run(*a):
        t = time.process_time()
        out = fn(*a)
        cpu_s.append(time.process_time() - t)
        return out

    return run


@pytest.fixture(scope="session", autouse=True)
def print_table():
    yield
    if not RESULTS:
        return
    lines = [
        "",
        f"issue 3 benchmarks, N={N:,} events, {N_SLOTS:,} slots, one thread",
        f"{'group':<10} {'what':<44} {'Mev/s wall':>11} {'Mev/s cpu':>10}  note",
    ]
    for g, name, wall, cpu, note in RESULTS:
        lines.append(f"{g:<10} {name:<44} {wall / 1e6:>11.2f} {cpu / 1e6:>10.2f}  {note}")
    print("\n".join(lines))


@pytest.fixture(scope="session")
def data():
    rng = np.random.default_rng(2024)
    ts = np.sort(rng.integers(0, 86_400_000, N)).astype(np.int64) + T0
    ts -= rng.integers(0, 2_000, N)  # jitter: out of order within the lateness
    slot = rng.integers(0, N_SLOTS, N).astype(np.int64)
    level = rng.lognormal(3.0, 1.0, N_SLOTS)
    value = level[slot] * (1.0 + 0.1 * rng.standard_normal(N))
    return ts, slot, value


def _warm():
    """Compile (or load from cache) every kernel once on tiny data."""
    ts = np.array([T0, T0 + 1], dtype=np.int64)
    sl = np.array([0, 1], dtype=np.int64)
    x = np.array([1.0, 2.0])
    EWStats(2, HALF_LIVES_S).update(ts, sl, x)
    w = SlidingWindows(2, LIGHT_RESOLUTIONS, LATENESS_MS, HALF_LIVES_S)
    w.update(ts, sl, x)
    w.query(T0, 3_600_000, decay=Decay.exponential(600.0))
    QuantileSketch(2, width_ms=300_000, n_buckets=12).update(ts, sl, x)


# ---- (a) continuous EW mean + variance at three half-lives ---------------------------------


def test_a_ew_ours(benchmark, data):
    ts, sl, x = data
    _warm()
    cpu = []
    ew = benchmark.pedantic(_timed(lambda: _ew_ours(ts, sl, x), cpu), rounds=ROUNDS, iterations=1)
    assert ew.n_events == N
    _record(benchmark, "a: EW", "telcoanalytics EWStats.update", N, cpu, "3 half-lives, any order")


def _ew_ours(ts, sl, x):
    ew = EWStats(N_SLOTS, HALF_LIVES_S)
    ew.update(ts, sl, x)
    return ew


@numba.njit(cache=True, nogil=True)
def _minimal_ew(ts, sl, x, coef, state):
    """The smallest correct loop (in-order events only, no checks): the speed ceiling."""
    for i in range(ts.shape[0]):
        s = sl[i]
        t = float(ts[i])
        dt = t - state[s, 0]
        state[s, 0] = t
        for h in range(coef.shape[0]):
            a = math.exp(coef[h] * dt)
            j = 1 + 3 * h
            w = state[s, j] * a + 1.0
            m = state[s, j + 1]
            d = x[i] - m
            m += d / w
            state[s, j] = w
            state[s, j + 1] = m
            state[s, j + 2] = state[s, j + 2] * a + d * (x[i] - m)


def test_a_ew_minimal_numba(benchmark, data):
    ts, sl, x = data
    coef = -math.log(2.0) / (np.array(HALF_LIVES_S) * 1000.0)
    _minimal_ew(ts[:2], sl[:2], x[:2], coef, np.zeros((N_SLOTS, 10)))
    cpu = []

    def run():
        st = np.zeros((N_SLOTS, 10))
        st[:, 0] = float(ts[0])
        _minimal_ew(ts, sl, x, coef, st)

    benchmark.pedantic(_timed(run, cpu), rounds=ROUNDS, iterations=1)
    _record(benchmark, "a: EW", "minimal Numba loop (no prefetch, no checks)", N, cpu)


def _peer_check(slots, mean_60, ours):
    """The peers compute the same statistic: compare the 60 s-half-life means."""
    v = ours.values(0, slots)["mean"][:, 0]
    np.testing.assert_allclose(mean_60, v, rtol=1e-6)


def test_a_ew_polars(benchmark, data):
    pl = pytest.importorskip("polars")
    ts, sl, x = data
    if pl.thread_pool_size() != 1:
        pytest.skip("polars was imported before POLARS_MAX_THREADS=1 could apply; run this file alone")
    df = pl.DataFrame({"ts": ts, "slot": sl, "x": x})
    ln2 = math.log(2.0)
    # weights relative to each slot's last event (a window max), then one vectorised group-by of
    # the weighted power sums: the fastest formulation we found (per-group expressions inside
    # agg() were ~50x slower)
    weights = [((pl.col("dt") * (ln2 / (h * 1000.0))).exp()).alias(f"w{i}") for i, h in enumerate(HALF_LIVES_S)]
    aggs = []
    for i in range(len(HALF_LIVES_S)):
        w = pl.col(f"w{i}")
        aggs += [
            w.sum().alias(f"W{i}"),
            (w * pl.col("x")).sum().alias(f"S{i}"),
            (w * pl.col("x") * pl.col("x")).sum().alias(f"Q{i}"),
        ]
    fin = []
    for i in range(len(HALF_LIVES_S)):
        m = pl.col(f"S{i}") / pl.col(f"W{i}")
        fin += [m.alias(f"m{i}"), (pl.col(f"Q{i}") / pl.col(f"W{i}") - m * m).alias(f"v{i}")]

    def run():
        return (
            df.lazy()
            .with_columns(dt=(pl.col("ts") - pl.col("ts").max().over("slot")).cast(pl.Float64))
            .with_columns(weights)
            .group_by("slot")
            .agg(aggs)
            .with_columns(fin)
            .collect()
        )

    cpu = []
    out = benchmark.pedantic(_timed(run, cpu), rounds=ROUNDS, iterations=1)
    ours = _ew_ours(ts, sl, x)
    out = out.sort("slot")
    _peer_check(out["slot"].to_numpy(), out["m0"].to_numpy(), ours)
    _record(benchmark, "a: EW", f"polars {pl.__version__} group_by (1 thread)", N, cpu)


def test_a_ew_duckdb(benchmark, data):
    duckdb = pytest.importorskip("duckdb")
    pa = pytest.importorskip("pyarrow")
    ts, sl, x = data
    con = duckdb.connect()
    con.execute("SET threads=1")
    ev = pa.table({"ts": ts, "slot": sl, "x": x})
    con.register("ev", ev)
    cols = []
    for i, h in enumerate(HALF_LIVES_S):
        c = math.log(2.0) / (h * 1000.0)
        cols.append(f"exp((e.ts - m.tmax) * {c!r}) AS w{i}")
    sel = []
    for i in range(len(HALF_LIVES_S)):
        sel += [
            f"sum(w{i}) AS W{i}",
            f"sum(w{i} * x) / sum(w{i}) AS m{i}",
            f"sum(w{i} * x * x) / sum(w{i}) - pow(sum(w{i} * x) / sum(w{i}), 2) AS v{i}",
        ]
    sql = (
        f"WITH m AS (SELECT slot, max(ts) AS tmax FROM ev GROUP BY slot), "
        f"w AS (SELECT e.slot, e.x, {', '.join(cols)} FROM ev e JOIN m USING (slot)) "
        f"SELECT slot, {', '.join(sel)} FROM w GROUP BY slot ORDER BY slot"
    )
    cpu = []
    out = benchmark.pedantic(_timed(lambda: con.execute(sql).fetchnumpy(), cpu), rounds=ROUNDS, iterations=1)
    ours = _ew_ours(ts, sl, x)
    _peer_check(np.asarray(out["slot"]), np.asarray(out["m0"]), ours)
    _record(benchmark, "a: EW", f"DuckDB {duckdb.__version__} SQL group by (1 thread)", N, cpu)


def test_a_ew_pandas(benchmark, data):
    pd = pytest.importorskip("pandas")
    ts, sl, x = data
    keep = sl < int(N_SLOTS * PANDAS_SLOT_FRACTION)
    n_sub = int(keep.sum())
    order = np.argsort(ts[keep], kind="stable")  # pandas needs time order per group
    df = pd.DataFrame({"t": pd.to_datetime(ts[keep][order], unit="ms"), "slot": sl[keep][order], "x": x[keep][order]})
    df["x2"] = df["x"] * df["x"]

    def run():
        res = {}
        g = df.groupby("slot")
        for h in HALF_LIVES_S:
            e = g.ewm(halflife=pd.Timedelta(seconds=h), times=df["t"])
            m = e["x"].mean().groupby(level=0).last()
            m2 = e["x2"].mean().groupby(level=0).last()
            res[h] = (m, m2 - m * m)
        return res

    cpu = []
    res = benchmark.pedantic(_timed(run, cpu), rounds=1, iterations=1)
    ours = _ew_ours(ts, sl, x)
    m = res[60.0][0]
    _peer_check(m.index.to_numpy(), m.to_numpy(), ours)
    _record(
        benchmark,
        "a: EW",
        f"pandas {pd.__version__} groupby().ewm(times=)",
        n_sub,
        cpu,
        f"{n_sub:,} events of {100 * PANDAS_SLOT_FRACTION:g}% of the slots, scaled",
    )


# ---- (b) multi-resolution windows + continuous decay in one pass -----------------------------


@pytest.mark.parametrize("res", [DEFAULT_RESOLUTIONS, LIGHT_RESOLUTIONS], ids=["issue_example", "light"])
def test_b_windows_and_ew(benchmark, data, res):
    ts, sl, x = data
    _warm()
    cpu = []
    holder = {}

    def setup():
        holder.pop("w", None)
        gc.collect()
        holder["w"] = SlidingWindows(N_SLOTS, res, LATENESS_MS, HALF_LIVES_S)
        return (), {}

    def run():
        holder["w"].update(ts, sl, x)

    benchmark.pedantic(_timed(run, cpu), setup=setup, rounds=ROUNDS, iterations=1)
    w = holder["w"]
    assert w.n_accepted + w.n_late == N
    desc = " + ".join(f"{wd // 1000}s x{nb}" for wd, nb in res)
    _record(benchmark, "b: update", f"windows {desc} + EW x3", N, cpu, f"state {w.nbytes / 1e6:,.0f} MB")
    holder.clear()


@numba.njit(cache=True, nogil=True)
def _minimal_windows(ts, sl, x, width_ms, n_buckets, offset, n_slots, cells, coef, ew):
    """The smallest correct loop for rings + EW (in-order, no lateness/status/prefetch): a ceiling
    for the straightforward formulation, one event at a time through every ring."""
    for i in range(ts.shape[0]):
        s = sl[i]
        t = ts[i]
        v = x[i]
        for r in range(width_ms.shape[0]):
            b = t // width_ms[r]
            c = offset[r] + (b % n_buckets[r]) * n_slots + s
            if cells[c, 0] != b:
                cells[c, 0] = b
                cells[c, 1] = 1.0
                cells[c, 2] = v
                cells[c, 3] = 0.0
                cells[c, 4] = v
                cells[c, 5] = v
                cells[c, 6] = t
                continue
            n = cells[c, 1] + 1.0
            d = v - cells[c, 2]
            cells[c, 1] = n
            cells[c, 2] += d / n
            cells[c, 3] += d * (v - cells[c, 2])
            cells[c, 4] = min(cells[c, 4], v)
            cells[c, 5] = max(cells[c, 5], v)
            cells[c, 6] = max(cells[c, 6], float(t))
        tf = float(t)
        dt = tf - ew[s, 0]
        ew[s, 0] = tf
        for h in range(coef.shape[0]):
            a = math.exp(coef[h] * dt)
            j = 1 + 3 * h
            w = ew[s, j] * a + 1.0
            d = v - ew[s, j + 1]
            ew[s, j + 1] += d / w
            ew[s, j] = w
            ew[s, j + 2] = ew[s, j + 2] * a + d * (v - ew[s, j + 1])


def test_b_windows_minimal_numba(benchmark, data):
    ts, sl, x = data
    res = np.array(LIGHT_RESOLUTIONS, dtype=np.int64)
    width, nb = res[:, 0].copy(), res[:, 1].copy()
    offset = np.concatenate([[0], np.cumsum(nb * N_SLOTS)[:-1]]).astype(np.int64)
    coef = -math.log(2.0) / (np.array(HALF_LIVES_S) * 1000.0)
    _minimal_windows(
        ts[:2],
        sl[:2],
        x[:2],
        width,
        nb,
        offset,
        N_SLOTS,
        np.full((int(nb.sum()) * N_SLOTS, 7), np.nan),
        coef,
        np.zeros((N_SLOTS, 10)),
    )
    cpu = []
    holder = {}

    def setup():
        holder.clear()
        gc.collect()
        cells = np.full((int(nb.sum()) * N_SLOTS, 7), np.nan)
        ew = np.zeros((N_SLOTS, 10))
        ew[:, 0] = float(ts[0])
        holder.update(cells=cells, ew=ew)
        return (), {}

    benchmark.pedantic(
        _timed(
            lambda: _minimal_windows(ts, sl, x, width, nb, offset, N_SLOTS, holder["cells"], coef, holder["ew"]), cpu
        ),
        setup=setup,
        rounds=ROUNDS,
        iterations=1,
    )
    desc = " + ".join(f"{wd // 1000}s x{n}" for wd, n in LIGHT_RESOLUTIONS)
    _record(benchmark, "b: update", f"minimal Numba loop {desc} + EW x3", N, cpu, "no checks, no prefetch")
    holder.clear()


def test_b_windows_passes(benchmark, data):
    """Where the time of ``SlidingWindows.update`` goes: each pass of the kernel timed alone
    (status pass, one pass per ring, the EW pass), light resolutions, CPU time per event."""
    from kernels import ewm as ke
    from kernels import windows as kw

    ts, sl, x = data
    _warm()
    w = SlidingWindows(N_SLOTS, LIGHT_RESOLUTIONS, LATENESS_MS, HALF_LIVES_S)
    z = np.zeros(0, dtype=np.int64)
    status = np.empty(len(ts), dtype=np.int8)

    def status_pass():
        kw.window_update(
            tuple(
                kw.WindowState(
                    np.zeros((1, kw.N_AGG)),
                    np.zeros((1, 1)),
                    np.array([kw.NO_TIME, 0]),
                    np.zeros(4, np.int64),
                    z,
                    np.zeros(1, np.int64),
                    np.full(1, kw.NO_TIME),
                )
            ),
            tuple(kw.WindowParams(z, z, z, N_SLOTS, LATENESS_MS, False, np.zeros(0), np.zeros((3, 1, 0)))),
            tuple(kw.WindowBatch(ts, sl, x, ts)),
            status,
        )

    passes = [("status (watermark, invalid)", status_pass)]
    for r, (wd, nb) in enumerate(LIGHT_RESOLUTIONS):
        passes.append(
            (
                f"ring {wd // 1000}s x{nb}",
                lambda r=r, w=w: kw.ring_fold(
                    ts,
                    sl,
                    x,
                    status,
                    w.width_ms[r],
                    w.n_buckets[r],
                    w.offset[r],
                    N_SLOTS,
                    kw.NO_TIME,
                    w.cells,
                ),
            )
        )
    passes.append(("EW x3", lambda w=w: ke.ewm_fold(ts, sl, x, status, w.ew.coef, w.ew.table, w.ew.state)))
    cpu_all = []

    def run():
        for name, f in passes:
            t = time.process_time()
            f()
            cpu_all.append((name, time.process_time() - t))

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    for name, _ in passes:
        best = min(c for n, c in cpu_all if n == name)
        benchmark.extra_info[f"{name} ns/event cpu"] = best / N * 1e9
        RESULTS.append(("b: passes", name, 0.0, N / best, f"{best / N * 1e9:.1f} ns/event cpu"))
    del w
    gc.collect()


@numba.njit(cache=True, nogil=True)
def _floor_pass(rows, x, state, ahead):
    """The least a pass can do: per event, prefetch the row ``ahead`` events on and add the value
    into every field of its row (no bucket check, no Welford, no status)."""
    n = rows.shape[0]
    last = state.shape[1] - 1
    for i in range(n):
        if i + ahead < n:
            prefetch_row(state, rows[i + ahead])
            prefetch_at(state, rows[i + ahead], last)
        r = rows[i]
        v = x[i]
        for j in range(state.shape[1]):
            state[r, j] += v


def test_b_windows_floor(benchmark, data):
    """Hardware floor of the update on this machine: the same memory traffic as
    ``SlidingWindows.update`` with the light resolutions (one random 56-byte cell per event in
    each ring, one 80-byte EW row per event), with the cell rows precomputed outside the timing
    and no arithmetic beyond one add per field. Our update cannot beat the sum of these passes."""
    from kernels.ewm import PREFETCH_AHEAD
    from kernels.windows import N_AGG, RING_LOOKAHEAD

    ts, sl, x = data
    w = SlidingWindows(N_SLOTS, LIGHT_RESOLUTIONS, LATENESS_MS, HALF_LIVES_S)
    rows = []
    for r, (wd, nb) in enumerate(LIGHT_RESOLUTIONS):
        rows.append(
            (f"ring {wd // 1000}s x{nb}", w.offset[r] + (ts // wd) % nb * N_SLOTS + sl, w.cells, RING_LOOKAHEAD)
        )
    rows.append(("EW row", sl, w.ew.state, PREFETCH_AHEAD))
    _floor_pass(sl[:2], x[:2], np.zeros((2, N_AGG)), 1)
    cpu_all = []

    def run():
        for name, rr, st_, ahead in rows:
            t = time.process_time()
            _floor_pass(rr, x, st_, ahead)
            cpu_all.append((name, time.process_time() - t))

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    total = 0.0
    for name, *_ in rows:
        best = min(c for n, c in cpu_all if n == name)
        total += best
        RESULTS.append(("b: floor", name, 0.0, N / best, f"{best / N * 1e9:.1f} ns/event cpu"))
    benchmark.extra_info["floor_events_per_s_cpu"] = N / total
    RESULTS.append(
        ("b: floor", "sum: ceiling of windows + EW x3 (light)", 0.0, N / total, f"{total / N * 1e9:.1f} ns/event cpu")
    )
    del w
    gc.collect()


def test_b_sketch_update(benchmark, data):
    ts, sl, x = data
    _warm()
    n_lat = N_ELEMENTS  # one latency slot per element
    sl_e = sl // N_METRICS
    cpu = []
    holder = {}

    def setup():
        holder["s"] = QuantileSketch(n_lat, alpha=0.01, min_value=0.01, max_value=1e5, width_ms=300_000, n_buckets=12)
        return (), {}

    benchmark.pedantic(_timed(lambda: holder["s"].update(ts, sl_e, x), cpu), setup=setup, rounds=ROUNDS, iterations=1)
    _record(
        benchmark,
        "b: update",
        "quantile sketch 1% (5 min x 12, per element)",
        N,
        cpu,
        f"state {holder['s'].nbytes / 1e6:,.0f} MB",
    )
    holder.clear()


# ---- (c) weighted mean / variance query over all slots ----------------------------------------


@pytest.mark.parametrize(
    "span_ms,res_idx,label",
    [
        (3_600_000, 1, "1 h at 1 min (60 buckets)"),
        (86_400_000, 2, "1 day at 1 h (24 buckets)"),
        (7 * 86_400_000, 3, "7 days at 1 day (7 buckets)"),
    ],
)
def test_c_query_all_slots(benchmark, data, span_ms, res_idx, label):
    ts, sl, x = data
    _warm()
    w = SlidingWindows(N_SLOTS, DEFAULT_RESOLUTIONS, LATENESS_MS)
    w.update(ts, sl, x)
    tq = int(w.max_ts_ms)
    decay = Decay.exponential(span_ms / 4000.0)
    w.query(tq, span_ms, decay=decay, resolution=res_idx)
    cpu = []
    q = benchmark.pedantic(
        _timed(lambda: w.query(tq, span_ms, decay=decay, resolution=res_idx), cpu),  # noqa: F821
        rounds=max(ROUNDS, 5),
        iterations=1,
    )
    assert np.isfinite(q["var"]).any()
    wall_ms = benchmark.stats.stats.min * 1e3
    benchmark.extra_info.update(query_ms_wall=wall_ms, query_ms_cpu=min(cpu) * 1e3, slots=N_SLOTS)
    RESULTS.append(
        ("c: query", f"{N_SLOTS:,} slots, {label}", 0.0, 0.0, f"{wall_ms:.1f} ms wall, {min(cpu) * 1e3:.1f} ms cpu")
    )
    del w
    gc.collect()


@pytest.mark.parametrize(
    "span_ms,res_idx,label",
    [
        (3_600_000, 1, "1 h at 1 min (60 buckets)"),
        (86_400_000, 2, "1 day at 1 h (24 buckets)"),
        (7 * 86_400_000, 3, "7 days at 1 day (7 buckets)"),
    ],
)
def test_c_standing_query_live(benchmark, data, span_ms, res_idx, label):
    """A registered query asked after every micro-batch of a live stream (a dashboard).

    After the day of ``data``, 120 micro-batches of 10,000 events each arrive, one per second of
    event time (2 s jitter, inside the 5 s lateness); after each one the standing query is asked
    at the newest event time. Reported: the per-call time (p50 / p99 / max over the 120 calls,
    bucket boundaries and the look-ahead work included) and how many calls read the whole span
    again. The registering call (one full read, like ``query``) comes before and is not counted.
    Every answer is checked against ``query`` (bit-identical) outside the timed region."""
    ts, sl, x = data
    _warm()
    w = SlidingWindows(N_SLOTS, DEFAULT_RESOLUTIONS, LATENESS_MS)
    w.update(ts, sl, x)
    decay = Decay.exponential(span_ms / 4000.0)
    sq = w.standing_query(span_ms, decay=decay, resolution=res_idx)
    sq(int(w.max_ts_ms))
    rng = np.random.default_rng(7)
    n_b, per = 120, 10_000
    t_start = int(w.max_ts_ms)
    calls_ms = []
    for i in range(n_b):
        t_hi = t_start + (i + 1) * 1000
        bts = np.sort(rng.integers(t_hi - 1000, t_hi, per)).astype(np.int64) - rng.integers(0, 2000, per)
        w.update(bts, rng.integers(0, N_SLOTS, per).astype(np.int64), rng.lognormal(3.0, 1.0, per))
        tq = int(w.max_ts_ms)
        t0 = time.perf_counter()
        got = sq(tq)
        calls_ms.append((time.perf_counter() - t0) * 1e3)
        if i % 30 == 0 or i == n_b - 1:
            ref = w.query(tq, span_ms, decay=decay, resolution=res_idx)
            np.testing.assert_array_equal(got["var"], ref["var"])
    tq = int(w.max_ts_ms)
    q = benchmark.pedantic(lambda: sq(tq), rounds=max(ROUNDS, 5), iterations=1)
    assert np.isfinite(q["var"]).any()
    c = np.array(calls_ms)
    builds = sq.n_builds - 1
    benchmark.extra_info.update(
        p50_ms=float(np.median(c)),
        p99_ms=float(np.quantile(c, 0.99)),
        max_ms=float(c.max()),
        rebuilds=builds,
        calls=n_b,
    )
    RESULTS.append(
        (
            "c: standing",
            f"{N_SLOTS:,} slots, {label}",
            0.0,
            0.0,
            f"per call p50 {np.median(c):.2f} ms, p99 {np.quantile(c, 0.99):.1f} ms, max {c.max():.1f} ms; "
            f"{builds} rebuilds in {n_b} calls; hot {benchmark.stats.stats.min * 1e3:.2f} ms",
        )
    )
    del w
    gc.collect()


# ---- (d) memory: reported nbytes vs what the process gains ------------------------------------

_MEM_SCRIPT = textwrap.dedent("""
    import json, sys, numpy as np
    from telcoanalytics.windows.sliding import SlidingWindows
    from telcoanalytics.windows.sketch import QuantileSketch
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    res = json.loads(sys.argv[1]); n_slots = int(sys.argv[2])
    ts = np.array([1_700_000_000_000], dtype=np.int64); sl = np.zeros(1, dtype=np.int64); x = np.ones(1)
    SlidingWindows(2, res, 0, (60.0,)).update(ts, sl, x)          # imports, JIT load, warm
    QuantileSketch(2, width_ms=300_000, n_buckets=12).update(ts, sl, x)
    out = {}
    r0 = rss(); w = SlidingWindows(n_slots, res, 5000, (60.0, 3600.0, 86400.0)); w.update(ts, sl, x)
    out["windows"] = (w.nbytes, rss() - r0)
    r0 = rss(); s = QuantileSketch(n_slots // 3, width_ms=300_000, n_buckets=12)
    s.counts[...] = 0; s.update(ts, sl, x)          # touch every page, as a long-running stream does
    out["sketch"] = (s.nbytes, rss() - r0)
    print(json.dumps(out))
""")


@pytest.mark.parametrize("res", [DEFAULT_RESOLUTIONS, LIGHT_RESOLUTIONS], ids=["issue_example", "light"])
def test_d_memory(benchmark, res):
    import json

    out = benchmark.pedantic(
        lambda: (
            subprocess.run(
                [sys.executable, "-c", _MEM_SCRIPT, json.dumps([list(r) for r in res]), str(N_SLOTS)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        ),
        rounds=1,
        iterations=1,
    )
    d = json.loads(out.strip().splitlines()[-1])
    for what, (nbytes, gain) in d.items():
        if what == "sketch" and res != LIGHT_RESOLUTIONS:
            continue  # the sketch does not depend on the resolutions: report once
        benchmark.extra_info[f"{what}_nbytes"] = nbytes
        benchmark.extra_info[f"{what}_rss_gain"] = gain
        RESULTS.append(
            (
                "d: memory",
                f"{what} {len(res)} resolutions, {N_SLOTS:,} slots"
                if what == "windows"
                else f"sketch 1% 5 min x 12, {N_SLOTS // 3:,} slots",
                0.0,
                0.0,
                f"nbytes {nbytes / 1e6:,.1f} MB, RSS gain {gain / 1e6:,.1f} MB "
                f"({100 * (gain - nbytes) / nbytes:+.1f}%)",
            )
        )
        assert abs(gain - nbytes) <= 0.1 * nbytes, (what, nbytes, gain)


# ---- JIT compile time (cold, empty cache) ------------------------------------------------------

_JIT_SCRIPT = textwrap.dedent("""
    import time, numpy as np
    t0 = time.perf_counter()
    from telcoanalytics.windows.decay import EWStats, Decay
    from telcoanalytics.windows.sliding import SlidingWindows
    from telcoanalytics.windows.sketch import QuantileSketch
    t1 = time.perf_counter()
    ts = np.array([1_700_000_000_000, 1_700_000_000_001]); sl = np.array([0, 1]); x = np.array([1.0, 2.0])
    EWStats(2, (60.0,)).update(ts, sl, x); t2 = time.perf_counter()
    w = SlidingWindows(2, ((60_000, 5),), 0, (60.0,)); w.update(ts, sl, x); t3 = time.perf_counter()
    w.query(int(ts[-1]), 60_000, decay=Decay.exponential(60.0)); t4 = time.perf_counter()
    s = QuantileSketch(2); s.update(ts, sl, x); s.quantiles([0.5]); t5 = time.perf_counter()
    print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
""")


def test_jit_compile_time(benchmark):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        env.pop("NUMBA_DISABLE_JIT", None)
        run = lambda: (
            subprocess.run(
                [sys.executable, "-c", _JIT_SCRIPT],
                env=env,
                capture_output=True,  # noqa: E731
                text=True,
                check=True,
            ).stdout
        )
        out = benchmark.pedantic(run, rounds=1, iterations=1)
        cold = [float(v) for v in out.split()]
        warm = [float(v) for v in run().split()]
    names = ("import", "ewm_update", "window_update", "window_query", "sketch")
    for n, c, h in zip(names, cold, warm):
        benchmark.extra_info[f"{n}_cold_s"] = c
        benchmark.extra_info[f"{n}_cached_s"] = h
    RESULTS.append(
        (
            "jit",
            "compile, empty cache / from disk cache",
            0.0,
            0.0,
            ", ".join(f"{n} {c:.2f}s/{h:.2f}s" for n, c, h in zip(names, cold, warm)),
        )
    )
