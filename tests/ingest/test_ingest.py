"""Ingestor: every quarantine reason, conservation, readers (CSV, Parquet, dicts, records), state."""

import csv
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telcoanalytics.ingest.ingestor import DEFAULT_TIME_RANGE_MS, Ingestor, IngestResult
from telcoanalytics.ingest.quarantine import REASONS, Quarantine
from telcoanalytics.ingest.readers import RawChunk, read_csv
from telcoanalytics.ingest.schema import SchemaError
from telcoanalytics.records import METRIC_CODE, NO_TIME_MS, empty
from telcoanalytics.topology.model import Topology
from tests.reference.ingest import reference_reasons

T0 = 1_700_000_000_000
T0_ISO = "2023-11-14T22:13:20Z"
ELEMENTS = np.arange(1000, 1100, dtype=np.int64)


def valid(source, n, rng):
    """n valid canonical rows of ``source`` on ELEMENTS."""
    a = empty(source, n)
    t = T0 + np.sort(rng.integers(0, 3_600_000, n))
    el = rng.choice(ELEMENTS, n)
    if source == "cdr":
        a["record_id"] = rng.permutation(10 * n + 10)[:n]
        a["start_ms"] = t
        a["end_ms"] = t + rng.integers(0, 300_000, n)
        ans = rng.random(n) < 0.7
        a["answer_ms"] = np.where(ans, np.minimum(t + 3000, a["end_ms"]), NO_TIME_MS)
        a["calling_id"], a["called_id"], a["imsi_hash"] = rng.integers(1, 2**62, (3, n))
        a["element_id"] = el
        a["service"] = rng.integers(0, 4, n)
        a["cause"] = rng.choice([16, 17, 31, 34], n)
        a["bytes_up"], a["bytes_down"] = rng.integers(0, 10**6, (2, n))
    elif source == "equip":
        a["ts_ms"], a["element_id"] = t, el
        a["metric_id"] = rng.integers(0, 6, n)
        a["value"] = rng.random(n) * 100
    elif source == "flow":
        a["ts_ms"], a["src_element_id"], a["dst_element_id"] = t, el, rng.choice(ELEMENTS, n)
        a["bytes"], a["packets"], a["flows"] = rng.integers(0, 10**6, (3, n))
    else:
        a["ts_ms"], a["element_id"] = t, el
        a["latency_ms"], a["jitter_ms"] = rng.random((2, n)) * 50
        a["loss_pct"] = rng.random(n) * 5
        a["mos"] = np.where(rng.random(n) < 0.5, 1 + 4 * rng.random(n), np.nan)
    return a


