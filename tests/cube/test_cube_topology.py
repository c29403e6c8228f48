"""Cubes following topology changes while data flows: new elements, re-homes, attribute
changes, retirements and compaction, against a NumPy reference that attributes every event to
the parent its element had when the event happened."""

import numpy as np
import pytest

from telcoanalytics.cube import Cube, CubeSet, CubeSpec
from telcoanalytics.cube.dims import TopologySlots
from telcoanalytics.records import EQUIPMENT_CLASSES
from tests.reference.cube import make_cdr, make_topology

FAST = ["count", "sum:duration_ms", "min:duration_ms", "max:duration_ms"]
DIMS = ["region", "site", "element", "service", "equipment_class"]


def labelled(topo, cdr):
    """Event rows with the labels of ``topo`` (the topology in force when they happened)."""
    e = topo.index_of(cdr["element_id"])
    assert (e >= 0).all()
    return {
        "region": topo.ids["region"][topo.element_to("region")[e]],
        "site": topo.ids["site"][topo.element_to("site")[e]],
        "element": cdr["element_id"],
        "service": cdr["service"],
        "equipment_class": np.array(EQUIPMENT_CLASSES)[topo.attributes["equipment_class"][e]],
        "duration_ms": (cdr["end_ms"] - cdr["start_ms"]).astype(np.float64),
    }


def reference(rows, by):
    """{group tuple: (count, sum, min, max)} by plain NumPy."""
    keys = list(zip(*[rows[d].tolist() for d in by])) if by else [()] * len(rows["duration_ms"])
    out = {}
    for k, v in zip(keys, rows["duration_ms"]):
        c, s, lo, hi = out.get(k, (0, 0.0, np.inf, -np.inf))
        out[k] = (c + 1, s + v, min(lo, v), max(hi, v))
    return out


def check(cube, rows, by, where=None):
    res = cube.query(by, where=where)
    ref = reference(rows, by)
    if where:
        ((wd, wv),) = where.items()
        ref = reference({k: v[rows[wd] == wv] for k, v in rows.items()}, by)
    assert len(res) == len(ref), (by, where)
    svc = np.array(cube.all_dims["service"].labels) if "service" in by else None
    for r in res:
        key = tuple(
            (
                int(np.flatnonzero(svc == r[d])[0])
                if d == "service"
                else (r[d].item() if hasattr(r[d], "item") else r[d])
            )
            for d in by
        )
        c, s, lo, hi = ref[key]
        assert r["count"] == c and r["min_duration_ms"] == lo and r["max_duration_ms"] == hi, (by, key)
        # same values summed in another order
        np.testing.assert_allclose(r["sum_duration_ms"], s, rtol=1e-12)


def concat(a, b):
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def change(rng, topo):
    """Re-home 5 elements to sites of another region, add 70 elements (the element codes
    outgrow their power-of-two radix), change one element's equipment class."""
    e_ids = topo.ids["element"][:5]
    reg = topo.element_to("region")[:5]
    site_reg = topo.node_to("site", "region")
    new_sites = [topo.ids["site"][np.flatnonzero(site_reg != r)[0]] for r in reg]
    t1, c1 = topo.rehome_elements(e_ids, np.array(new_sites))
    add = np.arange(90_000, 90_070)
    t2, c2 = t1.add_elements(
        add,
        parent_ids=np.resize(topo.ids["site"], 70),
        attributes={"equipment_class": np.full(70, 2), "vendor": np.zeros(70, int), "technology": np.ones(70, int)},
    )
    ec = int(t2.attributes["equipment_class"][t2.index_of(np.array([e_ids[0]]))[0]])
    t3, c3 = t2.set_attributes(np.array([e_ids[0]]), {"equipment_class": np.array([(ec + 1) % 5])})
    return t3, [c1, c2, c3], e_ids


