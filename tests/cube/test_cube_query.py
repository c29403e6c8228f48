"""Query cache and the exact-cuboid fast path: results never go stale and never alias."""

import numpy as np

from telcoanalytics.cube import Cube, CubeSpec
from tests.reference.cube import make_cdr, make_topology

FAST = ["count", "sum:duration_ms", "min:duration_ms", "max:duration_ms"]


def test_cache_is_invalidated_by_every_batch_and_results_are_copies(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, 600)
    cube = Cube(
        CubeSpec(dimensions=["element", "service"], measures=FAST, cuboids=[("element", "service"), ("element",)]), topo
    )
    cube.update(cdr[:300])
    r1 = cube.query(("element",))
    r1["count"][:] = -7  # mutating a result leaves the cube's cache alone
    r2 = cube.query(("element",))
    assert r2["count"].sum() == 300
    assert cube.view().group_by("element").top_k("count", 3)["count"][0] == r2["count"].max()
    cube.update(cdr[300:])
    r3 = cube.query(("element",))
    assert r3["count"].sum() == 600
    # the exact cuboid (no roll-up) and a roll-up from the finer cuboid agree
    fine = cube.query(("element",), where={"service": list(np.unique(np.array(cube.all_dims["service"].labels)))})
    for nm in r3.dtype.names:
        np.testing.assert_array_equal(r3[nm], fine[nm])
    # where dicts with the same meaning share one cache entry; others do not
    svc = str(cube.all_dims["service"].labels[0])
    a = cube.query(("element",), where={"service": [svc]})
    b = cube.query(("element",), where={"service": {svc}})
    c = cube.query(("element",), where={"service": svc})
    assert len(cube._result_cache) >= 3
    for nm in a.dtype.names:
        np.testing.assert_array_equal(a[nm], b[nm])
        np.testing.assert_array_equal(a[nm], c[nm])
    cube.query(("element",), where={"element": (None, None)})
    assert cube.version == 2


def test_cache_is_bounded(rng, monkeypatch):
    import telcoanalytics.cube.query as cm

    monkeypatch.setattr(cm, "_RESULT_CACHE_SIZE", 2)
    topo = make_topology(rng)
    cube = Cube(CubeSpec(dimensions=["region", "service"], measures=["count"]), topo)
    cube.update(make_cdr(rng, topo, 200))
    for by in [("region",), ("service",), ("region", "service"), ()]:
        assert cube.query(by)["count"].sum() == 200
    assert len(cube._result_cache) == 2


def test_top_k_from_cells_equals_top_k_of_the_full_result(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, 500)
    cdr["end_ms"][:40] = cdr["start_ms"][:40] + 1000  # ties
    cube = Cube(
        CubeSpec(
            dimensions=["element", "service"],
            values={"x": None},
            measures=FAST + ["mean:duration_ms", "var:duration_ms", "max:x"],
            cuboids=[("element", "service"), ("element",)],
        ),
        topo,
    )
    e = topo.index_of(cdr["element_id"])
    x = np.where(e % 3 == 0, np.nan, 1.0)  # a field missing for some groups
    cube.update_codes(
        {"element": e, "service": cdr["service"]},
        values={"duration_ms": (cdr["end_ms"] - cdr["start_ms"]).astype(float), "x": x},
    )
    full = cube.query(("element",))
    for meas in [
        "count",
        "sum:duration_ms",
        "min_duration_ms",
        "max:duration_ms",
        "mean:duration_ms",
        "max:x",
        "var:duration_ms",
    ]:
        for asc in (False, True):
            for k in (1, 5, 200):
                got = cube.view().group_by("element").top_k(meas, k, ascending=asc)
                # reference: stable sort of the full result, NaN last
                col = [n for n in full.dtype.names if n in (meas, meas.replace(":", "_"))][0]
                v = full[col].astype(float)
                key = np.where(np.isnan(v), np.inf, v if asc else -v)
                exp = full[np.argsort(key, kind="stable")[:k]]
                np.testing.assert_array_equal(got["element"], exp["element"], err_msg=f"{meas} {asc} {k}")
                np.testing.assert_array_equal(got[col], exp[col])
    # a filtered view and a rolled-up group-by take the general path, same answer
    got = cube.view().group_by("element").dice(service=["voice", "video", "sms", "data"]).top_k("count", 3)
    np.testing.assert_array_equal(got["count"], np.sort(full["count"])[::-1][:3])
