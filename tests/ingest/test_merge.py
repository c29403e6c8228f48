"""Event-time merge of file sources: order, chunk independence, resume, and the file replay of a
generated day against the in-memory replay of the same day."""

import json
from pathlib import Path

import numpy as np
import pytest

from telcoanalytics.ingest.merge import MergedBatches, merged_batches
from telcoanalytics.ingest.schema import SchemaError

T0 = 1_700_000_000_000


def _write_equip(path: Path, ts: np.ndarray, start_id: int = 0) -> None:
    lines = ["ts_ms,element_id,metric_id,value"]
    lines += [f"{t},{start_id + i},0,{i % 90}.5" for i, t in enumerate(ts.tolist())]
    path.write_text("\n".join(lines) + "\n")


def _collect(it):
    """(source, origin, row, event time) of every row handed out, in order, and the batches."""
    out, batches = [], 0
    for source, chunk in it:
        batches += 1
        t = np.asarray(chunk.column("ts_ms")).astype(np.int64)
        out += [(source, chunk.origin, int(r), int(x)) for r, x in zip(chunk.rows(), t)]
    return out, batches


@pytest.fixture
def disordered(tmp_path):
    """Two equipment files in arrival order: event times with jitter, some late rows, one far future row."""
    rng = np.random.default_rng(5)
    paths = []
    for k in range(2):
        n = 3000
        arrival = T0 + np.sort(rng.integers(0, 3_600_000, n))
        ts = arrival - rng.integers(0, 20_000, n)  # up to 20 s out of order
        late = rng.random(n) < 0.01
        ts[late] -= 1_800_000  # half an hour late
        ts[100 + 500 * k] = T0 + 400 * 86_400_000  # a year ahead
        p = tmp_path / f"equip_{k}.csv"
        _write_equip(p, ts, 1000 * k)
        paths.append(p)
    return paths


def test_merge_orders_by_event_time_and_keeps_every_row(disordered):
    rows, batches = _collect(merged_batches({"equip": disordered}, chunk_rows=257, max_disorder_ms=30_000))
    assert len(rows) == 6000 and len({(o, r) for _, o, r, _ in rows}) == 6000
    t = np.array([x for *_, x in rows])
    late = t < np.maximum.accumulate(t) - 30_000 - 60_000  # behind the released slot
    # only the rows really delivered late (30 min) and none of the in-order ones come out behind
    assert 0 < late.sum() <= 0.02 * len(t)
    # the rows a year ahead (one per file) did not hold the others back: they come out last
    assert (t[-2:] == T0 + 400 * 86_400_000).all() and t[-3] < T0 + 2 * 3_600_000
    assert batches >= 60  # one-minute event-time batches


@pytest.mark.parametrize("chunk_rows", [1, 64, 1000, 10**6])
def test_merge_output_does_not_depend_on_chunk_rows_or_file_order(disordered, chunk_rows):
    ref, _ = _collect(merged_batches({"equip": disordered}, chunk_rows=333))
    got, _ = _collect(merged_batches({"equip": disordered[::-1]}, chunk_rows=chunk_rows))
    assert got == ref


def test_merge_resume_hands_out_every_row_exactly_once(disordered):
    full, _ = _collect(merged_batches({"equip": disordered}, chunk_rows=500))
    for stop in (0, 1, 17, 60, 95):
        it = merged_batches({"equip": disordered}, chunk_rows=500)
        first = []
        for _ in range(stop):
            source, chunk = next(it)
            t = np.asarray(chunk.column("ts_ms")).astype(np.int64)
            first += [(source, chunk.origin, int(r), int(x)) for r, x in zip(chunk.rows(), t)]
        pos = json.loads(json.dumps(it.position()))  # JSON-able, and survives a round trip
        rest, _ = _collect(merged_batches({"equip": disordered}, chunk_rows=128, start=pos))
        assert sorted(first + rest) == sorted(full)
        assert len(first) + len(rest) == len(full)


def test_merge_resume_checks_the_position(disordered):
    it = merged_batches({"equip": disordered}, chunk_rows=500)
    next(it)
    pos = it.position()
    with pytest.raises(ValueError, match="same files"):
        merged_batches({"equip": disordered[:1]}, start=pos)
    with pytest.raises(ValueError, match="same values"):
        merged_batches({"equip": disordered}, max_disorder_ms=5, start=pos)
    with pytest.raises(ValueError, match="position"):
        merged_batches({"equip": disordered}, start={"files": {}})


def test_merge_argument_errors(tmp_path, disordered):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        merged_batches({"equip": [tmp_path / "nope.csv"]})
    with pytest.raises(ValueError, match="unknown source"):
        merged_batches({"radio": disordered})
    with pytest.raises(ValueError, match="listed twice"):
        merged_batches({"equip": [disordered[0], disordered[0]]})
    with pytest.raises(ValueError, match="batch_ms"):
        merged_batches({"equip": disordered}, batch_ms=0)
    bad = tmp_path / "qos.csv"
    bad.write_text("when,where\n1,2\n")
    with pytest.raises(SchemaError, match="qos.csv"):
        list(merged_batches({"qos": bad}))


