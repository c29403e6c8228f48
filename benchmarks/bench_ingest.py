"""Ingest rate: NumPy arrays and Parquet files through ``Ingestor``, against pyarrow's raw read.

Run::

    .venv/bin/python -m pytest benchmarks/bench_ingest.py --benchmark-only -q --benchmark-min-rounds=3
    BENCH_N=1000000 .venv/bin/python -m pytest benchmarks/bench_ingest.py --benchmark-only -q

Sizes: ``BENCH_N`` events per source (default 10,000,000) on a 20,000-element topology
(CSV: the first ``BENCH_CSV_N`` rows, default 1,000,000). The
data is seeded and valid except for a realistic 0.1% of corrupted rows (and, for CDRs, 0.1%
duplicate record ids), so the quarantine path is exercised too. The JIT is warmed before
timing; the cold start (compile into an empty cache) is measured in a fresh process.

``test_dedup_cost_ab`` measures the duplicate check by natural key in one process (CPU time):
``dedup=False`` (the path before every source was checked), the default (one compiled call per
batch into key sets per event-time bucket), the separate-step check it replaced and the one-table
set before that, per source, whole array and 100k-row batches, best of ``BENCH_AB_ROUNDS``;
``test_dedup_cost_ab_replay_batches`` does the same on the replay's own batches (``BENCH_AB_ELEMENTS``
elements). Run them with ``-s`` to see the tables.

``extra_info`` of each benchmark holds ``events_per_s`` (from the fastest round). The Parquet
ingest is compared with ``pyarrow.parquet.read_table`` of the same file: the ratio tells how
much of the Parquet ingest time is pyarrow's own decoding.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from telcoanalytics.ingest.ingestor import Ingestor
from telcoanalytics.records import NO_TIME_MS, empty
from telcoanalytics.topology.model import Topology

N = int(os.environ.get("BENCH_N", 10_000_000))
N_CSV = min(N, int(os.environ.get("BENCH_CSV_N", 1_000_000)))  # CSV rows (text is slow to write)
N_ELEMENTS = 20_000
T0 = 1_700_000_000_000
REPO = Path(__file__).resolve().parents[1]


def _topology():
    ids = 10_000_000 + np.arange(N_ELEMENTS, dtype=np.int64) * 7
    return Topology.from_columns(ids, {"region": np.arange(N_ELEMENTS) // 2000, "site": np.arange(N_ELEMENTS) // 4})


def make(source: str, n: int, element_ids: np.ndarray, seed: int = 42) -> np.ndarray:
    """Seeded canonical rows with 0.1% corrupted (and for CDRs 0.1% duplicated ids).

    Measurements (equipment, flows, QoS) are distinct by natural key except for a few chance
    repeats of (element, metric/destination, time) at the same millisecond."""
    rng = np.random.default_rng(seed)
    a = empty(source, n)
    t = T0 + np.sort(rng.integers(0, 86_400_000, n))
    el = element_ids[rng.integers(0, len(element_ids), n)]
    bad = rng.random(n) < 0.001
    if source == "cdr":
        a["record_id"] = rng.permutation(n).astype(np.int64) * 2654435761 % (1 << 62)
        dup = np.flatnonzero(rng.random(n) < 0.001)
        a["record_id"][dup] = a["record_id"][dup // 2]
        a["start_ms"] = t
        a["end_ms"] = t + rng.lognormal(11, 1, n).astype(np.int64)
        a["answer_ms"] = np.where(rng.random(n) < 0.8, np.minimum(t + 4000, a["end_ms"]), NO_TIME_MS)
        a["calling_id"] = rng.integers(1, 1 << 62, n)
        a["called_id"] = rng.integers(1, 1 << 62, n)
        a["imsi_hash"] = rng.integers(1, 1 << 62, n)
        a["element_id"] = el
        a["service"] = rng.integers(0, 4, n)
        a["cause"] = rng.choice(np.array([16, 16, 16, 31, 17, 34], dtype=np.int16), n)
        a["bytes_up"] = rng.integers(0, 10**6, n)
        a["bytes_down"] = rng.integers(0, 10**7, n)
        a["cause"][bad] = 0
    elif source == "equip":
        a["ts_ms"] = t
        a["element_id"] = el
        a["metric_id"] = rng.integers(0, 6, n)
        a["value"] = rng.random(n) * 90
        a["value"][bad] = np.nan
    elif source == "flow":
        a["ts_ms"] = t
        a["src_element_id"] = el
        a["dst_element_id"] = element_ids[rng.integers(0, len(element_ids), n)]
        a["bytes"] = rng.integers(0, 10**9, n)
        a["packets"] = a["bytes"] // 1000
        a["flows"] = rng.integers(1, 100, n)
        a["bytes"][bad] = -1
    elif source == "qos":
        a["ts_ms"] = t
        a["element_id"] = el
        a["latency_ms"] = rng.gamma(4.0, 5.0, n)
        a["jitter_ms"] = rng.gamma(2.0, 1.0, n)
        a["loss_pct"] = rng.random(n)
        a["mos"] = 4.2
        a["latency_ms"][bad] = np.inf
    else:
        raise ValueError(source)
    return a


@pytest.fixture(scope="module")
def setup():
    topo = _topology()
    eids = topo.ids[topo.element_level]
    data = {s: make(s, N, eids) for s in ("cdr", "equip")}
    for s, a in data.items():  # warm the JIT (dedup kernels) before timing
        Ingestor(s, topology=topo).ingest(a[:1000])
    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    files = {}
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    for s, a in data.items():
        files[s] = tmp / f"{s}.parquet"
        pq.write_table(pa.table({f: a[f] for f in a.dtype.names}), files[s], row_group_size=1_000_000)
        files[s + "_csv"] = tmp / f"{s}.csv"
        pcsv.write_csv(pa.table({f: a[f][:N_CSV] for f in a.dtype.names}), files[s + "_csv"])
    yield topo, data, files
    for f in files.values():
        f.unlink()
    tmp.rmdir()


def _rate(benchmark, n):
    best = benchmark.stats.stats.min
    benchmark.extra_info["events"] = n
    benchmark.extra_info["events_per_s"] = round(n / best)


@pytest.mark.parametrize("source", ["cdr", "equip"])
def test_ingest_numpy(benchmark, setup, source):
    topo, data, _ = setup
    a = data[source]
    r = benchmark.pedantic(lambda: Ingestor(source, topology=topo).ingest(a), rounds=3, iterations=1)
    assert r.n_accepted + r.n_quarantined == N and r.n_quarantined > 0
    _rate(benchmark, N)


@pytest.mark.parametrize("source", ["cdr", "equip"])
def test_ingest_numpy_without_dedup(benchmark, setup, source):
    """The same as test_ingest_numpy with duplicate detection switched off (``dedup=False``):
    the cost of the natural-key check is the difference."""
    topo, data, _ = setup
    a = data[source]
    if "dedup" not in Ingestor.__init__.__code__.co_varnames:  # pragma: no cover - older trees
        pytest.skip("this Ingestor has no dedup switch")
    benchmark.pedantic(lambda: Ingestor(source, topology=topo, dedup=False).ingest(a), rounds=3, iterations=1)
    _rate(benchmark, len(a))


@pytest.mark.parametrize("source", ["cdr", "equip"])
def test_ingest_numpy_batches_100k(benchmark, setup, source):
    """The replay's path: one Ingestor fed many 100k-row batches (dedup state carried)."""
    topo, data, _ = setup
    a = data[source]

    def run():
        ing = Ingestor(source, topology=topo)
        for s in range(0, N, 100_000):
            ing.ingest(a[s : s + 100_000])
        return ing

    ing = benchmark.pedantic(run, rounds=3, iterations=1)
    assert ing.n_read == N
    _rate(benchmark, N)


