"""Quarantine store: counts, records, writers, state, merge, limits, errors."""

import json

import numpy as np
import pytest

from telcoanalytics.ingest.quarantine import REASON_CODE, REASONS, Quarantine


def _add(q, source="qos", rows=(0, 5), reasons=("non_finite", "out_of_domain"), batch=0):
    k = len(rows)
    q.add(
        source,
        rows=np.array(rows),
        reasons=np.array([REASON_CODE[r] for r in reasons]),
        fields=np.array(["latency_ms"] * k, dtype=object),
        columns={"latency_ms": np.array([np.nan, -1.0, 2.0][:k]), "note": np.array(["a", None, "c"][:k], dtype=object)},
        batch=batch,
    )


def test_reason_codes_are_complete_and_ordered():
    assert len(REASONS) == 13 and REASONS[0] == "unparseable" and REASONS[-2:] == ("duplicate_id", "time_in_future")
    assert [REASON_CODE[r] for r in REASONS] == list(range(1, 14))


def test_add_counts_records():
    q = Quarantine()
    _add(q)
    _add(q, source="cdr", rows=(7,), reasons=("duplicate_id",), batch=3)
    assert len(q) == 3 and q.n_kept == 3
    assert q.counts() == {"non_finite": 1, "out_of_domain": 1, "duplicate_id": 1}
    assert q.counts("qos") == {"non_finite": 1, "out_of_domain": 1}
    assert q.counts_by_source() == {"cdr": {"duplicate_id": 1}, "qos": {"non_finite": 1, "out_of_domain": 1}}
    recs = q.records(reason="out_of_domain")
    assert recs == [
        {
            "source": "qos",
            "batch": 0,
            "row": 5,
            "reason": "out_of_domain",
            "field": "latency_ms",
            "original": {"latency_ms": "-1.0", "note": None},
        }
    ]
    assert q.records(source="cdr")[0]["batch"] == 3
    assert q.records()[0]["original"]["latency_ms"] == "nan"
    assert "3 rows" in repr(q)
    _add(q, rows=(), reasons=())  # empty add is a no-op
    assert len(q) == 3


def test_add_errors():
    q = Quarantine()
    with pytest.raises(ValueError, match="same length"):
        q.add("qos", rows=np.array([1, 2]), reasons=np.array([1]), fields=np.array(["a"], dtype=object), columns={})
    with pytest.raises(ValueError, match=r"reason codes must be in 1\.\.13"):
        q.add("qos", rows=np.array([1]), reasons=np.array([14]), fields=np.array(["a"], dtype=object), columns={})
    with pytest.raises(ValueError, match="unknown reason 'late'"):
        q.records(reason="late")
    with pytest.raises(ValueError, match="max_kept"):
        Quarantine(max_kept=-1)


def test_max_kept_counts_everything():
    q = Quarantine(max_kept=2)
    _add(q, rows=(0, 1, 2), reasons=("non_finite",) * 3)
    _add(q, rows=(3,), reasons=("non_finite",))
    assert len(q) == 4 and q.n_kept == 2 and q.n_not_kept == 2
    assert q.counts() == {"non_finite": 4}


def test_write_jsonl_and_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    q = Quarantine()
    _add(q)
    n = q.write_jsonl(tmp_path / "q.jsonl")
    lines = (tmp_path / "q.jsonl").read_text().splitlines()
    assert n == 2 and json.loads(lines[1])["original"] == {"latency_ms": "-1.0", "note": None}
    assert q.write_parquet(tmp_path / "q.parquet") == 2
    t = pq.read_table(tmp_path / "q.parquet").to_pydict()
    assert t["row"] == [0, 5] and t["reason"] == ["non_finite", "out_of_domain"]
    assert json.loads(t["original"][0]) == {"latency_ms": "nan", "note": "a"}


def test_state_round_trip_and_merge():
    q = Quarantine(max_kept=10)
    _add(q)
    _add(q, source="cdr", rows=(7,), reasons=("duplicate_id",), batch=3)
    r = Quarantine.from_state(q.to_state())
    assert r.records() == q.records() and r.counts() == q.counts() and r.max_kept == 10
    assert Quarantine.from_state(Quarantine().to_state()).counts() == {}
    m = Quarantine(max_kept=4)
    _add(m, rows=(0, 1, 2), reasons=("unparseable",) * 3)
    m.merge(q)
    assert len(m) == 6 and m.n_kept == 4 and m.n_not_kept == 2
    assert m.counts() == {"unparseable": 3, "non_finite": 1, "out_of_domain": 1, "duplicate_id": 1}
    u = Quarantine().merge(q)
    assert u.records() == q.records()


def test_text_of_original_values():
    from telcoanalytics.ingest.quarantine import _text

    assert _text(b"ab") == "ab" and _text(np.int64(3)) == "3" and _text(True) == "True"
    assert _text(np.float64(np.inf)) == "inf" and _text(2.5) == "2.5"
    assert _text(np.datetime64(0, "ms")) == "1970-01-01T00:00:00.000" and _text([1]) == "[1]"


# ---- bounded originals --------------------------------------------------------------------------
def _checkpoint_bytes(q, tmp_path, name) -> int:
    p = tmp_path / f"{name}.npz"
    np.savez(p, **q.to_state())
    return p.stat().st_size