def topo():
    return Topology.from_columns(ELEMENTS, {"region": ELEMENTS // 50, "site": ELEMENTS // 10})


def assert_records_equal(got, want):
    """Field-wise equality (NaN equals NaN, which structured ``==`` does not give)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    for f in want.dtype.names:
        np.testing.assert_array_equal(got[f], want[f], err_msg=f)


def check_conservation(r: IngestResult):
    assert r.n_accepted + r.n_quarantined == r.n_read
    assert sum(r.by_reason.values()) == r.n_quarantined
    assert len(r.accepted) == r.n_accepted


# ---- one case per reason ------------------------------------------------------------------------
def _set(a, i, field, value):
    a[field][i] = value


CASES = [  # (source, field, value, reason, field reported)
    ("cdr", "start_ms", 0, "time_out_of_range", "start_ms"),
    ("cdr", "end_ms", DEFAULT_TIME_RANGE_MS[1], "time_out_of_range", "end_ms"),
    ("cdr", "end_ms", T0 - 1, "end_before_start", "end_ms"),
    ("cdr", "answer_ms", T0 + 10**9, "answer_outside_call", "answer_ms"),
    ("cdr", "cause", 0, "bad_cause", "cause"),
    ("cdr", "cause", 128, "bad_cause", "cause"),
    ("cdr", "service", 9, "out_of_domain", "service"),
    ("cdr", "service", -1, "out_of_domain", "service"),
    ("cdr", "bytes_down", -5, "negative_counter", "bytes_down"),
    ("cdr", "element_id", 5, "unknown_element", "element_id"),
    ("equip", "value", np.inf, "non_finite", "value"),
    ("equip", "ts_ms", -7, "time_out_of_range", "ts_ms"),
    ("equip", "metric_id", 99, "out_of_domain", "metric_id"),
    ("flow", "packets", -1, "negative_counter", "packets"),
    ("flow", "src_element_id", 99999, "unknown_element", "src_element_id"),
    ("qos", "latency_ms", np.nan, "non_finite", "latency_ms"),
    ("qos", "mos", np.inf, "non_finite", "mos"),
    ("qos", "latency_ms", -1.0, "out_of_domain", "latency_ms"),
    ("qos", "jitter_ms", -1.0, "out_of_domain", "jitter_ms"),
    ("qos", "loss_pct", 100.5, "out_of_domain", "loss_pct"),
    ("qos", "mos", 5.5, "out_of_domain", "mos"),
]


@pytest.mark.parametrize("source,field,value,reason,reported", CASES)
def test_each_reason(source, field, value, reason, reported, rng):
    a = valid(source, 50, rng)
    if source == "cdr" and field == "end_ms" and value == T0 - 1:
        value = a["start_ms"][7] - 1
    if source == "cdr" and field == "answer_ms":
        value = a["end_ms"][7] + 1
    _set(a, 7, field, value)
    ing = Ingestor(source, known_element_ids=ELEMENTS)
    r = ing.ingest(a)
    check_conservation(r)
    assert r.by_reason == {reason: 1} and r.n_accepted == 49
    (rec,) = ing.quarantine.records()
    assert (rec["row"], rec["reason"], rec["field"]) == (7, reason, reported)
    assert_records_equal(r.accepted, np.delete(a, 7))


@pytest.mark.parametrize(
    "metric,value,reason",
    [
        ("cpu_util_pct", 100.5, "out_of_domain"),
        ("prb_util_pct", -0.1, "out_of_domain"),
        ("throughput_mbps", -1.0, "out_of_domain"),
        ("error_count", -1.0, "negative_counter"),
        ("unavailable_s", -3.0, "negative_counter"),
        ("temperature_c", -20.0, None),
    ],
)
def test_equipment_metric_domains(metric, value, reason, rng):
    a = valid("equip", 5, rng)
    a["metric_id"][2] = METRIC_CODE[metric]
    a["value"][2] = value
    r = Ingestor("equip").ingest(a)
    assert r.by_reason == ({reason: 1} if reason else {})


def test_negative_duration_from_legacy_cdr_and_missing_values(rng):
    n = 4
    v1 = {
        "record_id": np.arange(n),
        "start_s": np.full(n, T0 / 1000),
        "duration_s": [10.0, -5.0, 3.0, 1.0],
        "answer_s": [np.nan] * n,
        "calling_id": np.ones(n, int),
        "called_id": np.ones(n, int),
        "cell_id": np.array([1000, 1001, None, 1003], dtype=object),
        "service": ["voice"] * n,
        "cause": [16, 16, 16, "x"],
        "bytes_up": np.zeros(n, int),
        "bytes_down": np.zeros(n, int),
    }
    ing = Ingestor("cdr", known_element_ids=ELEMENTS)
    r = ing.ingest(v1)
    check_conservation(r)
    assert r.schema_version == 1
    assert r.by_reason == {"unparseable": 1, "missing_value": 1, "negative_duration": 1}
    got = {x["row"]: (x["reason"], x["field"]) for x in ing.quarantine.records()}
    assert got == {1: ("negative_duration", "end_ms"), 2: ("missing_value", "cell_id"), 3: ("unparseable", "cause")}
    assert ing.quarantine.records(reason="missing_value")[0]["original"]["cell_id"] is None
    assert r.accepted["end_ms"][0] == T0 + 10_000


def test_duplicates_within_and_across_batches(rng):
    a = valid("cdr", 20, rng)
    a["record_id"][5] = a["record_id"][2]
    ing = Ingestor("cdr")
    r1 = ing.ingest(a)
    assert r1.by_reason == {"duplicate_id": 1}
    assert ing.quarantine.records()[0]["row"] == 5
    b = valid("cdr", 10, rng)
    b["record_id"] = a["record_id"][:10]
    b["cause"][0] = 0  # a corrupt copy counts under its own reason, not as duplicate
    r2 = ing.ingest(b)
    assert r2.by_reason == {"bad_cause": 1, "duplicate_id": 9}
    # a corrupt first copy does not hide the valid later one
    c = valid("cdr", 2, rng)
    c["record_id"] = [10**12, 10**12]
    c["cause"][0] = 0
    r3 = ing.ingest(c)
    assert r3.by_reason == {"bad_cause": 1} and r3.n_accepted == 1
    assert ing.by_reason == {"bad_cause": 2, "duplicate_id": 10}
    assert ing.n_read == 32 and ing.n_accepted == 20 and ing.n_quarantined == 12
    assert "read 32, accepted 20, quarantined 12" in ing.summary()


def test_dedup_horizon_forgets_old_ids(rng):
    ing = Ingestor("cdr", dedup_horizon_ms=60_000)
    a = valid("cdr", 8, rng)  # eight rows: enough to start the robust clock that drives the horizon
    a["start_ms"] = a["end_ms"] = a["start_ms"][0]
    a["answer_ms"] = NO_TIME_MS
    ing.ingest(a)
    a = a[:1]
    b = a.copy()
    for shift in (30_000, 70_000):  # still remembered within one horizon and after one rotation
        b["start_ms"] = b["end_ms"] = a["start_ms"] + shift
        b["answer_ms"] = NO_TIME_MS
        assert ing.ingest(b).by_reason == {"duplicate_id": 1}
    c = valid("cdr", 8, rng)  # eight rows: enough to move the robust clock that drives the horizon
    c["record_id"] = 77 + np.arange(8)
    c["start_ms"] = c["end_ms"] = a["start_ms"] + 10 * 60_000  # jumps two horizons: all forgotten
    c["answer_ms"] = NO_TIME_MS
    ing.ingest(c)
    b["start_ms"] = b["end_ms"] = c["start_ms"][0]
    assert ing.ingest(b).by_reason == {}
    lifetime = Ingestor("cdr", dedup_horizon_ms=None)
    lifetime.ingest(a)
    far = a.copy()
    far["start_ms"] += 10**10
    far["end_ms"] = far["start_ms"]
    far["answer_ms"] = NO_TIME_MS
    assert lifetime.ingest(far).by_reason == {"duplicate_id": 1}


# ---- conservation and exact agreement with the row-by-row reference ------------------------------
CORRUPT = {
    "cdr": [
        ("start_ms", [0, -1, 5 * 10**12]),
        ("end_ms", [0, T0 - 10**6]),
        ("answer_ms", [T0 + 10**8, T0 - 1, -7, -1]),
        ("end_ms", [T0 + 8 * 86_400_000]),  # an eight-day call
        ("cause", [0, 128, -3, 55]),
        ("service", [-1, 4, 3]),
        ("bytes_up", [-1, 10**16]),
        ("bytes_down", [-2, 2**62]),
        ("element_id", [1, 1050]),
        ("record_id", [0, 1, 2]),
    ],
    "equip": [
        ("ts_ms", [0, 4 * 10**12]),
        ("metric_id", [-1, 6, 3, 4]),
        ("value", [np.nan, -np.inf, -1.0, 101.0, 1e308, 200.0, -70.0, 1e13]),
        ("element_id", [7]),
    ],
    "flow": [
        ("ts_ms", [-5]),
        ("bytes", [-1, 10**16]),
        ("packets", [-1, 10**14]),
        ("flows", [-1, 10**11]),
        ("src_element_id", [3]),
    ],
    "qos": [
        ("ts_ms", [0]),
        ("latency_ms", [np.nan, -1.0, np.inf, 1e308, 600_001.0]),
        ("jitter_ms", [-0.5, np.nan, 1e308]),
        ("loss_pct", [-1.0, 100.01, np.nan]),
        ("mos", [np.inf, 0.5, 5.01, np.nan]),
        ("element_id", [2]),
    ],
}


@given(
    source=st.sampled_from(sorted(CORRUPT)),
    seed=st.integers(0, 2**31 - 1),
    n_bad=st.integers(0, 40),
    n_batches=st.integers(1, 3),
)
def test_conservation_and_reference(source, seed, n_bad, n_batches):
    rng = np.random.default_rng(seed)
    ing = Ingestor(source, known_element_ids=ELEMENTS, dedup_horizon_ms=None)  # the reference never forgets
    seen = set()
    tot_read = 0
    for _ in range(n_batches):
        a = valid(source, 60, rng)
        if source == "cdr":
            a["record_id"] = rng.integers(0, 120, 60)  # frequent duplicates, across batches too
        for _ in range(n_bad):
            f, vals = CORRUPT[source][rng.integers(len(CORRUPT[source]))]
            a[f][rng.integers(60)] = vals[rng.integers(len(vals))]
        q0 = len(ing.quarantine)
        r = ing.ingest(a)
        check_conservation(r)
        tot_read += r.n_read
        expect = reference_reasons(source, a, DEFAULT_TIME_RANGE_MS, ELEMENTS, seen=seen)
        ok = np.array([e is None for e in expect])
        assert_records_equal(r.accepted, a[ok])
        recs = ing.quarantine.records()[q0:]
        assert [(x["reason"], x["field"]) for x in recs] == [e for e in expect if e is not None]
        assert [x["row"] for x in recs] == np.flatnonzero(~ok).tolist()
    assert ing.n_read == tot_read == ing.n_accepted + ing.n_quarantined
    assert ing.by_reason == ing.quarantine.counts()


# ---- readers end to end ---------------------------------------------------------------------------
def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.mark.parametrize("engine", ["python", "arrow"])
def test_csv_with_garbage_text_ragged_rows_and_blank_lines(tmp_path, engine):
    p = tmp_path / "qos_v1.csv"
    rows = [[f"{T0 / 1000 + i}", "1000", "12.5", "1.0", "0.01"] for i in range(12)]
    rows[2][2] = "12,5ms"  # garbage number (quoted by the writer)
    rows[4][4] = ""  # missing
    rows[5] = []  # blank line: a row of empty values
    rows[6] = rows[6][:3]  # too few fields
    rows[7] = rows[7] + ["9"]  # too many fields
    rows[8][2] = "nan"  # non-finite
    rows[9][1] = " 1000 "  # padded number: fine
    _write_csv(p, ["ts_s", "element_id", "delay_ms", "jitter_ms", "loss_ratio"], rows)
    ing = Ingestor("qos", known_element_ids=ELEMENTS)
    res = [ing.ingest_chunk(c) for c in read_csv(p, chunk_rows=4, engine=engine)]
    assert [r.n_read for r in res] == [4, 4, 4] and [r.row_offset for r in res] == [0, 4, 8]
    for r in res:
        check_conservation(r)
        assert r.schema_version == 1
    assert ing.by_reason == {"unparseable": 3, "missing_value": 2, "non_finite": 1}
    recs = {x["row"]: x for x in ing.quarantine.records()}
    assert sorted(recs) == [2, 4, 5, 6, 7, 8]
    assert recs[2]["original"]["delay_ms"] == "12,5ms" and recs[2]["field"] == "delay_ms"
    assert recs[6]["field"] == "<line>" and recs[6]["original"]["<line>"].count(",") == 2
    assert recs[7]["field"] == "<line>" and recs[7]["original"]["<line>"].endswith(",9")
    assert recs[5]["reason"] == "missing_value" and recs[8]["reason"] == "non_finite"
    acc = np.concatenate([r.accepted for r in res])
    np.testing.assert_allclose(acc["loss_pct"], 1.0, rtol=1e-12)  # 0.01 x 100, one rounding
    assert acc["ts_ms"].tolist() == [T0 + 1000 * i for i in (0, 1, 3, 9, 10, 11)]


def test_csv_engines_agree_on_a_corrupted_file(tmp_path, rng):
    a = valid("cdr", 3000, rng)
    lines = [",".join(a.dtype.names)] + [",".join(str(v) for v in row) for row in a.tolist()]
    for i in rng.choice(np.arange(1, len(lines)), 60, replace=False):
        kind = rng.integers(4)
        f = lines[i].split(",")
        if kind == 0:
            f[rng.integers(len(f))] = "x!"
        elif kind == 1:
            f[rng.integers(len(f))] = ""
        elif kind == 2:
            f = f[:-1]
        else:
            f = []
        lines[i] = ",".join(f)
    p = tmp_path / "cdr.csv"
    p.write_text("\n".join(lines) + "\n")
    out = {}
    for engine in ("python", "arrow"):
        ing = Ingestor("cdr")
        res = [ing.ingest_chunk(c) for c in read_csv(p, chunk_rows=700, engine=engine)]
        out[engine] = (np.concatenate([r.accepted for r in res]), ing.quarantine.records(), ing.by_reason)
        assert sum(r.n_read for r in res) == 3000
    assert_records_equal(out["python"][0], out["arrow"][0])
    assert out["python"][1] == out["arrow"][1] and out["python"][2] == out["arrow"][2]
    assert sum(out["python"][2].values()) == 60
    with pytest.raises(ValueError, match="engine must be one of"):
        list(read_csv(p, engine="fast"))


def test_csv_chunks_row_numbers_gzip_and_tsv(tmp_path, rng):
    import gzip

    a = valid("flow", 2500, rng)
    a["bytes"][[5, 1234, 2499]] = -1
    header = list(a.dtype.names)
    p = tmp_path / "flow.csv.gz"
    with gzip.open(p, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(a.tolist())
    ing = Ingestor("flow")
    results = list(ing.ingest_file(p, chunk_rows=1000))
    assert [r.n_read for r in results] == [1000, 1000, 500]
    assert [r.row_offset for r in results] == [0, 1000, 2000]
    assert [x["row"] for x in ing.quarantine.records()] == [5, 1234, 2499]
    assert_records_equal(np.concatenate([r.accepted for r in results]), np.delete(a, [5, 1234, 2499]))
    t = tmp_path / "flow.tsv"
    with open(t, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(header)
        w.writerows(a[:3].tolist())
    assert Ingestor("flow").ingest(t).n_accepted == 3


def test_parquet_round_trip_nulls_and_chunks(tmp_path, rng):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    a = valid("cdr", 12_000, rng)
    a["cause"][[3, 11_999]] = 200
    table = pa.table({f: a[f] for f in a.dtype.names})
    # v2 layout from the same data: renamed columns, imsi as digit strings, a null answer
    v2 = pa.table(
        {
            "record_id": a["record_id"],
            "start_ms": a["start_ms"],
            "answer_ms": pa.array(np.where(a["answer_ms"] < 0, None, a["answer_ms"]).tolist(), pa.int64()),
            "end_ms": a["end_ms"],
            "calling_id": a["calling_id"],
            "called_id": a["called_id"],
            "imsi": pa.array([str(x) for x in a["imsi_hash"]]),
            "element_id": a["element_id"],
            "service_id": pa.array(a["service"]).dictionary_encode(),
            "release_cause": a["cause"],
            "bytes_up": a["bytes_up"],
            "bytes_down": a["bytes_down"],
        }
    )
    pq.write_table(table, tmp_path / "cdr.parquet", row_group_size=5_000)
    pq.write_table(v2, tmp_path / "cdr_v2.parquet", row_group_size=5_000)
    expect = np.delete(a, [3, 11_999])
    for name, version in (("cdr.parquet", 3), ("cdr_v2.parquet", 2)):
        ing = Ingestor("cdr", known_element_ids=ELEMENTS)
        res = list(ing.ingest_file(tmp_path / name, chunk_rows=3_000))
        assert max(r.n_read for r in res) <= 3_000 and sum(r.n_read for r in res) == 12_000
        assert {r.schema_version for r in res} == {version}
        for r in res:
            check_conservation(r)
        assert_records_equal(np.concatenate([r.accepted for r in res]), expect)
        assert [x["row"] for x in ing.quarantine.records()] == [3, 11_999]
    # a null in a required column is a missing value, shown as null in the quarantine
    t = pa.table(
        {
            "ts_ms": pa.array([T0, None], pa.int64()),
            "element_id": [1, 2],
            "latency_ms": [1.0, 2.0],
            "jitter_ms": [1.0, 1.0],
            "loss_pct": [0.0, 0.0],
        }
    )
    pq.write_table(t, tmp_path / "q.parquet")
    ing = Ingestor("qos")
    r = ing.ingest(tmp_path / "q.parquet")
    assert r.by_reason == {"missing_value": 1}
    assert ing.quarantine.records()[0]["original"]["ts_ms"] is None
    # arrow objects are accepted directly, in chunks
    r = Ingestor("cdr").ingest(table, chunk_rows=5_000)
    assert r.n_read == 12_000 and r.by_reason == {"bad_cause": 2}
    r = Ingestor("cdr").ingest(table.to_batches()[0])
    assert r.n_read == len(table.to_batches()[0])
    assert Ingestor("cdr").ingest(table.slice(0, 0)).n_read == 0
    eq = pa.table(
        {
            "timestamp": [T0_ISO],
            "ne_id": ["1000"],
            "counter": pa.array(["cpu_util_pct"]).dictionary_encode(),
            "value": [1.0],
        }
    )
    r = Ingestor("equip").ingest(eq)
    assert r.schema_version == 1 and r.accepted["ts_ms"].tolist() == [T0] and r.n_accepted == 1


@pytest.mark.slow
def test_large_parquet_file_in_bounded_chunks(tmp_path):
    """1M rows in 100k-row chunks: every chunk bounded, totals and quarantine rows exact."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(5)
    a = valid("equip", 1_000_000, rng)
    bad = np.sort(rng.choice(len(a), 500, replace=False))
    a["value"][bad] = np.nan
    pq.write_table(pa.table({f: a[f] for f in a.dtype.names}), tmp_path / "big.parquet", row_group_size=250_000)
    ing = Ingestor("equip", topology=topo(), dedup=False)  # random rows repeat keys by chance
    sizes, total_acc = [], 0
    for r in ing.ingest_file(tmp_path / "big.parquet", chunk_rows=100_000):
        check_conservation(r)
        sizes.append(r.n_read)
        total_acc += r.n_accepted
        assert len(r.element_index) == r.n_accepted
    assert max(sizes) == 100_000 and sum(sizes) == 1_000_000
    assert total_acc == 1_000_000 - 500 and ing.by_reason == {"non_finite": 500}
    assert [x["row"] for x in ing.quarantine.records()] == bad.tolist()


def test_in_memory_inputs(rng):
    a = valid("qos", 6, rng)
    a["loss_pct"][1] = 200.0
    recs = [{f: a[f][i].item() for f in a.dtype.names} for i in range(6)]
    del recs[3]["mos"]  # optional: absent means not measured
    recs[4]["latency_ms"] = None  # required: missing
    recs[5]["jitter_ms"] = [1.0, 2.0]  # not a number
    recs[0]["element_id"] = [1000]  # not a number either (a one-element list)
    ing = Ingestor("qos")
    r = ing.ingest(iter(recs))
    assert r.by_reason == {"unparseable": 2, "missing_value": 1, "out_of_domain": 1}
    assert len(r.accepted) == 2 and math.isnan(r.accepted["mos"][1])
    d = {f: a[f] for f in a.dtype.names}
    r2 = Ingestor("qos").ingest(d, chunk_rows=4)
    assert r2.n_read == 6 and r2.by_reason == {"out_of_domain": 1}
    pd = pytest.importorskip("pandas")
    r3 = Ingestor("qos").ingest(pd.DataFrame(d))
    assert_records_equal(r3.accepted, r2.accepted)
    r4 = Ingestor("qos").ingest(a.astype([(f, "f8") if f != "element_id" else (f, "i4") for f in a.dtype.names]))
    assert r4.n_accepted == 5  # retyped canonical columns take the generic path
    r5 = Ingestor("qos").ingest(a, chunk_rows=2)
    assert r5.n_read == 6 and r5.row_offset == 0


def test_empty_inputs():
    for data in (
        [],
        empty("flow"),
        {
            "ts_ms": np.zeros(0, np.int64),
            "src_element_id": [],
            "dst_element_id": [],
            "bytes": [],
            "packets": [],
            "flows": [],
        },
    ):
        r = Ingestor("flow").ingest(data)
        assert r.n_read == 0 and len(r.accepted) == 0 and r.accepted.dtype.names == empty("flow").dtype.names
    assert Ingestor("flow", topology=topo()).ingest([]).element_index.shape == (0,)


def test_topology_element_index_and_changes(rng):
    tp = topo()
    a = valid("qos", 200, rng)
    a["element_id"][10] = 42
    ing = Ingestor("qos", topology=tp, dedup=False)  # the same rows are ingested twice below
    r = ing.ingest(a)
    assert r.by_reason == {"unknown_element": 1}
    np.testing.assert_array_equal(r.element_index, tp.index_of(r.accepted["element_id"]))
    tp2, _ = tp.add_elements([42], parent_ids=[int(ELEMENTS[0] // 10)])
    ing.topology = tp2  # the next call follows the new topology version
    r2 = ing.ingest(a)
    assert r2.by_reason == {} and r2.element_index[10] == tp2.index_of([42])[0]
    # sparse (hashed) element ids take the sorted-lookup path
    big = np.array([2**40 + 7, -5, 2**50], dtype=np.int64)
    tp3 = Topology.from_columns(big, {"region": [1, 1, 2]})
    b = valid("qos", 3, rng)
    b["element_id"] = [2**50, 3, -5]
    r3 = Ingestor("qos", topology=tp3).ingest(b)
    assert r3.by_reason == {"unknown_element": 1}
    np.testing.assert_array_equal(r3.element_index, [2, 1])
    r4 = Ingestor("qos", known_element_ids=np.zeros(0, np.int64)).ingest(b)
    assert r4.by_reason == {"unknown_element": 3}


def test_state_round_trip(rng):
    ing = Ingestor("cdr", known_element_ids=ELEMENTS, schema_version=3, time_range_ms=(T0 - 10, T0 + 10**8))
    a = valid("cdr", 100, rng)
    a["cause"][0] = 0
    ing.ingest(a)
    st_ = ing.to_state()
    assert all(isinstance(v, (np.ndarray, int, str)) for v in st_.values())
    back = Ingestor.from_state(st_)
    assert back.by_reason == ing.by_reason and back.n_read == 100 and back.time_range_ms == ing.time_range_ms
    assert back.quarantine.records() == ing.quarantine.records()
    r = back.ingest(a[50:])  # the restored dedup set remembers the ids
    assert r.by_reason == {"duplicate_id": 50}
    plain = Ingestor.from_state(Ingestor("qos", dedup=False).to_state())
    assert plain.dedup is None and plain.n_read == 0
    lean = ing.to_state(include_quarantine=False)
    assert not any(k.startswith("quarantine_") for k in lean)
    back2 = Ingestor.from_state(lean)
    assert len(back2.quarantine) == 0 and back2.by_reason == ing.by_reason


def test_shared_quarantine_and_ingest_chunk(rng):
    q = Quarantine()
    a = valid("flow", 5, rng)
    a["flows"][0] = -1
    Ingestor("flow", quarantine=q).ingest(a)
    Ingestor("qos", quarantine=q).ingest_chunk(
        RawChunk(
            {
                "ts_ms": np.array([0]),
                "element_id": np.array([1]),
                "latency_ms": np.array([1.0]),
                "jitter_ms": np.array([1.0]),
                "loss_pct": np.array([1.0]),
            },
            1,
        )
    )
    assert q.counts_by_source() == {"flow": {"negative_counter": 1}, "qos": {"time_out_of_range": 1}}


# ---- errors -------------------------------------------------------------------------------------
def test_errors(tmp_path, rng):
    with pytest.raises(ValueError, match="unknown source 'voip'"):
        Ingestor("voip")
    with pytest.raises(ValueError, match="either topology or known_element_ids"):
        Ingestor("qos", topology=topo(), known_element_ids=ELEMENTS)
    with pytest.raises(ValueError, match="lo < hi"):
        Ingestor("qos", time_range_ms=(5, 5))
    with pytest.raises(ValueError, match="pair"):
        Ingestor("qos", time_range_ms=5)
    with pytest.raises(SchemaError, match="unknown qos schema version 9"):
        Ingestor("qos", schema_version=9)
    with pytest.raises(SchemaError, match=r"\['bogus'\] cannot be mapped"):
        Ingestor("qos").ingest(
            {**{f: [1] for f in ("ts_ms", "element_id", "latency_ms", "jitter_ms", "loss_pct")}, "bogus": [1]}
        )
    r = Ingestor("qos", allow_extra_columns=True).ingest(
        {"ts_ms": [T0], "element_id": [1], "latency_ms": [1.0], "jitter_ms": [1.0], "loss_pct": [1.0], "bogus": ["x"]}
    )
    assert r.n_accepted == 1
    with pytest.raises(ValueError, match="unsupported input int"):
        Ingestor("qos").ingest(5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Ingestor("qos").ingest(tmp_path / "nope.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot tell the format"):
        Ingestor("qos").ingest(tmp_path / "x.json")
    with pytest.raises(ValueError, match="chunk_rows must be a positive int"):
        list(Ingestor("qos").ingest_file(tmp_path / "x.json", chunk_rows=0, fmt="csv"))
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match="empty CSV file"):
        Ingestor("qos").ingest(tmp_path / "e.csv")
    (tmp_path / "d.csv").write_text("a,a\n1,2\n")
    with pytest.raises(ValueError, match=r"repeats column\(s\) \['a'\]"):
        Ingestor("qos").ingest(tmp_path / "d.csv")
    with pytest.raises(ValueError, match="different lengths"):
        Ingestor("qos").ingest({"a": [1, 2], "b": [1]})
    with pytest.raises(ValueError, match="not one-dimensional"):
        Ingestor("qos").ingest({"a": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="no columns"):
        Ingestor("qos").ingest({})
    with pytest.raises(ValueError, match="record 1 is a int"):
        Ingestor("qos").ingest([{"a": 1}, 5])
    with pytest.raises(ValueError, match="1-D NumPy structured array"):
        Ingestor("qos").ingest(np.zeros(3))


def test_all_reasons_documented():
    import telcoanalytics.ingest.ingestor as ingest_mod

    for reason in REASONS:
        assert reason in ingest_mod.__doc__
