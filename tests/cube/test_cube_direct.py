"""The direct build (finest cuboid accumulated straight into its state, the others rolled up from
small event-fed deltas) against DuckDB and against the delta build."""

import numpy as np
import pytest

from telcoanalytics.cube import Cube, CubeBudgetError, CubeSet, CubeSpec
from tests.reference.cube import make_cdr, make_topology

from .test_cube import HLL_P, N, assert_matches_oracle, full_spec, oracle_columns

DIMS = ["region", "site", "element", "service", "equipment_class", "hour_of_day"]
FAST = ["count", "sum:duration_ms", "min:duration_ms", "max:duration_ms"]


def element_cuboids():
    # the finest (element, service, hour) plus small grouping sets and an element-level one
    return [
        ("element", "service", "hour_of_day"),
        ("region", "service", "equipment_class", "hour_of_day"),
        ("region", "service"),
        ("equipment_class", "hour_of_day"),
        ("element",),
        ("site",),
        (),
    ]


def assert_same(a: Cube, b: Cube, sets):
    for s in sets:
        ra, rb = a.query(s), b.query(s)
        assert ra.dtype == rb.dtype and len(ra) == len(rb), s
        for nm in ra.dtype.names:
            if ra.dtype[nm].kind == "f":
                # same values summed in another order (per event vs per delta cell)
                np.testing.assert_allclose(ra[nm], rb[nm], rtol=1e-12, err_msg=f"{s} {nm}")
            else:
                np.testing.assert_array_equal(ra[nm], rb[nm], err_msg=f"{s} {nm}")


def test_direct_build_matches_duckdb_all_measures(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N, unknown_frac=0.01)
    cube = Cube(full_spec(dimensions=DIMS, cuboids=element_cuboids(), direct_min_keys=1), topo)
    assert cube.memory_report()["build"] == "direct"
    reps = [cube.update(p) for p in np.array_split(cdr, 3)]
    cols, n_bad = oracle_columns(topo, cdr)
    assert sum(r.n_rejected for r in reps) == n_bad > 0
    assert sum(len(r.rejected_rows) for r in reps) == n_bad
    assert all(r.n_applied + r.n_rejected == r.n_rows for r in reps)
    assert all(set(r.rejected_by_dim) <= set(DIMS) for r in reps)
    assert cube.n_rows == len(cdr) - n_bad and cube.n_rejected == n_bad
    sets = [
        ("region",),
        ("site",),
        ("element",),
        ("region", "service"),
        ("equipment_class", "hour_of_day"),
        ("element", "service"),
        (),
    ]
    assert_matches_oracle(cube, cols, sets)


def test_direct_and_delta_builds_identical(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N, unknown_frac=0.005)
    spec = dict(dimensions=DIMS, measures=FAST, cuboids=element_cuboids())
    a = Cube(CubeSpec(**spec, direct_min_keys=1), topo)
    b = Cube(CubeSpec(**spec, direct_min_keys=1 << 40), topo)
    assert a.memory_report()["build"] == "direct" and b.memory_report()["build"] == "delta"
    for p in np.array_split(cdr, 4):
        ra, rb = a.update(p), b.update(p)
        assert (ra.n_applied, ra.n_rejected) == (rb.n_applied, rb.n_rejected)
        np.testing.assert_array_equal(ra.rejected_rows, rb.rejected_rows)
    assert a.n_cells == b.n_cells
    assert_same(a, b, [c.dims for c in a.cuboids] + [("site", "service"), ("region",)])


