"""Cube properties: order / batch-split independence, merge == one pass, budget, retention,
concurrency, checkpoints, custom dimensions, and every error raised."""

import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.cube import Cube, CubeBudgetError, CubeSet, CubeSpec, Measure, explore_spec, explore_summary
from telcoanalytics.cube.dims import BatchContext, Derivation, Dimension, builtin_dimension
from telcoanalytics.cube.spec import rollup
from telcoanalytics.records import CDR_DTYPE
from tests.reference.cube import DAY_MS, T0_MS, make_cdr, make_topology

NO_JIT = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
SMALL = dict(hll_p=4, quantile_alpha=0.25, quantile_max=1e8)
MEASURES = [
    "count",
    "sum:duration_ms",
    "min:duration_ms",
    "max:duration_ms",
    "var:duration_ms",
    "mean:setup_ms",
    "distinct:imsi_hash",
    "p90:duration_ms",
]


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(7)
    topo = make_topology(rng, n_elements=40, n_sites=8, n_regions=3)
    cdr = make_cdr(rng, topo, 600, unknown_frac=0.02)
    return topo, cdr


def spec_small(**kw):
    args = dict(
        dimensions=["region", "element", "service", "hour_of_day"],
        measures=MEASURES,
        cuboids=[("element", "service", "hour_of_day"), ("region", "service"), ()],
        **SMALL,
    )
    args.update(kw)
    return CubeSpec(**args)


def results(cube):
    return {c.dims: cube.query(c.dims) for c in cube.cuboids}


def assert_same(ra, rb, exact_float=False):
    for dims in ra:
        a, b = ra[dims], rb[dims]
        assert a.dtype == b.dtype and len(a) == len(b), dims
        for nm in a.dtype.names:
            if a[nm].dtype.kind == "f" and not exact_float and nm.split("_")[0] in ("sum", "mean", "var"):
                # float sums in another order: a few ulps
                np.testing.assert_allclose(a[nm], b[nm], rtol=1e-12, equal_nan=True, err_msg=nm)
            else:
                # counts, min, max, HLL registers and sketch buckets do not depend on order
                np.testing.assert_array_equal(a[nm], b[nm], err_msg=f"{dims} {nm}")


@given(seed=st.integers(0, 2**31 - 1), n_parts=st.integers(1, 5))
@settings(max_examples=5 if NO_JIT else 25)
def test_row_order_and_batch_split_change_nothing(world, seed, n_parts):
    topo, cdr = world
    one = Cube(spec_small(), topo)
    one.update(cdr)
    rng = np.random.default_rng(seed)
    shuffled = cdr[rng.permutation(len(cdr))]
    cuts = np.sort(rng.integers(0, len(cdr), n_parts - 1))
    other = Cube(spec_small(), topo)
    for part in np.split(shuffled, cuts):
        other.update(part)
    assert_same(results(one), results(other))
    assert other.n_rejected == one.n_rejected > 0


@given(cut=st.integers(0, 600), dense=st.booleans())
@settings(max_examples=5 if NO_JIT else 25)
def test_merge_equals_one_pass(world, cut, dense):
    topo, cdr = world
    kw = {} if dense else {"dense_limit": 0}
    one = Cube(spec_small(**kw), topo)
    one.update(cdr)
    a, b = Cube(spec_small(**kw), topo), Cube(spec_small(**kw), topo)
    a.update(cdr[:cut])
    b.update(cdr[cut:])
    a.merge(b)
    assert_same(results(one), results(a))
    assert a.n_rows == one.n_rows and a.n_rejected == one.n_rejected


def test_merge_rejects_other_specs(world):
    topo, _ = world
    a = Cube(spec_small(), topo)
    with pytest.raises(ValueError, match="same dimensions"):
        a.merge(Cube(spec_small(measures=["count"]), topo))
    with pytest.raises(ValueError, match="same dimensions"):
        a.merge("not a cube")


