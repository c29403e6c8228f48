"""Cube accuracy against DuckDB (GROUP BY GROUPING SETS / CUBE) and query semantics."""

import os

import numpy as np
import pytest

from telcoanalytics.cube import Cube, CubeSet, CubeSpec, hll_relative_error, to_pandas
from telcoanalytics.cube.dims import CAUSE_CLASSES
from telcoanalytics.records import EQUIPMENT_CLASSES, SERVICES
from tests.reference.cube import T0_MS, duckdb_grouping_sets, make_cdr, make_topology

NO_JIT = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
# Plain-Python kernels loop over every register / bucket of a merged cell: keep sketches small.
HLL_P = 4 if NO_JIT else 12
Q_ALPHA = 0.25 if NO_JIT else 0.01
N = 800 if NO_JIT else 20000

DIMS4 = ["region", "service", "equipment_class", "hour_of_day"]


def oracle_columns(topo, cdr):
    """The rows the cube keeps (known elements) with label columns, computed independently."""
    eidx = topo.index_of(cdr["element_id"])
    ok = eidx >= 0
    r, e = cdr[ok], eidx[ok]
    return {
        "region": topo.ids["region"][topo.element_to("region")[e]],
        "site": topo.ids["site"][topo.element_to("site")[e]],
        "element": r["element_id"],
        "service": np.array(SERVICES)[r["service"]],
        "equipment_class": np.array(EQUIPMENT_CLASSES)[topo.attributes["equipment_class"][e]],
        "hour_of_day": (r["start_ms"] // 3_600_000) % 24,
        "duration_ms": (r["end_ms"] - r["start_ms"]).astype(np.float64),
        "bytes_down": r["bytes_down"].astype(np.float64),
        "imsi_hash": r["imsi_hash"],
        "start_ms": r["start_ms"],
    }, int((~ok).sum())


def full_spec(**kw):
    args = dict(
        dimensions=DIMS4,
        measures=[
            "count",
            "sum:duration_ms",
            "min:duration_ms",
            "max:duration_ms",
            "mean:duration_ms",
            "var:duration_ms",
            "std:duration_ms",
            "sum:bytes_down",
            "min:bytes_down",
            "max:bytes_down",
            "distinct:imsi_hash",
            "p50:duration_ms",
            "p95:duration_ms",
        ],
        hll_p=HLL_P,
        quantile_alpha=Q_ALPHA,
        quantile_max=1e8,
    )
    args.update(kw)
    return CubeSpec(**args)


def assert_matches_oracle(cube, cols, sets):
    truth = duckdb_grouping_sets(
        cols,
        sets,
        ["duration_ms", "bytes_down"],
        quantiles=[("duration_ms", 0.5), ("duration_ms", 0.95)],
        distinct=["imsi_hash"],
    )
    sigma = hll_relative_error(cube.spec.hll_p)
    alpha = cube.spec.quantile_alpha
    hll_errs = []
    for s in sets:
        res = cube.query(s)
        exp = truth[tuple(s)]
        assert len(res) == len(exp), f"cuboid {s}: {len(res)} groups vs DuckDB {len(exp)}"
        for row in res:
            key = tuple(row[d].item() if hasattr(row[d], "item") else row[d] for d in s)
            e = exp[key]
            assert row["count"] == e["count"], (s, key)
            for f in ("duration_ms", "bytes_down"):
                assert row[f"min_{f}"] == e[f"min_{f}"] and row[f"max_{f}"] == e[f"max_{f}"], (s, key, f)
                # float64 sums in a different order: relative error ~ n * eps << 1e-12
                np.testing.assert_allclose(row[f"sum_{f}"], e[f"sum_{f}"], rtol=1e-12)
            np.testing.assert_allclose(row["mean_duration_ms"], e["mean_duration_ms"], rtol=1e-12)
            # Welford / Chan vs DuckDB's own streaming variance: both stable, agree to ~1e-12
            if e["count"] >= 2:
                np.testing.assert_allclose(row["var_duration_ms"], e["var_duration_ms"], rtol=1e-9)
                np.testing.assert_allclose(row["std_duration_ms"], np.sqrt(e["var_duration_ms"]), rtol=1e-9)
            else:
                assert np.isnan(row["var_duration_ms"])
            for q in (50, 95):
                v = e[f"q_duration_ms_{q * 10}"]
                # the sketch's guarantee: within relative alpha of the nearest-rank order statistic
                assert abs(row[f"p{q}_duration_ms"] - v) <= alpha * v * (1 + 1e-9) + 1e-9, (s, key, q)
            d = e["distinct_imsi_hash"]
            err = row["distinct_imsi_hash"] - d
            # 4 sigma per group (thousands of groups are checked); tiny groups may lose one
            # value to a register collision, hence the absolute slack of 1.5
            assert abs(err) <= max(4 * sigma * d, 1.5), (s, key, d, row["distinct_imsi_hash"])
            if d >= 100:
                hll_errs.append(err / d)
    hll_errs = np.array(hll_errs)
    # the RMS relative error of the larger groups is near the stated sigma
    assert len(hll_errs) == 0 or np.sqrt(np.mean(hll_errs**2)) <= 1.5 * sigma


def test_all_16_cuboids_match_duckdb_cube(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N, unknown_frac=0.01)
    cube = Cube(full_spec(), topo)
    assert len(cube.cuboids) == 16
    reps = [cube.update(part) for part in np.array_split(cdr, 3)]
    cols, n_bad = oracle_columns(topo, cdr)
    assert sum(r.n_rejected for r in reps) == n_bad > 0
    assert all(set(r.rejected_by_dim) <= {"region", "equipment_class"} for r in reps)
    assert sum(len(r.rejected_rows) for r in reps) == n_bad
    assert cube.n_rows == len(cdr) - n_bad and cube.n_rejected == n_bad
    sets = [c.dims for c in cube.cuboids]
    assert_matches_oracle(cube, cols, sets)


def test_hierarchy_and_grouping_sets_match_duckdb(rng):
    """Roll-up along element > site > region answered from element-level grouping sets."""
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N)
    spec = full_spec(
        dimensions=["region", "site", "element", "service", "equipment_class", "hour_of_day"],
        cuboids=[("element", "service", "hour_of_day"), ("site", "hour_of_day"), ()],
    )
    cube = Cube(spec, topo)
    cube.update(cdr)
    # (element, service, hour) stores element only once; region/site/class derive from it
    assert cube.cuboids[0].keys.dims == ("element", "service", "hour_of_day")
    cols, _ = oracle_columns(topo, cdr)
    sets = [
        ("region",),
        ("site",),
        ("region", "service"),
        ("equipment_class", "hour_of_day"),
        ("site", "hour_of_day"),
        ("element", "service"),
        (),
    ]
    assert_matches_oracle(cube, cols, sets)
    # the smallest materialised ancestor answers
    assert cube.answering_cuboid(["site"]) == 1
    assert cube.answering_cuboid(["region", "service"]) == 0
    assert cube.answering_cuboid([]) == 2