@pytest.mark.parametrize("source", ["cdr", "equip"])
def test_parquet_read_table_raw(benchmark, setup, source):
    """pyarrow alone: decode the file into an Arrow table (the lower bound of our Parquet path)."""
    import pyarrow.parquet as pq

    _, _, files = setup
    t = benchmark.pedantic(lambda: pq.read_table(files[source]), rounds=3, iterations=1)
    assert t.num_rows == N
    _rate(benchmark, N)


@pytest.mark.parametrize("source", ["cdr", "equip"])
def test_ingest_parquet(benchmark, setup, source):
    topo, _, files = setup

    def run():
        ing = Ingestor(source, topology=topo)
        n = 0
        for r in ing.ingest_file(files[source], chunk_rows=1_000_000):
            n += r.n_read
        return n

    n = benchmark.pedantic(run, rounds=3, iterations=1)
    assert n == N
    _rate(benchmark, N)


def test_cold_start_compile(benchmark):
    """Import + first CDR ingest in a fresh process with an empty Numba cache (compile time)."""
    code = (
        "import time, numpy as np; t=time.perf_counter();"
        "from telcoanalytics.ingest.ingestor import Ingestor; from telcoanalytics.records import empty;"
        "a=empty('cdr', 10); a['start_ms']=a['end_ms']=1_700_000_000_000; a['cause']=16;"
        "a['record_id']=np.arange(10); Ingestor('cdr').ingest(a); print(time.perf_counter()-t)"
    )

    def run():
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
            )
            return float(out.stdout.strip())

    t = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["cold_start_s"] = round(t, 3)