def test_direct_build_in_a_cubeset_with_count_only(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N // 2)
    specs = {
        "e": CubeSpec(
            dimensions=["element", "service"],
            measures=["count"],
            cuboids=[("element", "service"), ("service",)],
            direct_min_keys=1,
        ),
        "r": CubeSpec(dimensions=["region"], measures=FAST),
    }
    cs = CubeSet(specs, topo)
    ref = Cube(
        CubeSpec(dimensions=["element", "service"], measures=["count"], cuboids=[("element", "service"), ("service",)]),
        topo,
    )
    for p in np.array_split(cdr, 2):
        cs.update(p)
        ref.update(p)
    assert cs["e"].memory_report()["build"] == "direct" and ref.memory_report()["build"] == "delta"
    assert_same(cs["e"], ref, [("element", "service"), ("service",), ("region",), ()])


def test_direct_needs_small_groups_and_a_unique_finest_cuboid(rng):
    topo = make_topology(rng)
    # a group over (element, service) has 2**12 keys here: too big for direct_group_max_keys=16
    c = Cube(
        CubeSpec(
            dimensions=DIMS,
            cuboids=[("element", "service", "hour_of_day"), ("element", "service")],
            direct_min_keys=1,
            direct_group_max_keys=16,
        ),
        topo,
    )
    assert c.memory_report()["build"] == "delta" and c.memory_report()["build"] == "delta"
    # two cuboids storing the same finest keys: the delta build handles it
    c = Cube(
        CubeSpec(dimensions=["region", "element"], cuboids=[("element",), ("region", "element")], direct_min_keys=1),
        topo,
    )
    assert c.memory_report()["build"] == "delta"
    # only the finest cuboid: no groups at all
    c = Cube(CubeSpec(dimensions=["element"], cuboids=[("element",)], direct_min_keys=1), topo)
    c.update(make_cdr(rng, topo, 50))
    assert c.memory_report()["build"] == "direct" and c.n_rows == 50


def test_direct_falls_back_to_exact_budget_check(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, 400)
    spec = CubeSpec(
        dimensions=["element", "service"],
        measures=FAST,
        cuboids=[("element", "service"), ("service",)],
        direct_min_keys=1,
        cell_budget=60,
    )
    cube = Cube(spec, topo)
    # 400 events could make 400 cells: the bound fails, the exact check raises, nothing changes
    with pytest.raises(CubeBudgetError, match="cell_budget of 60"):
        cube.update(cdr)
    assert cube.n_cells == 0 and cube.n_rows == 0
    assert cube.memory_report()["last_batch_build"] == "delta"
    cube.update(cdr[:20])  # 20 events: the bound holds, direct build
    assert cube.memory_report()["last_batch_build"] == "direct" and cube.n_rows == 20


def test_direct_build_with_retention_and_merge(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N // 2, days=3.0)
    spec = dict(
        dimensions=["element", "service", "hour"],
        measures=FAST,
        cuboids=[("element", "service", "hour"), ("service", "hour")],
        retention_ms=86_400_000,
        # hour buckets have a huge key space: hashed tables, groups of any size
        dense_limit=1 << 16,
        direct_group_max_keys=1 << 60,
    )
    a = Cube(CubeSpec(**spec, direct_min_keys=1), topo)
    b = Cube(CubeSpec(**spec, direct_min_keys=1 << 40), topo)
    for p in np.array_split(cdr, 5):
        ra, rb = a.update(p), b.update(p)
        assert ra.n_expired == rb.n_expired
    assert a.memory_report()["build"] == "direct" and a.n_expired > 0
    assert_same(a, b, [("element", "service", "hour"), ("service",), ("hour",)])
    a2 = Cube(CubeSpec(**spec, direct_min_keys=1), topo)
    a2.merge(a)
    assert_same(a2, b, [("service", "hour")])
    st = a.to_state()
    assert int(st["direct_min_keys"]) == 1
    assert Cube.from_state(st).memory_report()["build"] == "direct"


def test_direct_build_readers_see_only_whole_batches(rng):
    import threading

    topo = make_topology(rng)
    batches = [make_cdr(rng, topo, 120) for _ in range(6 if HLL_P == 4 else 30)]
    cs = CubeSet(
        {
            "e": CubeSpec(
                dimensions=["region", "element", "service"],
                measures=FAST,
                cuboids=[("element", "service"), ("region",)],
                direct_min_keys=1,
            ),
            "s": CubeSpec(dimensions=["service"], measures=["count"]),
        },
        topo,
    )
    prefix = set(np.cumsum([0] + [len(b) for b in batches]).tolist())
    bad, seen, done = [], [], threading.Event()

    def reader():
        while not done.is_set():
            with cs.snapshot():
                fine = int(cs["e"].query(("element", "service"))["count"].sum())
                coarse = int(cs["e"].query(("region",))["count"].sum())
                other = int(cs["s"].query(())["count"].sum()) if cs["s"].n_cells else 0
            seen.append(fine)
            if fine not in prefix or fine != coarse or fine != other:
                bad.append((fine, coarse, other))

    t = threading.Thread(target=reader)
    t.start()
    for b in batches:
        cs.update(b)
    done.set()
    t.join()
    assert cs["e"].memory_report()["last_batch_build"] == "direct" and not bad and seen


def _two_dim_cube(**kw):
    from telcoanalytics.cube import Dimension

    def codes_only(ctx):
        raise ValueError("codes only")

    dims = {"a": Dimension("a", 300, codes_only), "b": Dimension("b", 300, codes_only)}
    spec = CubeSpec(dimensions=list(dims.values()), measures=FAST, values={"duration_ms": None}, **kw)
    return Cube(spec)


def _codes(rng, n):
    codes = {"a": rng.integers(0, 300, n), "b": rng.integers(0, 300, n)}
    return codes, {"duration_ms": rng.integers(1, 1000, n).astype(np.float64)}


def test_default_build_chosen_per_batch_by_modelled_cost(rng):
    # 300 x 300 codes (2**18 keys): a batch of 500 events makes ~500 cells (the direct build's
    # extra passes over the events are cheaper than rolling up and merging a delta as large as the
    # batch); 150,000 events make ~75,000 cells (one delta is cheaper than three passes)
    cube = _two_dim_cube()
    assert cube.spec.direct_min_keys is None and cube.base_keys.size == 1 << 18
    small, large = cube.build_costs(500), cube.build_costs(150_000)
    assert small[1] < small[0] and large[0] < large[1]
    forced = _two_dim_cube(direct_min_keys=1 << 62)
    for _ in range(3):
        c, v = _codes(rng, 500)
        cube.update_codes(c, v)
        forced.update_codes(c, v)
        assert cube.memory_report()["build"] == "direct" and cube.memory_report()["build_rule"] == "modelled cost"
    # integer durations: every sum is exact in either build, so the cubes are equal
    for by in [("a", "b"), ("a",), ("b",), ()]:
        ra, rb = cube.query(by), forced.query(by)
        for nm in ra.dtype.names:
            np.testing.assert_array_equal(ra[nm], rb[nm], err_msg=f"{by} {nm}")
    st = cube.to_state()
    assert int(st["direct_min_keys"]) == -1
    assert Cube.from_state(st, dimensions=cube.dims).spec.direct_min_keys is None
    with pytest.raises(ValueError, match="direct_min_keys must be None"):
        CubeSpec(dimensions=["region"], direct_min_keys=0).validate()


@pytest.mark.slow
def test_default_build_takes_the_delta_build_for_a_large_batch(rng):
    cube, forced = _two_dim_cube(), _two_dim_cube(direct_min_keys=1)
    c, v = _codes(rng, 150_000)
    cube.update_codes(c, v)
    forced.update_codes(c, v)
    assert cube.memory_report()["build"] == "delta" and forced.memory_report()["build"] == "direct"
    for by in [("a", "b"), ("a",), ()]:
        ra, rb = cube.query(by), forced.query(by)
        for nm in ra.dtype.names:
            np.testing.assert_array_equal(ra[nm], rb[nm], err_msg=f"{by} {nm}")