def test_rehome_add_and_attribute_change_keep_history(rng):
    topo = make_topology(rng)
    specs = {
        "fine": CubeSpec(
            dimensions=DIMS, measures=FAST, cuboids=[("element", "service"), ("region",), ("site", "equipment_class")]
        ),
        "direct": CubeSpec(
            dimensions=DIMS, measures=FAST, direct_min_keys=1, cuboids=[("element", "service"), ("region", "service")]
        ),
    }
    cs = CubeSet(specs, topo)
    before = make_cdr(rng, topo, 500)
    cs.update(before)
    v0 = cs["fine"].version
    new_topo, changes, moved = change(rng, topo)
    cs.topology_changed(new_topo, changes)
    assert cs.topology is new_topo and cs["fine"].version == v0 + 1
    assert cs["fine"].dims["element"].cardinality == topo.n_elements + 70 + 5
    after = make_cdr(rng, new_topo, 500)
    cs.update(after)
    rows = concat(labelled(topo, before), labelled(new_topo, after))
    for name in cs:
        c = cs[name]
        assert c.n_rows == 1000
        for by in [
            ("region",),
            ("site",),
            ("element",),
            ("region", "service"),
            ("equipment_class",),
            ("site", "element"),
            (),
        ]:
            check(c, rows, by)
        # a re-homed element is one row, and filters on it see its whole history
        check(c, rows, ("region",), where={"element": int(moved[0])})
        check(c, rows, ("element",), where={"element": int(moved[1])})
        check(c, rows, ("element",), where={"region": int(rows["region"][0])})
    # checkpoint keeps the versioned codes
    back = CubeSet.from_state(cs.to_state())
    check(back["fine"], rows, ("region", "service"))
    check(back["direct"], rows, ("site", "element"))
    assert back._slots.n_slots("element") == cs._slots.n_slots("element")


def test_single_cube_retire_and_compact(rng):
    topo = make_topology(rng)
    cube = Cube(CubeSpec(dimensions=["region", "element"], measures=FAST, cuboids=[("element",), ("region",)]), topo)
    first = make_cdr(rng, topo, 300)
    cube.update(first)
    gone = topo.ids["element"][:4]
    t1, c1 = topo.retire_elements(gone)
    t2, c2 = t1.compact()
    cube.topology_changed(t2, [c1, c2])
    keep = ~np.isin(topo.ids["element"], gone)
    later = make_cdr(rng, t2, 300)
    assert np.isin(later["element_id"], topo.ids["element"][keep]).all()
    cube.update(later)
    # retired elements keep their history (their codes stay, labelled by their ids)
    rows = concat(labelled(topo, first), labelled(t2, later))
    check(cube, rows, ("element",))
    check(cube, rows, ("region",))


def test_append_only_change_without_changes_and_errors(rng):
    topo = make_topology(rng)
    cube = Cube(CubeSpec(dimensions=["site", "service"], measures=["count"]), topo)
    t1, _ = topo.add_elements(np.array([77_777]), parent_ids=topo.ids["site"][:1])
    empty = Cube(CubeSpec(dimensions=["element"], measures=["count"]), topo).set_topology(t1)
    assert empty.n_cells == 0 and empty.dims["element"].cardinality == topo.n_elements + 1
    cube.update(make_cdr(rng, topo, 100))
    cube.set_topology(t1)  # indices stable: no changes needed
    assert cube.query(("site",))["count"].sum() == 100
    t2, _ = t1.retire_elements(topo.ids["element"][:2])
    t3, _ = t2.compact()
    with pytest.raises(ValueError, match="renumbers or drops element nodes; pass the changes"):
        cube.set_topology(t3)
    with pytest.raises(ValueError, match="built without a topology"):
        Cube(CubeSpec(dimensions=["service"])).set_topology(topo)
    with pytest.raises(ValueError, match="built without a topology"):
        CubeSet({"s": CubeSpec(dimensions=["service"])}).set_topology(topo)
    slots = TopologySlots.initial(topo)
    assert slots.identity and slots.canon("element") is None
    other = make_topology(rng)
    other.levels = ("region", "element")
    with pytest.raises(ValueError, match="cannot change its hierarchy"):
        slots.advance(other)
    moved = slots.advance(*topo.rehome_elements(topo.ids["element"][:1], topo.ids["site"][-1:])[:1])
    assert not moved.identity and moved.n_slots("element") == topo.n_elements + 1