@pytest.mark.parametrize("source", ["cdr", "equip"])
def test_numpy_copy_baseline(benchmark, setup, source):
    """Calibration: one plain copy of the same array (memory bandwidth on this machine, now)."""
    _, data, _ = setup
    a = data[source]
    benchmark.pedantic(a.copy, rounds=3, iterations=1)
    _rate(benchmark, N)


@pytest.mark.parametrize("source", ["cdr", "equip"])
def test_csv_read_raw(benchmark, setup, source):
    """pyarrow alone: parse the CSV file with type inference (no validation, no quarantine)."""
    import pyarrow.csv as pcsv

    _, _, files = setup
    t = benchmark.pedantic(lambda: pcsv.read_csv(files[source + "_csv"]), rounds=3, iterations=1)
    assert t.num_rows == N_CSV
    _rate(benchmark, N_CSV)


@pytest.mark.parametrize("source", ["cdr", "equip"])
def test_ingest_csv(benchmark, setup, source):
    """CSV ingest with the default (arrow) engine: text columns, casts, validation, quarantine."""
    topo, _, files = setup

    def run():
        ing = Ingestor(source, topology=topo)
        return sum(r.n_read for r in ing.ingest_file(files[source + "_csv"], chunk_rows=250_000))

    assert benchmark.pedantic(run, rounds=3, iterations=1) == N_CSV
    _rate(benchmark, N_CSV)


# ---- duplicate check A/B: the cost of the natural-key check, in one process -------------------------
AB_SOURCES = ("cdr", "equip", "flow", "qos")
AB_ROUNDS = int(os.environ.get("BENCH_AB_ROUNDS", 5))
AB_ELEMENTS = int(os.environ.get("BENCH_AB_ELEMENTS", 2000))


def _separate_steps(source, topo):
    """The default before the one compiled call per batch: clock, key array and key set in separate
    steps (``Ingestor.fused_dedup = False``; same decisions), for the A/B only."""
    ing = Ingestor(source, topology=topo)
    ing.fused_dedup = False
    return ing


def _one_table(source, topo):
    """The default before the key sets per time bucket: one table of every key of the horizon
    (``DedupSet``, two generations), for the A/B only."""
    from telcoanalytics.ingest.dedup import DedupSet
    from telcoanalytics.ingest.ingestor import DEDUP_HORIZON_MS

    ing = Ingestor(source, topology=topo)
    ing.dedup = DedupSet(DEDUP_HORIZON_MS[source])
    ing.fused_dedup = False
    return ing


AB_MODES = {
    "dedup=False": lambda s, topo: Ingestor(s, topology=topo, dedup=False),
    "default (one call)": lambda s, topo: Ingestor(s, topology=topo),
    "separate steps": _separate_steps,
    "one table": _one_table,
}


