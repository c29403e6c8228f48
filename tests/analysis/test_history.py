"""Compact Parquet history: roll-ups against pandas, the day-partitioned layout read back by
DuckDB, repeated writes combining exactly, comparisons over periods, cubes, errors."""

import numpy as np
import pandas as pd
import pytest

from telcoanalytics.analysis.history import MS_DAY, MS_HOUR, History, rollup
from telcoanalytics.analysis.localize import localize_spec
from telcoanalytics.cube import Cube
from telcoanalytics.synth import generate

T0 = 1_772_409_600_000  # Monday 2026-03-02 00:00 UTC


def _rows(rng, n=5000, days=3):
    t = T0 + rng.integers(0, days * MS_DAY, n)
    e = rng.integers(0, 20, n) + 1000
    m = rng.integers(0, 3, n)
    v = rng.normal(50, 10, n)
    v[rng.random(n) < 0.05] = np.nan
    return t, e, m, v


def test_rollup_matches_pandas(rng):
    t, e, m, v = _rows(rng)
    r = rollup(t, {"element_id": e, "metric_id": m}, {"v": v}, MS_HOUR)
    df = pd.DataFrame({"b": t // MS_HOUR * MS_HOUR, "e": e, "m": m, "v": v})
    g = df.groupby(["b", "e", "m"])["v"].agg(["count", "sum", "min", "max"]).reset_index()
    assert len(g) == len(r["bucket_ms"])
    np.testing.assert_array_equal(r["bucket_ms"], g["b"])
    np.testing.assert_array_equal(r["element_id"], g["e"])
    np.testing.assert_array_equal(r["v_count"], g["count"])
    np.testing.assert_allclose(r["v_sum"], g["sum"], rtol=1e-12)  # sums of ~10 values, order differs
    np.testing.assert_array_equal(r["v_min"], g["min"])
    np.testing.assert_array_equal(r["v_max"], g["max"])
    empty = rollup(t[:0], {"element_id": e[:0]}, {"v": v[:0]})
    assert len(empty["bucket_ms"]) == 0 and len(empty["v_min"]) == 0


def test_write_read_layout_and_duckdb(tmp_path, rng):
    duckdb = pytest.importorskip("duckdb")
    t, e, m, v = _rows(rng)
    h = History(tmp_path)
    assert h.write_series("metrics", t, {"element_id": e, "metric_id": m}, {"v": v}) == 6  # 3 days x 2 resolutions
    days = sorted(p.name for p in (tmp_path / "metrics" / "resolution=day").iterdir())
    assert days == ["day=2026-03-02", "day=2026-03-03", "day=2026-03-04"]
    con = duckdb.connect()
    q = con.execute(
        f"SELECT day, sum(v_sum), sum(v_count), min(v_min) FROM read_parquet('{tmp_path}/metrics/resolution=hour/*/*.parquet', "
        "hive_partitioning=true) GROUP BY day ORDER BY day"
    ).fetchall()
    d = h.read("metrics", "day")
    ok = ~np.isnan(v)
    for i, (day, s, c, mn) in enumerate(q):
        sel = (t // MS_DAY == T0 // MS_DAY + i) & ok
        assert str(day) == days[i][4:]
        assert s == pytest.approx(v[sel].sum(), rel=1e-12) and c == sel.sum() and mn == v[sel].min()
        dd = d["bucket_ms"] == T0 + i * MS_DAY
        assert d["v_sum"][dd].sum() == pytest.approx(s, rel=1e-12)
    assert h.tables() == ["metrics"] and h.nbytes() > 0
    assert 0 < h.bytes_per_element_day("metrics") < 1e5


def test_repeated_writes_combine_and_filters(tmp_path, rng):
    t, e, m, v = _rows(rng)
    h = History(tmp_path)
    half = len(t) // 2
    h.write_series("x", t[:half], {"element_id": e[:half]}, {"v": v[:half]})
    h.write_series("x", t[half:], {"element_id": e[half:]}, {"v": v[half:]})
    got = h.read("x", "hour")
    ref = rollup(t, {"element_id": e}, {"v": v})
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-12, err_msg=k)
    one = h.read(
        "x", "hour", start=T0 + MS_DAY, end=np.datetime64("2026-03-03T12:00"), where={"element_id": [1003, 1004]}
    )
    assert set(one["element_id"].tolist()) <= {1003, 1004}
    assert one["bucket_ms"].min() >= T0 + MS_DAY and one["bucket_ms"].max() < T0 + MS_DAY + 12 * MS_HOUR
    none = h.read("x", "day", start=T0 + 30 * MS_DAY)
    assert len(none["bucket_ms"]) == 0 and "v_sum" in none


def test_compare_periods(tmp_path, rng):
    t, e, m, v = _rows(rng, n=20000, days=14)
    v = np.where(t >= T0 + 7 * MS_DAY, v * 1.2, v)  # second week 20% higher
    h = History(tmp_path)
    h.write_series("w", t, {"element_id": e}, {"v": v})
    c = h.compare("w", "v", "element_id", (T0, T0 + 7 * MS_DAY), (T0 + 7 * MS_DAY, T0 + 14 * MS_DAY))
    for i, el in enumerate(c["element_id"]):
        a = v[(e == el) & (t < T0 + 7 * MS_DAY)]
        b = v[(e == el) & (t >= T0 + 7 * MS_DAY)]
        assert c["mean_a"][i] == pytest.approx(np.nanmean(a), rel=1e-12)
        assert c["mean_b"][i] == pytest.approx(np.nanmean(b), rel=1e-12)
    assert np.median(c["change"]) == pytest.approx(0.2, abs=0.05)


def test_cube_history(tmp_path):
    day = generate(n_elements=300, n_regions=1, days=1, seed=2)
    cube = Cube(localize_spec(), day.topology)
    cube.update(day.cdr)
    h = History(tmp_path)
    h.write_cube("calls", cube, ["element"], ["count", "sum:dropped"])
    ref = cube.query(("element",), measures=["count", "sum:dropped"])
    d = h.read("calls", "day")
    order = np.argsort(d["element"])
    np.testing.assert_array_equal(d["element"][order], ref["element"])
    np.testing.assert_array_equal(d["count_sum"][order], ref["count"])
    np.testing.assert_allclose(d["sum_dropped_sum"][order], ref["sum_dropped"], rtol=1e-12)
    assert h.bytes_per_element_day("calls", key="element") > 0
    with pytest.raises(ValueError, match="additive"):
        h.write_cube("c2", cube, ["element"], ["mean:duration_ms"])
    with pytest.raises(ValueError, match="integer-labelled"):
        h.write_cube("c2", cube, ["service"], ["count"])


def test_errors(tmp_path, rng):
    h = History(tmp_path)
    t, e, m, v = _rows(rng, n=10)
    with pytest.raises(ValueError, match="name"):
        h.write_series("../x", t, {"element_id": e}, {"v": v})
    with pytest.raises(ValueError, match="resolution"):
        h.read("x", "minute")
    with pytest.raises(ValueError, match="no history table"):
        h.read("x")
    with pytest.raises(ValueError, match="integer"):
        rollup(t, {"element_id": e.astype(float)}, {"v": v})
    with pytest.raises(ValueError, match="shape"):
        rollup(t, {"element_id": e}, {"v": v[:3]})
    with pytest.raises(ValueError, match="bin_ms"):
        rollup(t, {"element_id": e}, {"v": v}, 0)
    h.write_series("x", t, {"element_id": e}, {"v": v})
    with pytest.raises(ValueError, match="no key"):
        h.read("x", where={"site": 1})
    assert History(tmp_path / "none").tables() == [] and np.isnan(History(tmp_path / "none").bytes_per_element_day())


def test_wide_keys_and_empty_combines(tmp_path, rng):
    t, e, m, v = _rows(rng, n=200)
    wide = e.astype(np.int64) * (1 << 40)  # key ranges beyond one packed int64: the lexsort path
    r = rollup(t, {"a": wide, "b": wide + 1}, {"v": v})
    ref = rollup(t, {"a": e, "b": e}, {"v": v})
    np.testing.assert_array_equal(r["v_count"], ref["v_count"])
    h = History(tmp_path)
    h.write_series("x", t, {"element_id": e}, {"v": v})
    h.write_series("x", t, {"element_id": e}, {"v": v})  # two parts per day: combined on read
    assert len(h.read("x", "day", where={"element_id": -5})["v_sum"]) == 0
    (tmp_path / "hourly_only" / "resolution=hour").mkdir(parents=True)
    assert h.bytes_per_element_day() > 0  # a table without daily roll-ups is skipped