@pytest.mark.parametrize("engine", ["arrow", "python"])
def test_checkpoint_size_does_not_depend_on_bad_row_content(tmp_path, engine):
    from telcoanalytics.ingest.ingestor import Ingestor
    from telcoanalytics.ingest.quarantine import MAX_VALUE_CHARS, TRUNCATED_MARK
    from telcoanalytics.ingest.readers import read_csv

    sizes = {}
    for label, big in (("small", "x" * 10), ("huge", "y" * 1_000_000)):
        lines = ["ts_ms,element_id,metric_id,value"]
        lines += [f"1700000000000,{i},0,n/a" for i in range(1002)]  # 1,002 unparseable rows
        lines.append(f"1700000000000,5,0,{big}")  # and one with a huge value
        p = tmp_path / f"{label}.csv"
        p.write_text("\n".join(lines) + "\n")
        ing = Ingestor("equip")
        for chunk in read_csv(p, chunk_rows=400, engine=engine):
            ing.ingest_chunk(chunk)
        q = ing.quarantine
        assert len(q) == 1003 and q.counts() == {"unparseable": 1003}
        last = q.records()[-1]["original"]["value"]
        sizes[label] = _checkpoint_bytes(q, tmp_path, label)
        if label == "huge":
            assert len(last) < MAX_VALUE_CHARS + 40 and TRUNCATED_MARK in last and last.endswith(" chars]")
            back = Quarantine.from_state(q.to_state())
            assert back.records() == q.records()
    assert sizes["huge"] - sizes["small"] < 2 * MAX_VALUE_CHARS  # one truncated value, not 1 MB per row
    assert sizes["huge"] < 300_000


def test_ragged_line_text_is_truncated_too(tmp_path):
    from telcoanalytics.ingest.ingestor import Ingestor
    from telcoanalytics.ingest.quarantine import TRUNCATED_MARK

    p = tmp_path / "q.csv"
    p.write_text("ts_ms,element_id,metric_id,value\n1,2\n" + ",".join(["9"] * 100_000) + "\n")
    ing = Ingestor("equip")
    for _, chunk in enumerate(__import__("telcoanalytics.ingest.readers", fromlist=["x"]).read_csv(p)):
        ing.ingest_chunk(chunk)
    recs = ing.quarantine.records()
    assert [r["reason"] for r in recs] == ["unparseable", "unparseable"]
    assert TRUNCATED_MARK in recs[1]["original"]["<line>"]


def test_rows_from_several_files_name_their_file_and_row(tmp_path):
    """Two files feed one source through the event-time merge: each quarantined row names its
    file and its data row within that file, in records, the table, Parquet and a checkpoint."""
    import json

    from telcoanalytics.ingest import Ingestor, merged_batches
    from telcoanalytics.ingest.quarantine import ORIGIN_COLUMN

    t0 = 1_700_000_000_000
    a, b = tmp_path / "equip_a.csv", tmp_path / "equip_b.csv"
    head = "ts_ms,element_id,metric_id,value\n"
    a.write_text(head + "".join(f"{t0 + 1000 * i},1,0,{'x' if i == 3 else i}\n" for i in range(10)))
    b.write_text(head + "".join(f"{t0 + 1000 * i + 500},2,0,{'nan' if i == 7 else i}\n" for i in range(10)))
    ing = Ingestor("equip")
    for _, chunk in merged_batches({"equip": [b, a]}, chunk_rows=4):
        ing.ingest_chunk(chunk)
    recs = sorted(ing.quarantine.records(), key=lambda r: r["file"])
    assert [(r["file"], r["row"], r["reason"]) for r in recs] == [
        (str(a), 3, "unparseable"),
        (str(b), 7, "non_finite"),
    ]
    assert ORIGIN_COLUMN not in recs[0]["original"]
    assert sorted(ing.quarantine.table()["file"].tolist()) == [str(a), str(b)]
    back = Quarantine.from_state(ing.quarantine.to_state())
    assert sorted(r["file"] for r in back.records()) == [str(a), str(b)]
    ing.quarantine.write_parquet(tmp_path / "q.parquet")
    import pyarrow.parquet as pq

    assert sorted(pq.read_table(tmp_path / "q.parquet")["file"].to_pylist()) == [str(a), str(b)]
    # rows not read from a file carry no file; a store that only passes the columns on keeps it
    q = Quarantine()
    q.merge(ing.quarantine)
    assert json.dumps(q.records(), sort_keys=True) == json.dumps(ing.quarantine.records(), sort_keys=True)
    with pytest.raises(ValueError, match="one file per row"):
        q.add("equip", [1, 2], [1, 1], ["x", "x"], {ORIGIN_COLUMN: np.array(["f"], dtype=object)})
    mem = Ingestor("qos")
    from telcoanalytics.records import empty

    r = empty("qos", 1)
    r["ts_ms"], r["latency_ms"] = t0, np.inf
    assert mem.ingest(r).by_reason == {"non_finite": 1}
    assert "file" not in mem.quarantine.records()[0]


def test_the_pipelines_streaming_quarantine_writes_the_file(tmp_path):
    """The replay's quarantine.jsonl (a store that forwards the columns) names the file too."""
    import json

    from telcoanalytics.ingest import Ingestor
    from telcoanalytics.pipeline.run import OutputLog, streaming_quarantine

    p = tmp_path / "equip.csv"
    p.write_text("ts_ms,element_id,metric_id,value\n1700000000000,1,0,x\n1700000000000,1,0,1\n")
    log = OutputLog(tmp_path / "q.jsonl")
    ing = Ingestor("equip", quarantine=streaming_quarantine(log))
    list(ing.ingest_file(p))
    log.sync()
    (rec,) = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert (rec["file"], rec["row"], rec["reason"]) == (str(p), 0, "unparseable")