def _ab(workloads: dict, topo, rounds: int) -> dict:
    """Best CPU time (``time.process_time``) of each mode on each workload (a list of batches of one
    source), modes interleaved round by round; the modes must agree on the counts."""
    import time

    best = {}
    for _ in range(rounds):
        for w, (source, batches) in workloads.items():
            counts = set()
            for mode, make_ing in AB_MODES.items():
                ing = make_ing(source, topo)
                t0 = time.process_time()
                for b in batches:
                    ing.ingest(b)
                dt = time.process_time() - t0
                best[(w, mode)] = min(best.get((w, mode), np.inf), dt)
                if mode != "dedup=False":
                    counts.add((ing.n_accepted, ing.n_quarantined))
            assert len(counts) == 1, f"{w}: the duplicate checks disagree {counts}"
    return best


def _ab_table(title: str, workloads: dict, best: dict, rows_of, benchmark) -> None:
    lines = [title]
    for w in workloads:
        base = best[(w, "dedup=False")]
        cells = []
        for mode in AB_MODES:
            dt = best[(w, mode)]
            benchmark.extra_info[f"{w}/{mode}_cpu_s"] = round(dt, 4)
            cells.append(f"{mode} {rows_of(w) / dt / 1e6:6.2f} ({dt / base:4.2f}x)")
        lines.append(f"  {w:28s} " + "  ".join(cells))
    print("\n" + "\n".join(lines))


def test_dedup_cost_ab(benchmark, setup):
    """``dedup=False`` (the path before duplicates were checked in every source) against the
    default (one compiled call per batch), the separate-step check it replaced and the one-table
    key set before that, per source, whole array and in 100k-row batches; CPU time, modes
    interleaved, best of ``BENCH_AB_ROUNDS``. The table goes to stdout (``-s``) and ``extra_info``."""
    topo, data, _ = setup
    for s in AB_SOURCES:  # flow and qos are only made here
        if s not in data:
            data[s] = make(s, N, topo.ids[topo.element_level])
            Ingestor(s, topology=topo).ingest(data[s][:1000])
    workloads = {}
    for s in AB_SOURCES:
        workloads[f"{s} whole"] = (s, [data[s]])
        workloads[f"{s} batches of 100k"] = (s, [data[s][i : i + 100_000] for i in range(0, N, 100_000)])
    best = benchmark.pedantic(lambda: _ab(workloads, topo, AB_ROUNDS), rounds=1, iterations=1)
    title = f"duplicate check A/B, {N:,} rows per source, CPU, best of {AB_ROUNDS} (M rows/s; ratio to dedup=False)"
    _ab_table(title, workloads, best, lambda w: N, benchmark)


def test_dedup_cost_ab_replay_batches(benchmark):
    """The same A/B on the batches the replay hands the pipeline (``telcoanalytics replay``'s
    synthetic day at ``BENCH_AB_ELEMENTS`` elements, default 2,000: many small batches and one
    large one per source every 5 min), as generated (0.05 % corrupted rows, a few duplicate CDRs)
    and clean (only the rows the default accepts, so every mode does the same quarantine work)."""
    from telcoanalytics.pipeline.replay import DEFAULTS, SyntheticSource

    settings = dict(DEFAULTS, elements=AB_ELEMENTS)
    src = SyntheticSource(settings, say=lambda *a: None)
    topo = src.topology
    raw: dict = {}
    for s, b in src:
        raw.setdefault(s, []).append(np.array(b))
    clean = {}
    for s, bl in raw.items():
        ing = Ingestor(s, topology=topo)
        clean[s] = [ing.ingest(b).accepted.copy() for b in bl]
    workloads = {f"{s} as generated": (s, raw[s]) for s in raw}
    workloads.update({f"{s} clean": (s, clean[s]) for s in clean})
    n_rows = {w: sum(len(b) for b in bl) for w, (_, bl) in workloads.items()}
    best = benchmark.pedantic(lambda: _ab(workloads, topo, AB_ROUNDS), rounds=1, iterations=1)
    n_b = sum(len(bl) for bl in raw.values())
    title = (
        f"duplicate check A/B on the replay's {n_b:,} batches ({AB_ELEMENTS:,} elements), CPU, best of "
        f"{AB_ROUNDS} (M rows/s; ratio to dedup=False)"
    )
    _ab_table(title, workloads, best, n_rows.get, benchmark)