def test_budget_exceeded_raises_and_changes_nothing(world):
    topo, cdr = world
    cube = Cube(spec_small(cell_budget=120), topo)
    cube.update(cdr[:20])
    before = results(cube)
    n_before = cube.n_cells
    with pytest.raises(CubeBudgetError, match="cell_budget of 120.*nothing was applied"):
        cube.update(cdr)
    assert cube.n_cells == n_before and cube.n_rows == 20 - np.sum(topo.index_of(cdr["element_id"][:20]) < 0)
    assert_same(before, results(cube), exact_float=True)
    # merge over budget: also unchanged
    other = Cube(spec_small(cell_budget=10_000), topo)
    other.update(cdr)
    with pytest.raises(CubeBudgetError):
        cube.merge(other)
    assert_same(before, results(cube), exact_float=True)
    # a cube set checks every cube before changing any
    cs = CubeSet({"big": spec_small(), "tiny": spec_small(cell_budget=5)}, topo)
    with pytest.raises(CubeBudgetError, match="'tiny'"):
        cs.update(cdr)
    assert cs["big"].n_cells == 0


def test_retention_drops_old_buckets(world):
    topo, _ = world
    rng = np.random.default_rng(3)
    cdr = make_cdr(rng, topo, 800, days=1.0)
    cdr = cdr[np.argsort(cdr["start_ms"])]
    spec = CubeSpec(
        dimensions=["hour", "service", "region"],
        measures=["count", "sum:duration_ms"],
        cuboids=[("hour", "service"), ("hour", "region")],
        retention_ms=3 * 3_600_000,
    )
    cube = Cube(spec, topo)
    expired = expected = 0
    t_max = -1
    for part in np.array_split(cdr, 8):
        rep = cube.update(part)
        expired += rep.n_expired
        h = part["start_ms"] // 3_600_000
        t_max = max(t_max, h.max())
        expected += np.sum(h <= t_max - 3)  # already outside the retention once applied
    last_hour = cdr["start_ms"].max() // 3_600_000
    keep = cdr["start_ms"] // 3_600_000 > last_hour - 3
    res = cube.query(("hour",))
    assert list(res["hour"] // 3_600_000) == list(range(last_hour - 2, last_hour + 1))
    assert res["count"].sum() == keep.sum()
    assert cube.query(("region",))["count"].sum() == keep.sum()
    assert expired == expected > 0
    # a late batch of old calls is applied then rolled out, and reported
    late = cdr[:5]
    rep = cube.update(late)
    assert rep.n_expired == 5 and cube.n_expired == expected + 5
    assert cube.query(("hour",))["count"].sum() == keep.sum()
    # rolling the clock forward empties the cube
    cube.roll(int(cdr["start_ms"].max()) + DAY_MS)
    assert cube.n_cells == 0
    # merging two retention cubes applies the later clock to both
    other = Cube(spec, topo)
    other.update(cdr[:10])
    other.merge(cube)
    assert other.n_cells == 0 and other._t_max == cube._t_max
    # state round trip keeps the retention clock
    c2 = Cube.from_state(cube.to_state())
    assert c2._t_max == cube._t_max


def test_retention_errors(world):
    topo, _ = world
    with pytest.raises(ValueError, match="needs a time-bucket dimension"):
        Cube(CubeSpec(dimensions=["service"], retention_ms=1000), topo)
    with pytest.raises(ValueError, match="must contain 'minute'"):
        Cube(CubeSpec(dimensions=["minute", "service"], cuboids=[("minute",), ("service",)], retention_ms=60_000), topo)
    with pytest.raises(ValueError, match="not a time-bucket dimension"):
        Cube(CubeSpec(dimensions=["minute", "service"], retention_ms=60_000, time_dimension="service"), topo)
    Cube(spec_small(), topo).roll(0)  # no retention: no-op


def test_readers_see_only_whole_batches(world):
    """A reader thread polling totals during ingestion only ever sees sums of whole batches."""
    topo, _ = world
    rng = np.random.default_rng(11)
    n_batches = 6 if NO_JIT else 40
    batches = [make_cdr(rng, topo, 150) for _ in range(n_batches)]
    cs = CubeSet(
        {
            "a": CubeSpec(dimensions=["region", "service"], measures=["count", "sum:duration_ms"]),
            "b": CubeSpec(dimensions=["site", "hour_of_day"], measures=["count"]),
        },
        topo,
    )
    prefix_counts = set(np.cumsum([0] + [len(b) for b in batches]).tolist())
    seen, bad, done = [], [], threading.Event()

    def reader():
        while not done.is_set():
            with cs.snapshot():  # a consistent snapshot across the two cubes
                ca = int(cs["a"].query(())["count"].sum()) if cs["a"].n_cells else 0
                cb = int(cs["b"].query(())["count"].sum()) if cs["b"].n_cells else 0
            with cs["a"].snapshot():
                by_region = cs["a"].query(("region",))["count"].sum() if cs["a"].n_cells else 0
            seen.append(ca)
            if ca not in prefix_counts or ca != cb or by_region not in prefix_counts:
                bad.append((ca, cb, by_region))

    t = threading.Thread(target=reader)
    t.start()
    for b in batches:
        cs.update(b)
    done.set()
    t.join()
    assert not bad, bad[:5]
    assert len(seen) > 0
    assert cs["a"].query(())["count"][0] == sum(len(b) for b in batches)


def test_state_round_trip_and_continue(world):
    topo, cdr = world
    cube = Cube(spec_small(), topo, name="calls")
    cube.update(cdr[:300])
    st = cube.to_state()
    for k, v in st.items():
        assert isinstance(v, (np.ndarray, int, float, str)), k
    c2 = Cube.from_state(st)  # topology travels in the state
    assert c2.name == "calls" and c2.topology.n_elements == topo.n_elements
    assert_same(results(cube), results(c2), exact_float=True)
    cube.update(cdr[300:])
    c2.update(cdr[300:])
    assert_same(results(cube), results(c2), exact_float=True)
    c3 = Cube.from_state(st, topology=topo)
    assert c3.topology is topo
    # a state for another spec does not load
    bad = dict(st)
    bad["cuboid0.fsum"] = np.zeros((len(st["cuboid0.fsum"]), 5))
    with pytest.raises(ValueError, match="expected"):
        Cube.from_state(bad)


def test_cubeset_state_merge_and_errors(world):
    topo, cdr = world
    specs = {"x": spec_small(), "y": CubeSpec(dimensions=["cause_class", "day"], measures=["count"])}
    a, b = CubeSet(specs, topo), CubeSet(specs, topo)
    a.update(cdr[:250])
    b.update(cdr[250:])
    a.merge(b)
    one = CubeSet(specs, topo)
    one.update(cdr)
    for nm in specs:
        assert_same(results(one[nm]), results(a[nm]))
    st = a.to_state()
    r = CubeSet.from_state(st)
    for nm in specs:
        assert_same(results(a[nm]), results(r[nm]), exact_float=True)
    assert r["x"]._lock is r["y"]._lock
    with pytest.raises(ValueError, match="already exists"):
        a.add("x", spec_small())
    with pytest.raises(ValueError, match="reads source 'qos'"):
        a.add("q", CubeSpec(dimensions=["region"], source="qos"))
    with pytest.raises(ValueError, match="cube sets differ"):
        a.merge(CubeSet({"x": spec_small()}, topo))


def test_custom_dimension_and_values(world):
    topo, cdr = world
    # calls bucketed by duration class; a custom value; a derived roll-up of the custom dimension
    long_call = Dimension(
        "long_call",
        3,
        lambda ctx: np.minimum((ctx.records["end_ms"] - ctx.records["start_ms"]) // 60_000, 2),
        labels=np.array(["<1min", "1-2min", ">=2min"]),
        derive={"is_long": Derivation(table=np.array([0, 0, 1]))},
    )
    is_long = Dimension("is_long", 2, lambda ctx: np.zeros(ctx.n, dtype=np.int64))
    spec = CubeSpec(
        dimensions=[long_call, "service"],
        measures=["count", "sum:kbytes"],
        values={"kbytes": lambda ctx: ctx.records["bytes_down"] / 1000.0},
    )
    cube = Cube(spec, topo, dimensions={"is_long": is_long})
    cube.update(cdr)
    res = cube.query(("long_call",))
    dur = cdr["end_ms"] - cdr["start_ms"]
    assert res["count"][0] == np.sum(dur < 60_000)
    rl = cube.query(("is_long",))
    assert list(rl["count"]) == [np.sum(dur < 120_000), np.sum(dur >= 120_000)]
    np.testing.assert_allclose(cube.query(())["sum_kbytes"][0], cdr["bytes_down"].sum() / 1000.0, rtol=1e-12)
    st = cube.to_state()
    with pytest.raises(ValueError, match="custom dimensions"):
        Cube.from_state(st)
    c2 = Cube.from_state(st, dimensions={"long_call": long_call, "is_long": is_long}, values=spec.values)
    np.testing.assert_array_equal(c2.query(("long_call",))["count"], res["count"])


def test_update_codes_path(world):
    topo, _ = world
    spec = CubeSpec(
        dimensions=["service", "hour_of_day"],
        measures=["count", "sum:x", "distinct:sub"],
        hll_p=4,
        values={"x": None, "sub": None},
    )  # supplied by update_codes
    cube = Cube(spec, topo)
    svc = np.array([0, 1, 1, 3, -1])
    hod = np.array([5, 5, 6, 23, 1])
    rep = cube.update_codes(
        {"service": svc, "hour_of_day": hod},
        values={"x": np.array([1.0, 2.0, np.nan, 4.0, 5.0])},
        hashes={"sub": np.array([1, 2, 2, 3, 4])},
    )
    assert rep.n_rejected == 1 and rep.rejected_by_dim == {"service": 1} and list(rep.rejected_rows) == [4]
    res = cube.query(("service",))
    assert list(res["service"]) == ["voice", "video", "data"]
    assert list(res["count"]) == [1, 2, 1]
    # NaN is missing: excluded from the sum, the group with only NaN... has one valid value here
    assert list(res["sum_x"]) == [1.0, 2.0, 4.0]
    arr = np.array([svc, hod], dtype=np.int32)
    cube.update_codes((arr, ["service", "hour_of_day"]), values={"x": np.ones(5)}, hashes={"sub": np.arange(5)})
    assert cube.query(())["count"][0] == 8
    with pytest.raises(ValueError, match="lack dimensions"):
        cube.update_codes({"service": svc}, values={"x": np.ones(5)}, hashes={"sub": np.arange(5)})
    with pytest.raises(ValueError, match="has 4 codes"):
        cube.update_codes(
            {"service": svc + 5, "hour_of_day": hod}, values={"x": np.ones(5)}, hashes={"sub": np.arange(5)}
        )
    with pytest.raises(ValueError, match="expected"):
        cube.update_codes((arr, ["service"]))
    with pytest.raises(ValueError, match="values lack fields"):
        cube.update_codes({"service": svc, "hour_of_day": hod}, hashes={"sub": np.arange(5)})
    with pytest.raises(ValueError, match="shape"):
        cube.update_codes({"service": svc, "hour_of_day": hod}, values={"x": np.ones(3)}, hashes={"sub": np.arange(5)})
    with pytest.raises(ValueError, match="supplied by update_codes"):
        cube.update(make_cdr(np.random.default_rng(0), topo, 3))


def test_missing_values_and_empty_groups(world):
    topo, _ = world
    spec = CubeSpec(
        dimensions=["service"],
        measures=["count", "sum:x", "min:x", "var:x", "p50:x"],
        hll_p=4,
        quantile_alpha=0.25,
        values={"x": None},
    )
    cube = Cube(spec, topo)
    cube.update_codes(
        {"service": np.array([0, 0, 1, 1, 1])}, values={"x": np.array([np.nan, np.nan, 3.0, 5.0, np.nan])}
    )
    res = cube.query(("service",))
    # service 0: every value missing -> NaN measures, count still 2
    assert res["count"][0] == 2 and np.isnan(res["sum_x"][0]) and np.isnan(res["min_x"][0])
    assert np.isnan(res["var_x"][0]) and np.isnan(res["p50_x"][0])
    assert res["sum_x"][1] == 8.0 and res["var_x"][1] == 2.0
    # merging all-missing into valid and back keeps the semantics
    other = Cube(spec, topo)
    other.update_codes({"service": np.array([1, 0])}, values={"x": np.array([np.nan, 7.0])})
    cube.merge(other)
    res = cube.query(("service",))
    assert list(res["count"]) == [3, 4] and list(res["sum_x"]) == [7.0, 8.0]
    assert res["var_x"][1] == 2.0 and np.isnan(res["var_x"][0])


def test_memory_report_and_layouts(world):
    topo, cdr = world
    cube = Cube(spec_small(dense_limit=100), topo)
    cube.update(cdr)
    rep = cube.memory_report()
    assert rep["cells"] == cube.n_cells and rep["nbytes"] == cube.nbytes > 0
    layouts = {c["dims"]: c["layout"] for c in rep["cuboids"]}
    assert layouts[("element", "service", "hour_of_day")] == "hashed" and layouts[()] == "dense"
    assert rep["delta_nbytes"] > 0 and rep["cell_budget"] == cube.spec.cell_budget


def test_explore_summary(world):
    topo, cdr = world
    light = dict(quantile_alpha=0.25) if NO_JIT else {}  # plain-Python sketch merges are slow
    cs = CubeSet({"explore": explore_spec(**light)}, topo)
    assert explore_summary(cs) == ["cube: no calls yet"]
    cs.update(cdr)
    lines = explore_summary(cs, topo)
    assert lines[0].startswith("cube: worst 3 regions by drop rate")
    assert any("worst site" in ln for ln in lines)
    # the worst region printed first really has the highest drop rate
    res = cs["explore"].query(("region",))
    rate = res["sum_dropped"] / res["sum_answered"]
    assert f"region {res['region'][np.argmax(rate)]}:" in lines[1]
    assert explore_summary(cs["explore"]) == lines


def test_spec_and_query_errors(world):
    topo, cdr = world
    with pytest.raises(ValueError, match="spec must be a CubeSpec"):
        Cube({"dimensions": ["region"]}, topo)
    with pytest.raises(ValueError, match="unknown dimension 'nope'"):
        Cube(CubeSpec(dimensions=["nope"]), topo)
    with pytest.raises(ValueError, match="need topology="):
        Cube(CubeSpec(dimensions=["region"]))
    with pytest.raises(ValueError, match="appears twice"):
        Cube(CubeSpec(dimensions=["region", "region"]), topo)
    with pytest.raises(ValueError, match="a dimension is a name"):
        Cube(CubeSpec(dimensions=[3]), topo)
    with pytest.raises(ValueError, match="unknown measure kind"):
        Measure.parse("avg:x")
    with pytest.raises(ValueError, match="takes no field"):
        Measure("count", "x")
    with pytest.raises(ValueError, match="needs a field"):
        Measure.parse("sum")
    with pytest.raises(ValueError, match="q in"):
        Measure("quantile", "x", 1.5)
    with pytest.raises(ValueError, match="a measure is a string"):
        Measure.parse(5)
    assert Measure.parse("median:x").name == "p50_x" and Measure.parse("p99.9:x").name == "p99_9_x"
    assert Measure.parse(Measure("count")).name == "count"
    with pytest.raises(ValueError, match="declared twice"):
        Cube(CubeSpec(dimensions=["service"], measures=["count", "count"]), topo)
    with pytest.raises(ValueError, match="at least one measure"):
        Cube(CubeSpec(dimensions=["service"], measures=[]), topo)
    with pytest.raises(ValueError, match="unknown value field 'zz'"):
        Cube(CubeSpec(dimensions=["service"], measures=["sum:zz"]), topo)
    with pytest.raises(ValueError, match="unknown hash field"):
        Cube(CubeSpec(dimensions=["service"], measures=["distinct:duration_ms"]), topo)
    for bad, msg in [
        ({"hll_p": 20}, "hll_p"),
        ({"quantile_alpha": 0.7}, "quantile_alpha"),
        ({"quantile_min": 5.0, "quantile_max": 1.0}, "quantile_min"),
        ({"cell_budget": 0}, "cell_budget"),
        ({"retention_ms": -5}, "retention_ms"),
        ({"cuboids": "some"}, "'all' or a list"),
        ({"cuboids": [("nope",)]}, "not dimensions"),
        ({"cuboids": [("service", "service")]}, "repeats"),
        ({"cuboids": []}, "empty"),
    ]:
        with pytest.raises(ValueError, match=msg):
            Cube(CubeSpec(dimensions=["service"], **bad), topo)
    many = [f"d{i}" for i in range(13)]
    dims = [Dimension(n, 2, lambda ctx: np.zeros(ctx.n, dtype=np.int64)) for n in many]
    with pytest.raises(ValueError, match="at most 12"):
        Cube(CubeSpec(dimensions=dims), topo)
    huge = [Dimension(n, 1 << 21, lambda ctx: np.zeros(ctx.n, dtype=np.int64)) for n in "abc"]
    with pytest.raises(ValueError, match="2\\*\\*62"):
        Cube(CubeSpec(dimensions=huge), topo)
    cube = Cube(CubeSpec(dimensions=["region", "service"], cuboids=[("region",), ("service",)]), topo)
    cube.update(cdr)
    with pytest.raises(ValueError, match="no materialised cuboid"):
        cube.query(("region", "service"))
    with pytest.raises(ValueError, match="unknown dimensions"):
        cube.query(("site2",))
    with pytest.raises(ValueError, match="repeats"):
        cube.query(("region", "region"))
    with pytest.raises(ValueError, match="unknown measure"):
        cube.query(("region",), measures=["sum:x"])
    with pytest.raises(ValueError, match="has no value 'fax'"):
        cube.query(("service",), where={"service": "fax"})
    with pytest.raises(ValueError, match="range must be"):
        cube.query(("service",), where={"service": (1, 2, 3)})
    v = cube.view().group_by("region")
    with pytest.raises(ValueError, match="already grouped"):
        v.drill_down("region")
    with pytest.raises(ValueError, match="not grouped by"):
        v.roll_up("service")
    with pytest.raises(ValueError, match="not a roll-up"):
        v.roll_up("region", to="service")
    with pytest.raises(ValueError, match="k must be"):
        v.top_k("count", 0)
    with pytest.raises(ValueError, match="unknown measure"):
        v.top_k("sum:nope", 2)
    with pytest.raises(ValueError, match="unknown measure"):
        full = Cube(spec_small(), topo)
        full.update(cdr)
        full.view().pivot("region", "service", "sum:nope")
    assert list(cube.query(("region",), measures="count").dtype.names) == ["region", "count"]
    assert len(cube.group_by("region").result()) == 3
    empty = cube.view().dice(region=[]).result()
    assert len(empty) == 0 and len(cube.view().dice(region=[]).top_k("count", 3)) == 0
    t_code = cube.all_dims["region"].encode([topo.ids["region"][1]])
    assert list(t_code) == [1]


def test_dimension_and_context_errors(world):
    topo, cdr = world
    with pytest.raises(ValueError, match="non-empty string"):
        Dimension("", 3, lambda ctx: 0)
    with pytest.raises(ValueError, match="cardinality"):
        Dimension("x", 0, lambda ctx: 0)
    with pytest.raises(ValueError, match="labels for cardinality"):
        Dimension("x", 3, lambda ctx: 0, labels=np.arange(2))
    with pytest.raises(ValueError, match="source must be"):
        BatchContext(cdr, topo, source="nope")
    with pytest.raises(ValueError, match="structured array"):
        BatchContext(np.zeros(3), topo)
    with pytest.raises(ValueError, match="lack fields"):
        BatchContext(np.zeros(3, dtype=[("start_ms", "i8")]), topo)
    with pytest.raises(ValueError, match="element_idx has shape"):
        BatchContext(cdr, topo, element_idx=np.zeros(2))
    ctx = BatchContext(cdr, None)
    with pytest.raises(ValueError, match="needs a topology"):
        _ = ctx.element_idx
    d = Dimension("x", 3, lambda ctx: np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError, match="returned shape"):
        d.codes(BatchContext(cdr, topo))
    d = Dimension("x", 3, lambda ctx: np.zeros(ctx.n))
    with pytest.raises(ValueError, match="must be integers"):
        d.codes(BatchContext(cdr, topo))
    with pytest.raises(ValueError, match="granularity"):
        builtin_dimension("time:10", topo)
    minute = builtin_dimension("minute", topo, time_origin_ms=T0_MS)
    with pytest.raises(ValueError, match="has no value"):
        minute.encode([T0_MS + 1])
    assert list(minute.encode([T0_MS + 120_000])) == [2]
    q = builtin_dimension("time:900000", topo, time_origin_ms=T0_MS)
    assert set(q.derive) == {"hour", "day", "hour_of_day", "day_of_week"}
    # an explicit element index is used as given (row 0 forced unknown)
    eidx = topo.index_of(cdr["element_id"])
    eidx[0] = -1
    cube = Cube(CubeSpec(dimensions=["region"]), topo)
    rep = cube.update(cdr, element_idx=eidx)
    assert rep.n_rejected == np.sum(eidx < 0)
    spec = CubeSpec(dimensions=["service"], measures=["sum:bad"], values={"bad": lambda ctx: np.ones(2)})
    with pytest.raises(ValueError, match="value field 'bad' returned shape"):
        Cube(spec, topo).update(cdr)
    spec = CubeSpec(dimensions=["service"], measures=["distinct:bad"], values={"bad": lambda ctx: np.ones(ctx.n)})
    with pytest.raises(ValueError, match="hash field 'bad' must return"):
        Cube(spec, topo).update(cdr)
    assert rollup("region", "site") == [("region", "site"), ("region",), ()]


def test_records_with_wrong_dtype_rejected(world):
    topo, _ = world
    cube = Cube(CubeSpec(dimensions=["service"]), topo)
    with pytest.raises(ValueError, match="lack fields"):
        cube.update(np.zeros(3, dtype=[("x", "i8")]))
    cube.update(np.zeros(0, dtype=CDR_DTYPE))
    assert cube.n_cells == 0 and len(cube.query(("service",))) == 0