def test_dense_and_hashed_layouts_identical(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N // 2)
    a = Cube(full_spec(), topo)
    b = Cube(full_spec(dense_limit=0), topo)
    assert all(c.table.dense for c in a.cuboids) and not any(c.table.dense for c in b.cuboids)
    for part in np.array_split(cdr, 2):
        a.update(part)
        b.update(part)
    for s in [c.dims for c in a.cuboids]:
        ra, rb = a.query(s), b.query(s)
        assert ra.dtype == rb.dtype
        for nm in ra.dtype.names:
            # same additions in the same order per cell: bit-identical
            np.testing.assert_array_equal(ra[nm], rb[nm], err_msg=f"{s} {nm}")


def test_slice_dice_range_topk_pivot_drill(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N)
    cube = Cube(
        CubeSpec(
            dimensions=["region", "site", "element", "service", "cause_class", "hour"],
            measures=["count", "sum:dropped", "sum:answered"],
            cuboids=[("element", "service", "cause_class", "hour"), ("region",)],
        ),
        topo,
    )
    cube.update(cdr)
    cols, _ = oracle_columns(topo, cdr)
    svc = cols["service"]
    # slice: one service; the dimension leaves the group-by
    v = cube.view().group_by("region", "service").slice(service="voice")
    assert v.by == ("region",)
    res = v.result()
    for row in res:
        assert row["count"] == np.sum((cols["region"] == row["region"]) & (svc == "voice"))
    # dice with a set and a time range on labels (bucket start ms)
    lo, hi = T0_MS + 3_600_000 * 5, T0_MS + 3_600_000 * 9
    d = cube.view().group_by("hour").dice(service={"voice", "sms"}, hour=(lo, hi)).result()
    assert list(d["hour"]) == list(range(lo, hi, 3_600_000))
    for row in d:
        m = np.isin(svc, ["voice", "sms"]) & (cols["start_ms"] // 3_600_000 * 3_600_000 == row["hour"])
        assert row["count"] == m.sum()
    # open ranges
    assert cube.query((), where={"hour": (None, lo)})["count"][0] == np.sum(cols["start_ms"] < lo)
    assert cube.query((), where={"hour": (hi, None)})["count"][0] == np.sum(cols["start_ms"] >= hi)
    # derived time and cause dimensions
    day = cube.query(("day",))
    assert list(day["count"]) == list(np.unique(cols["start_ms"] // 86_400_000, return_counts=True)[1])
    cc = cube.query(("cause_class",))
    assert set(cc["cause_class"]) <= set(CAUSE_CLASSES) and cc["count"].sum() == len(svc)
    # drill-down then roll-up back
    base = cube.view().group_by("region")
    dd = base.drill_down("site").result()
    assert dd["count"].sum() == len(svc)
    ru = base.drill_down("site").roll_up("site").result()
    np.testing.assert_array_equal(ru["count"], base.result()["count"])
    ru2 = cube.view().group_by("site").roll_up("site", to="region").result()
    np.testing.assert_array_equal(ru2["count"], base.result()["count"])
    # top-k: the k largest groups, best first
    top = cube.view().group_by("site").top_k("count", 3)
    allsites = cube.query(("site",))
    assert list(top["count"]) == sorted(allsites["count"], reverse=True)[:3]
    low = cube.view().group_by("site").top_k("count", 2, ascending=True)
    assert list(low["count"]) == sorted(allsites["count"])[:2]
    assert len(cube.view().group_by("region").top_k("count", 99)) == 3
    # pivot
    pv = cube.view().pivot("region", "service", "count")
    assert pv.values.shape == (3, 4) and np.nansum(pv.values) == len(svc)
    r0 = pv.rows[0]
    assert pv.values[0, list(pv.columns).index("sms")] == np.sum((cols["region"] == r0) & (svc == "sms"))
    # pandas conversion
    df = to_pandas(res)
    assert list(df.columns) == list(res.dtype.names)
    assert len(cube.view().group_by("region").to_pandas()) == 3


def test_time_roll_ups_from_minutes(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N, days=9)
    cube = Cube(CubeSpec(dimensions=["minute", "service"], measures=["count"], cuboids=[("minute", "service")]), topo)
    cube.update(cdr)
    t = cdr["start_ms"]
    for dim, key in [
        ("hour", t // 3_600_000 * 3_600_000),
        ("day", t // 86_400_000 * 86_400_000),
        ("hour_of_day", (t // 3_600_000) % 24),
        ("day_of_week", ((t // 86_400_000 + 3) % 7)),
    ]:
        res = cube.query((dim,))
        vals, counts = np.unique(key, return_counts=True)
        if dim == "day_of_week":
            vals = np.array(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])[vals]
        np.testing.assert_array_equal(res[dim], vals)
        np.testing.assert_array_equal(res["count"], counts)


def test_cubeset_shares_codes_and_updates_all(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N // 2)
    specs = {f"c{i}": CubeSpec(dimensions=DIMS4[: 1 + i % 4], measures=["count", "sum:duration_ms"]) for i in range(21)}
    cs = CubeSet(specs, topo)
    assert len(cs) == 21 and list(cs)[0] == "c0"
    reps = cs.update(cdr)
    assert set(reps) == set(specs)
    for nm in cs:
        assert cs[nm].query(())["count"][0] == len(cdr)
    assert cs.nbytes > 0
    with pytest.raises(KeyError, match="no cube"):
        cs["nope"]
