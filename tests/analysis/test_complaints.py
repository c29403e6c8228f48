"""Complaints: the new source through ingest (schema, checks, quarantine), the synthetic complaint
stream following degradations with a lag, placement by location, counts against NumPy."""

import numpy as np
import pandas as pd
import pytest

from telcoanalytics.analysis.complaints import (
    complaint_counts,
    complaint_cube_spec,
    complaint_table,
    locate_complaints,
)
from telcoanalytics.cube import Cube
from telcoanalytics.ingest import Ingestor
from telcoanalytics.records import COMPLAINT_CATEGORIES, COMPLAINT_CATEGORY_CODE, SOURCES, empty
from telcoanalytics.synth import generate
from telcoanalytics.synth.complaints import LAG_MEDIAN_MS


@pytest.fixture(scope="module")
def day():
    return generate(n_elements=900, n_regions=2, days=1, seed=4, complaints=2.0)


def test_complaint_is_a_source():
    assert "complaint" in SOURCES
    e = empty("complaint", 2)
    assert np.isnan(e["lat"]).all() and np.isnan(e["lon"]).all()


def test_ingest_checks_and_quarantine(day):
    rows = day.complaint[:6].copy()
    rows["category"][1] = 42
    rows["ts_ms"][2] = 5
    rows["lat"][3], rows["lon"][3] = 95.0, 10.0
    rows["lat"][4], rows["lon"][4] = 50.0, np.nan
    rows["element_id"][5] = 123
    ing = Ingestor("complaint", topology=day.topology)
    res = ing.ingest(rows)
    assert res.n_accepted == 1
    assert ing.by_reason == {"out_of_domain": 3, "time_out_of_range": 1, "unknown_element": 1}
    q = ing.quarantine.to_table() if hasattr(ing.quarantine, "to_table") else None
    assert ing.n_quarantined == 5 and (q is None or len(q) == 5)


def test_ingest_crm_export_schema():
    df = pd.DataFrame(
        {
            "ticket_id": [1, 2],
            "created_at": ["2026-03-02T10:00:00Z", "2026-03-02T11:30:00"],
            "cell_id": [5, None],
            "category": ["slow_data", "billing"],
            "latitude": [None, 48.1],
            "longitude": [None, 11.5],
        }
    )
    res = Ingestor("complaint").ingest(df)
    a = res.accepted
    assert res.n_accepted == 2
    assert a["ts_ms"].tolist() == [1_772_445_600_000, 1_772_451_000_000]
    assert a["element_id"].tolist() == [5, -1]
    assert a["category"].tolist() == [COMPLAINT_CATEGORY_CODE["slow_data"], COMPLAINT_CATEGORY_CODE["billing"]]
    assert np.isnan(a["lat"][0]) and a["lat"][1] == 48.1


def test_synthetic_complaints_follow_degradations_with_a_lag(day):
    c = day.complaint
    assert len(c) > 100 and np.all(np.diff(c["ts_ms"]) >= 0)
    assert (c["ts_ms"] >= day.start_ms).all() and (c["ts_ms"] < day.end_ms).all()
    assert len(np.unique(c["complaint_id"])) == len(c)
    # complaints at scenario elements: more after the scenario starts (lag) than before it
    after = before = 0
    for det in day.scenarios:
        if det["scenario"] in ("congestion", "degradation", "failure"):
            at = np.isin(c["element_id"], det["element_ids"])
            s, e = det["start_ms"], det["end_ms"]
            after += int((at & (c["ts_ms"] >= s) & (c["ts_ms"] < e + 3 * LAG_MEDIAN_MS)).sum())
            before += int((at & (c["ts_ms"] >= s - (e - s) - 3 * LAG_MEDIAN_MS) & (c["ts_ms"] < s)).sum())
    assert after > 3 * max(before, 1)


def test_complaint_stream_is_additive():
    kw = dict(n_elements=400, n_regions=2, days=0.25, seed=9)
    a, b = generate(**kw), generate(**kw, complaints=1.0)
    assert a.sources == ("cdr", "equip", "flow", "qos") and b.sources[-1] == "complaint"
    assert len(a.complaint) == 0 and a.raw("complaint")[0].shape == (0,)
    for s in a.sources:
        assert a[s].tobytes() == b[s].tobytes()
    ra = [(s, r.tobytes()) for s, r in a.raw_batches(60_000)]
    rb = [(s, r.tobytes()) for s, r in b.raw_batches(60_000) if s != "complaint"]
    assert ra == rb
    arrived = sum(len(r) for s, r in b.raw_batches(60_000) if s == "complaint")
    assert arrived == b.stats["n_arrived"]["complaint"] > len(b.complaint)  # + corrupted rows


def test_counts_and_table_against_numpy(day):
    ids, bins, counts = complaint_counts(day.complaint, day.topology, level="region", bin_ms=3_600_000)
    c = day.complaint
    t = day.topology_table
    region_of = dict(zip(t["element_id"], t["region_id"]))
    reg = np.array([region_of[e] for e in c["element_id"]])
    for i, r in enumerate(ids):
        for k in range(len(COMPLAINT_CATEGORIES)):
            m = (reg == r) & (c["category"] == k)
            ref = np.bincount((c["ts_ms"][m] - bins[0]) // 3_600_000, minlength=len(bins))
            np.testing.assert_array_equal(counts[i, k], ref)
    tab = complaint_table(c, day.topology)
    assert tab["count"].sum() == len(c) and np.all(np.diff(tab["count"]) <= 0)
    cube = Cube(complaint_cube_spec(), day.topology)
    cube.update(c)
    q = cube.query(("region", "category"))
    got = {(int(r["region"]), str(r["category"])): int(r["count"]) for r in q}
    want = {(int(r["region_id"]), str(r["category"])): int(r["count"]) for r in tab}
    assert got == want
    with pytest.raises(ValueError, match="bin_ms"):
        complaint_counts(c, day.topology, bin_ms=0)
    with pytest.raises(ValueError, match="end_ms"):
        complaint_counts(c, day.topology, start_ms=10, end_ms=5)
    with pytest.raises(ValueError, match="COMPLAINT_DTYPE"):
        complaint_counts(np.zeros(3), day.topology)
    with pytest.raises(ValueError, match="lack"):
        complaint_counts(np.zeros(3, dtype=[("ts_ms", "i8")]), day.topology)
    e_ids, _, e_counts = complaint_counts(c[:0], day.topology, level="site")
    assert e_counts.sum() == 0 and len(e_ids) == day.topology.n_nodes("site")


def test_locate_by_location(day):
    c = day.complaint.copy()
    loc = np.isfinite(c["lat"])
    truth = c["element_id"][loc].copy()
    c["element_id"][loc] = -1
    noloc = np.flatnonzero(~loc)[:3]
    c["element_id"][noloc] = -1  # no location: stays unplaced
    n_none = len(noloc)
    out, placed, left = locate_complaints(c, day.topology_table)
    assert placed == int(loc.sum()) and left == n_none
    t = day.topology_table
    site = dict(zip(t["element_id"], t["site_id"]))
    same_site = np.mean([site[a] == site[b] for a, b in zip(out["element_id"][loc], truth)])
    assert same_site > 0.4  # ~1 km of location noise against dense urban sites
    far, n_far, left_far = locate_complaints(c[loc][:5], day.topology_table, max_km=1e-6)
    assert n_far == 0 and left_far == 5 and (far["element_id"] == -1).all()
    with pytest.raises(ValueError, match="macro or small"):
        locate_complaints(c, t[t["equipment_class"] > 1])