def test_merge_releases_rows_without_a_time_and_ingest_quarantines_them(tmp_path):
    from telcoanalytics.ingest.ingestor import Ingestor

    p = tmp_path / "equip.csv"
    ts = T0 + np.arange(200) * 1000
    _write_equip(p, ts)
    text = p.read_text().splitlines()
    text[50] = "soon,49,0,1.0"
    text[120] = "1,2"  # ragged
    p.write_text("\n".join(text) + "\n")
    ing = Ingestor("equip")
    n = 0
    for _, chunk in merged_batches({"equip": p}, chunk_rows=7):
        n += ing.ingest_chunk(chunk).n_read
    assert n == 200 and ing.n_accepted == 198 and ing.by_reason == {"unparseable": 2}
    assert sorted(r["row"] for r in ing.quarantine.records()) == [49, 119]  # line index - 1 (the header)


# ---- the file replay of a generated day equals its in-memory replay ---------------------------------
def _replay(day, batches, out: Path):
    """Replay ``batches`` through every component; the anomaly baselines are first learned from the
    day's first hours (the same start state for every replay)."""
    from telcoanalytics.pipeline.components import build_alert_manager, build_components
    from telcoanalytics.pipeline.pipeline import Pipeline

    out.mkdir(parents=True, exist_ok=True)
    topo = day.topology
    p = Pipeline(topo, components=build_components(topo), alerts=build_alert_manager(topo, out))
    p.components["anomaly"].learn(day, day.start_ms + 3 * 3_600_000)
    p.feed(batches)
    p.advance(p.max_event_ms + 1)
    p.finish()
    return p


def findings(p) -> dict:
    """What a replay found, in comparable form."""
    c = p.components
    an = np.concatenate(c["anomaly"].rows) if c["anomaly"].rows else None
    eps = [] if an is None else [(int(r["element_id"]), str(r["metric"]), str(r["classification"])) for r in an]
    alerts = [json.loads(x) for x in (Path(p.alerts.sinks[0].path).read_text().splitlines())]
    return {
        "counts": p.counts(),
        "quarantine": p.quarantine.counts_by_source(),
        "sla": sorted((e.rule, e.scope_level, int(e.scope_id), e.state, int(e.t_ms)) for e in c["sla"].events),
        # episodes other than silences and collection gaps: exactly the same
        "episodes": sorted(e for e in eps if e[2] not in ("silence", "collection_gap")),
        # elements found silent (alone or in a collection gap)
        "silent": sorted({e[0] for e in eps if e[2] in ("silence", "collection_gap")}),
        # the alerts paged at all (names and scopes, silences and gaps aside as above). When an incident
        # notifies (and whether a member joining an already-notified incident pages again) depends on
        # the advance schedule: minutes of event time for files, of arrival time in memory
        "alerts": sorted(
            {
                (a["labels"].get("alertname"), a["labels"].get("element", a["labels"].get("site", "")))
                for a in alerts
                if a["labels"].get("classification") not in ("silence", "collection_gap")
            }
        ),
    }


@pytest.fixture(scope="module")
def generated_day(tmp_path_factory):
    from telcoanalytics.synth.network import SynthConfig, generate

    day = generate(SynthConfig(n_elements=1500, days=0.2, seed=3))
    base = tmp_path_factory.mktemp("day")
    manifest = {fmt: day.write(base / fmt, fmt=fmt) for fmt in ("csv", "parquet")}
    mem = findings(_replay(day, day.raw_batches(), base / "out_mem"))
    return day, base, manifest, mem


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt,chunk_rows,reverse", [("parquet", 997, False), ("parquet", 10**6, True), ("csv", 20_000, True)]
)
def test_file_replay_equals_in_memory_replay(generated_day, fmt, chunk_rows, reverse):
    day, base, manifest, mem = generated_day
    order = list(day.sources)[::-1] if reverse else list(day.sources)
    files = {s: base / fmt / f"{s}.{fmt}" for s in order}
    got = findings(_replay(day, merged_batches(files, chunk_rows=chunk_rows), base / f"out_{fmt}"))
    if fmt == "csv":  # the CSV writer adds rows with text that is not a number: quarantined as unparseable
        for s in day.sources:
            extra = manifest["csv"]["files"][s]["unparseable"]
            assert got["quarantine"][s].pop("unparseable") == extra
            got["counts"][s]["read"] -= extra
            got["counts"][s]["quarantined"] -= extra
    assert got["counts"] == mem["counts"]
    assert got["quarantine"] == mem["quarantine"]
    assert len(mem["sla"]) > 20 and got["sla"] == mem["sla"]
    assert len(mem["episodes"]) > 10 and got["episodes"] == mem["episodes"]
    assert got["silent"] == mem["silent"]
    assert len(mem["alerts"]) > 20 and got["alerts"] == mem["alerts"]


def test_merged_batches_is_an_iterator(disordered):
    it = merged_batches({"equip": disordered[0]})
    assert isinstance(it, MergedBatches) and iter(it) is it
    assert it.position()["files"][str(disordered[0])]["consumed"] == 0
