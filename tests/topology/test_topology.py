"""Topology: construction errors, lookups, routing, roll-up, changes and index maps, state."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

try:  # tests/ as a package (tests/__init__.py) or as a plain folder on sys.path
    from tests.reference.topology import ref_ancestor, ref_rollup_sum, ref_segment
except ImportError:
    from reference_topology import ref_ancestor, ref_rollup_sum, ref_segment
from telcoanalytics.records import TOPOLOGY_DTYPE
from telcoanalytics.topology import Topology, TopologyChange, remap_rows, scratch_dtype


def make_topology(rng, n_regions=4, n_sites=30, n_elements=300, levels=("region", "site")):
    site_region = rng.integers(0, n_regions, n_sites) + 1
    elem_site = rng.integers(0, n_sites, n_elements)
    element_id = rng.permutation(np.arange(1000, 1000 + 3 * n_elements))[:n_elements]
    path = {levels[0]: site_region[elem_site], levels[1]: elem_site + 100}
    attrs = {
        "equipment_class": rng.integers(0, 5, n_elements).astype(np.int16),
        "lat": rng.uniform(50, 52, n_elements),
        "vendor_name": np.array(["a", "b", "c"])[elem_site % 3],
    }
    return Topology.from_columns(element_id, path, attrs)


@pytest.fixture
def topo(rng):
    return make_topology(rng)


def small():
    return Topology.from_columns(
        [100, 101, 102, 103],
        {"region": [1, 1, 2, 2], "site": [10, 10, 20, 21]},
        {"lat": [1.0, 2.0, 3.0, 4.0]},
        names={"region": ["N", "N", "S", "S"]},
    )


# ---- construction and lookups ----------------------------------------------------------------
def test_from_columns_structure(topo):
    assert topo.levels == ("region", "site", "element")
    assert topo.n_elements == 300 and topo.n_active == 300 and topo.version == 0
    chain = [topo.parent["element"], topo.parent["site"]]
    idx = np.arange(topo.n_elements)
    np.testing.assert_array_equal(topo.element_to("region"), ref_ancestor(chain, idx))
    np.testing.assert_array_equal(topo.element_to("site"), ref_ancestor(chain[:1], idx))
    np.testing.assert_array_equal(topo.element_to("element"), idx)
    np.testing.assert_array_equal(topo.node_to("site", "region"), topo.parent["site"])


def test_index_of_all_levels(topo):
    eid = topo.ids["element"]
    np.testing.assert_array_equal(topo.index_of(eid), np.arange(topo.n_elements))
    assert topo.index_of([-5, 10**12]).tolist() == [-1, -1]
    sid = topo.ids["site"]
    np.testing.assert_array_equal(topo.index_of(sid[::-1], "site"), np.arange(len(sid))[::-1])
    empty = Topology(("element",), {"element": np.zeros(0, np.int64)}, {})
    assert empty.index_of([1, 2]).tolist() == [-1, -1]


def test_names_and_repr():
    t = small()
    assert t.names["region"].tolist() == ["N", "S"]
    assert "version=0" in repr(t) and "site=3" in repr(t)


def test_from_table_and_to_table(rng):
    tab = np.zeros(5, dtype=TOPOLOGY_DTYPE)
    tab["element_id"] = [5, 6, 7, 8, 9]
    tab["site_id"] = [1, 1, 2, 3, 3]
    tab["region_id"] = [0, 0, 0, 1, 1]
    tab["lat"] = rng.uniform(size=5)
    t = Topology.from_table(tab)
    assert t.attributes["vendor"].dtype == np.int16
    np.testing.assert_array_equal(t.to_table(), tab)
    with pytest.raises(ValueError, match="lacks fields"):
        Topology.from_table(tab[["element_id", "site_id"]])
    with pytest.raises(ValueError, match="to_table needs levels"):
        Topology(("element",), {"element": [1]}, {}).to_table()


@pytest.mark.parametrize(
    "build,match",
    [
        (
            lambda: Topology.from_columns([1, 2, 1], {"site": [1, 1, 2]}),
            r"element_id 1 appears more than once in the topology \(row 0 and row 2\)",
        ),
        (
            lambda: Topology.from_columns([1, 2, 3], {"region": [1, 2, 2], "site": [7, 7, 8]}),
            r"site 7 has two parents: region 1 \(row 0\) and region 2 \(row 1\)",
        ),
        (
            lambda: Topology.from_columns([1, 2], {"site": [7, 7]}, names={"site": ["a", "b"]}),
            r"site 7 has two names: 'a' \(row 0\) and 'b' \(row 1\)",
        ),
        (lambda: Topology.from_columns([1, 2], {"site": [7]}), r"path\['site'\] has 1 values for 2 elements"),
        (lambda: Topology.from_columns([1, 2], {"element": [7, 7]}), "path must list only the levels above"),
        (lambda: Topology.from_columns([1, 2], {"site": [7, 7]}, names={"city": ["a", "b"]}), "unknown level 'city'"),
        (lambda: Topology.from_columns([1, 2], {"site": [7, 7]}, names={"site": ["a"]}), "give one per row"),
        (lambda: Topology.from_columns([1, 2], {"site": [7, 7]}, names={"element": ["a"]}), "1 values for 2 elements"),
        (lambda: Topology.from_columns([1.5, 2], {"site": [7, 7]}), "must hold integer ids"),
        (lambda: Topology.from_columns([[1, 2]], {}), "one-dimensional"),
        (lambda: Topology((), {}, {}), "at least one level"),
        (lambda: Topology(("a", "a"), {"a": [1]}, {}), "distinct"),
        (lambda: Topology(("a", "b"), {"a": [1]}, {}), "ids has no entry for level 'b'"),
        (lambda: Topology(("a",), {"a": [1], "z": [2]}, {}), "unknown topology level 'z'"),
        (lambda: Topology(("a", "b"), {"a": [1], "b": [2]}, {}), "parent has no entry for level 'b'"),
        (lambda: Topology(("a", "b"), {"a": [1], "b": [2, 3]}, {"b": [0]}), "has 1 entries but level 'b' has 2"),
        (lambda: Topology(("a", "b"), {"a": [1], "b": [2]}, {"b": [1]}), "points outside level 'a'"),
        (lambda: Topology(("a", "b"), {"a": [1, 1], "b": [2]}, {"b": [0]}), "a id 1 appears more than once"),
        (lambda: Topology(("a",), {"a": [1, 2]}, {}, {"x": [1.0]}), "attribute 'x' has 1 values for 2"),
        (lambda: Topology(("a",), {"a": [1]}, {}, {"x": [[1.0]]}), "attribute 'x' must be one-dimensional"),
        (lambda: Topology(("a",), {"a": [1]}, {}, names={"a": ["x", "y"]}), r"names\['a'\] has shape"),
        (lambda: Topology(("a",), {"a": [1]}, {}, names={"q": ["x"]}), "unknown topology level 'q'"),
        (lambda: Topology(("a",), {"a": [1]}, {}, active=np.array([1])), "active must be a bool array"),
    ],
)
def test_construction_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_object_attributes_become_text_and_float_ids_accepted():
    t = Topology(("a",), {"a": np.array([1.0, 2.0])}, {}, {"tag": np.array(["x", None], dtype=object)})
    assert t.ids["a"].dtype == np.int64 and t.attributes["tag"].tolist() == ["x", "None"]
    assert Topology(("a",), {"a": np.array([])}, {}).n_elements == 0


def test_unknown_level_errors(topo):
    for call in (
        lambda: topo.element_to("country"),
        lambda: topo.n_nodes("country"),
        lambda: topo.index_of([1], "country"),
        lambda: topo.partition(np.array([0]), "country"),
        lambda: topo.rollup(np.ones(300), "country"),
    ):
        with pytest.raises(ValueError, match="unknown topology level 'country'"):
            call()


# ---- routing -----------------------------------------------------------------------------------
def test_partition_by_region_matches_argsort(topo, rng):
    idx = rng.integers(-1, topo.n_elements, 5000)
    order, offsets = topo.partition(idx, "region")
    keys = np.where(idx >= 0, topo.element_to("region")[idx], topo.n_nodes("region"))
    np.testing.assert_array_equal(order, np.argsort(keys, kind="stable"))
    assert offsets.shape == (topo.n_nodes("region") + 2,)
    unrouted = order[offsets[-2] : offsets[-1]]
    assert np.all(idx[unrouted] == -1) and len(unrouted) == np.sum(idx == -1)


def test_partition_with_buffers_and_int32_scratch(topo, rng):
    idx = rng.integers(0, topo.n_elements, 1000)
    out = np.empty(2000, dtype=np.int64)
    order, offsets = topo.partition(idx, "site", out=out, scratch=np.empty(1000, dtype=np.int32))
    assert order.base is out or order is out
    np.testing.assert_array_equal(order, topo.partition(idx, "site")[0])
    np.testing.assert_array_equal(order, np.argsort(topo.element_to("site")[idx], kind="stable"))


def test_partition_errors(topo):
    with pytest.raises(ValueError, match=r"outside -1..299, first 300 at row 1"):
        topo.partition(np.array([0, 300, -2]), "region")
    with pytest.raises(ValueError, match="one-dimensional"):
        topo.partition(np.zeros((2, 2), dtype=np.int64), "region")
    with pytest.raises(ValueError, match="dense integer indices"):
        topo.partition(np.array([0.0]), "region")
    with pytest.raises(ValueError, match="out must be a contiguous 1-D int64"):
        topo.partition(np.array([0, 1]), "region", out=np.empty(1, dtype=np.int64))
    with pytest.raises(ValueError, match="scratch must be"):
        topo.partition(np.array([0, 1]), "region", scratch=np.empty(2, dtype=np.float64))
    big = Topology(("element",), {"element": np.arange(40_000)}, {})
    with pytest.raises(ValueError, match="scratch is int16 but level 'element' has 40000 nodes; pass a int32"):
        big.partition(np.array([0]), "element", scratch=np.empty(1, dtype=np.int16))
    with pytest.raises(ValueError, match="scratch is uint8 but level .element. has 40000 nodes"):
        big.partition(np.array([0]), "element", scratch=np.empty(1, dtype=np.uint8))
    assert scratch_dtype(255) == np.uint8 and scratch_dtype(256) == np.int16 and scratch_dtype(40_000) == np.int32
    np.testing.assert_array_equal(big.partition(np.array([5, 3, -1]), "element")[0], [1, 0, 2])


def test_scatter_matches_partition(topo, rng):
    idx = rng.integers(-1, topo.n_elements, 2000)
    vals = rng.normal(size=2000)
    out, offsets = topo.scatter(idx, "region", vals)
    order, offsets2 = topo.partition(idx, "region")
    np.testing.assert_array_equal(out, vals[order])
    np.testing.assert_array_equal(offsets, offsets2)
    with pytest.raises(ValueError, match="values must be a numeric array of shape"):
        topo.scatter(idx, "region", vals[:5])
    with pytest.raises(ValueError, match="outside -1..299"):
        topo.scatter(np.array([400]), "region", np.array([1.0]))


# ---- roll-up -------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["sum", "count", "min", "max", "mean"])
def test_rollup_matches_reference(topo, rng, how):
    vals = rng.normal(size=(topo.n_elements, 2))
    vals[rng.random(vals.shape) < 0.2] = np.nan
    for level in ("region", "site"):
        out = topo.rollup(vals, level, how=how)
        ref = ref_segment(vals, topo.element_to(level), topo.n_nodes(level), how)
        # same addition order in kernel and reference: agreement to rounding of ~10 terms
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    one = topo.rollup(vals[:, 0], "region", how=how)
    assert one.shape == (topo.n_nodes("region"),)


def test_rollup_sum_vs_add_at(topo, rng):
    vals = rng.poisson(5.0, topo.n_elements).astype(float)
    np.testing.assert_allclose(
        topo.rollup(vals, "region"),
        ref_rollup_sum(vals, topo.element_to("region"), topo.n_nodes("region")),
        rtol=0,
        atol=0,
    )  # integer-valued floats: exact


def test_rollup_errors(topo):
    with pytest.raises(ValueError, match="how must be one of"):
        topo.rollup(np.ones(300), "region", how="median")
    with pytest.raises(ValueError, match="is below 'site'"):
        topo.rollup(np.ones(30), "element", from_level="site")
    with pytest.raises(ValueError, match=r"values must have shape \(300,\)"):
        topo.rollup(np.ones(10), "region")
    with pytest.raises(ValueError, match="values must be numeric"):
        topo.rollup(np.array(["a"] * 300), "region")
    with pytest.raises(ValueError, match="active_only applies to element-level"):
        topo.rollup(np.ones(topo.n_nodes("site")), "region", from_level="site", active_only=True)


@given(st.integers(0, 2**32 - 1), st.sampled_from(["sum", "min", "max"]))
def test_multilevel_rollup_equals_direct(seed, how):
    rng = np.random.default_rng(seed)
    t = make_topology(rng, n_regions=3, n_sites=12, n_elements=80)
    v = rng.integers(-50, 50, (80, 2)).astype(float)  # integers: sums are exact in any order
    v[rng.random(v.shape) < 0.1] = np.nan
    direct = t.rollup(v, "region", how)
    staged = t.rollup(t.rollup(v, "site", how), "region", how, from_level="site")
    np.testing.assert_array_equal(direct, staged)
    if how == "sum":
        # conservation: the region totals add up to the element total
        assert np.nansum(v) == direct.sum()
        counts = t.rollup(t.rollup(v, "site", "count"), "region", "sum", from_level="site")
        np.testing.assert_array_equal(counts, t.rollup(v, "region", "count"))


# ---- changes ---------------------------------------------------------------------------------
def test_rehome_keeps_state_and_reroutes(topo, rng):
    state = rng.normal(size=(topo.n_elements, 3))
    moved = topo.ids["element"][:5]
    new_site = topo.ids["site"][0]
    t2, ch = topo.rehome_elements(moved, [new_site] * 5)
    assert t2.version == topo.version + 1 and ch.kind == "rehome_elements"
    assert ch.from_version == 0 and ch.to_version == 1
    for lv in t2.levels:
        np.testing.assert_array_equal(ch.old_to_new[lv], np.arange(topo.n_nodes(lv)))
    new_state = ch.remap(state, fill=np.nan)
    np.testing.assert_array_equal(new_state, state)  # the element keeps its row
    idx = t2.index_of(moved)
    np.testing.assert_array_equal(idx, np.arange(5))
    assert np.all(t2.element_to("site")[idx] == 0)
    assert np.all(t2.element_to("region")[idx] == t2.parent["site"][0])
    order, offsets = t2.partition(idx, "site")
    assert offsets[1] - offsets[0] == 5  # all routed to the new site
    np.testing.assert_array_equal(ch.old_parent_ids, topo.ids["site"][topo.element_to("site")[:5]])
    # roll-up follows the new structure and conserves the total
    np.testing.assert_allclose(t2.rollup(state, "region").sum(0), state.sum(0), rtol=1e-12)
    assert topo.element_to("site")[0] == topo.parent["element"][0]  # the old version is unchanged


def test_retire_keeps_index_but_not_routing(topo, rng):
    gone = topo.ids["element"][[3, 7]]
    t2, ch = topo.retire_elements(gone)
    assert t2.n_active == topo.n_active - 2 and t2.version == 1 and ch.kind == "retire_elements"
    assert t2.index_of(gone).tolist() == [3, 7]
    order, offsets = t2.partition(np.array([3, 7, 0, -1]), "region")
    unrouted = order[offsets[-2] : offsets[-1]]
    assert sorted(unrouted.tolist()) == [0, 1, 3]
    vals = np.ones(topo.n_elements)
    assert t2.rollup(vals, "region").sum() == topo.n_elements  # totals conserved by default
    assert t2.rollup(vals, "region", active_only=True).sum() == topo.n_elements - 2
    with pytest.raises(ValueError, match="already retired"):
        t2.retire_elements(gone[:1])
    with pytest.raises(ValueError, match="is retired; it cannot be re-homed"):
        t2.rehome_elements(gone[:1], [topo.ids["site"][0]])
    with pytest.raises(ValueError, match=r"already in the topology \(retired"):
        t2.add_elements(gone[:1], [topo.ids["site"][0]])


def test_add_elements_grows_state(topo, rng):
    state = rng.normal(size=topo.n_elements)
    sites = topo.ids["site"][[0, 1]]
    t2, ch = topo.add_elements([1, 2], sites, {"lat": [51.0, 51.5]})
    assert t2.n_elements == topo.n_elements + 2 and ch.n_new["element"] == topo.n_elements + 2
    np.testing.assert_array_equal(ch.ids, [1, 2])
    np.testing.assert_array_equal(ch.parent_ids, sites)
    new_state = ch.remap(state, "element", fill=-1.0)
    np.testing.assert_array_equal(new_state[:-2], state)
    assert new_state[-2:].tolist() == [-1.0, -1.0]
    assert t2.index_of([1, 2]).tolist() == [topo.n_elements, topo.n_elements + 1]
    assert t2.attributes["lat"][-2:].tolist() == [51.0, 51.5]
    assert t2.attributes["equipment_class"][-1] == -1  # not given: integer fill
    assert t2.attributes["vendor_name"][-1] == ""
    assert t2.element_to("site")[-2:].tolist() == [0, 1]
    order, offsets = t2.partition(np.array([topo.n_elements + 1]), "site")
    assert offsets[2] - offsets[1] == 1


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda t: t.add_elements([1, 1], [100, 100]), "lists id 1 more than once"),
        (lambda t: t.add_elements([1], None), "parent_ids is required"),
        (lambda t: t.add_elements([1], [999999]), "site 999999 is not in the topology .* add_node"),
        (lambda t: t.add_elements([1, 2], [t.ids["site"][0]]), "parent_ids has 1 values for 2"),
        (lambda t: t.add_elements([1], [t.ids["site"][0]], {"colour": [1]}), "attribute 'colour' is not in"),
        (lambda t: t.add_elements([1], [t.ids["site"][0]], {"lat": [1.0, 2.0]}), r"attributes\['lat'\] has shape"),
        (lambda t: t.add_elements([1], [t.ids["site"][0]], names=["x"]), "has no element names"),
        (lambda t: t.add_elements(t.ids["element"][:1], [t.ids["site"][0]]), r"already in the topology \(active"),
        (lambda t: t.retire_elements([424242]), "element 424242 is not in the topology"),
        (lambda t: t.retire_elements(np.repeat(t.ids["element"][:1], 2)), "more than once"),
        (lambda t: t.rehome_elements(t.ids["element"][:2], [t.ids["site"][0]]), "new_parent_ids has 1 values for 2"),
        (lambda t: t.rehome_elements(t.ids["element"][:1], [5]), "site 5 is not in the topology"),
        (lambda t: t.add_node("element", 5, 100), "use add_elements"),
        (lambda t: t.add_node("site", t.ids["site"][0], 1), "already in the topology"),
        (lambda t: t.add_node("region", 99, 1), "root level"),
        (lambda t: t.add_node("site", 999, None), "parent_id is required"),
        (lambda t: t.add_node("site", 999, 12345), "region 12345 is not in the topology"),
        (lambda t: t.add_node("city", 1), "unknown topology level 'city'"),
    ],
)
def test_change_errors(topo, call, match):
    with pytest.raises(ValueError, match=match):
        call(topo)


def test_single_level_topology_changes():
    t = Topology(("cell",), {"cell": [5, 6]}, {}, {"x": [1.0, 2.0]})
    t2, ch = t.add_elements([7], attributes={"x": [3.0]})
    assert t2.n_elements == 3 and ch.parent_ids.tolist() == [-1]
    t3, ch = t2.retire_elements([6])
    assert ch.parent_ids.tolist() == [-1]
    with pytest.raises(ValueError, match="parent_ids must be None"):
        t.add_elements([8], [1])
    with pytest.raises(ValueError, match="only the element level"):
        t.rehome_elements([5], [1])
    order, offsets = t3.partition(np.array([0, 1, 2]), "cell")
    assert offsets.tolist() == [0, 1, 1, 2, 3] and order.tolist() == [0, 2, 1]


def test_add_node_then_elements_and_names():
    t = small()
    t2, ch = t.add_node("region", 3, name="East")
    assert ch.kind == "add_node" and ch.n_new["region"] == 3 and ch.parent_ids.tolist() == [-1]
    assert t2.names["region"].tolist() == ["N", "S", "East"]
    state = np.array([1.0, 2.0])
    assert ch.remap(state, "region", fill=0.0).tolist() == [1.0, 2.0, 0.0]
    t3, _ = t2.add_node("site", 30, 3, name="s30")
    assert t3.names["site"].tolist() == ["", "", "", "s30"]
    t4, _ = t3.add_node("site", 31, 3)
    assert t4.names["site"][-1] == ""
    t5, _ = t4.add_elements([200, 201], [30, 31])
    assert t5.element_to("region")[-2:].tolist() == [2, 2] and t5.version == 4
    assert t5.rollup(np.arange(6.0), "region").tolist() == [1.0, 5.0, 9.0]
    with pytest.raises(ValueError, match="unknown topology level"):
        ch.remap(state, "city")


def test_add_elements_fills_bool_attribute():
    t = Topology(("cell",), {"cell": [1]}, {}, {"ok": np.array([True])})
    t2, _ = t.add_elements([2])
    assert t2.attributes["ok"].tolist() == [True, False]


def test_element_names_extend():
    t = Topology.from_columns([1, 2], {"site": [7, 7]}, names={"element": ["a", "b"]})
    t2, _ = t.add_elements([3], [7], names=["c"])
    assert t2.names["element"].tolist() == ["a", "b", "c"]
    t3, _ = t.add_elements([3], [7])
    assert t3.names["element"].tolist() == ["a", "b", ""]
    with pytest.raises(ValueError, match=r"names has shape"):
        t.add_elements([3], [7], names=["c", "d"])


def test_compact_maps_and_remap(topo, rng):
    state = rng.normal(size=(topo.n_elements, 2))
    t2, _ = topo.retire_elements(topo.ids["element"][[0, 5]])
    t3, ch = t2.compact()
    assert ch.kind == "compact" and t3.n_elements == topo.n_elements - 2 and t3.version == 2
    assert ch.old_to_new["element"][[0, 5]].tolist() == [-1, -1]
    keep = np.ones(topo.n_elements, bool)
    keep[[0, 5]] = False
    np.testing.assert_array_equal(ch.remap(state), state[keep])
    np.testing.assert_array_equal(t3.ids["element"], topo.ids["element"][keep])
    np.testing.assert_array_equal(t3.element_to("site"), topo.element_to("site")[keep])
    np.testing.assert_array_equal(ch.old_to_new["site"], np.arange(topo.n_nodes("site")))


def test_compact_drops_empty_nodes():
    t = small()
    t2, _ = t.retire_elements([102])  # site 20 (region 2) is left empty
    t3, ch = t2.compact(drop_empty_nodes=True)
    assert t3.ids["site"].tolist() == [10, 21] and ch.old_to_new["site"].tolist() == [0, -1, 1]
    assert ch.old_to_new["region"].tolist() == [0, 1]
    assert t3.element_to("region").tolist() == [0, 0, 1]
    t4, _ = t3.retire_elements([103])
    t5, ch = t4.compact(drop_empty_nodes=True)
    assert t5.ids["region"].tolist() == [1] and ch.old_to_new["region"].tolist() == [0, -1]
    assert t5.names["region"].tolist() == ["N"]


def test_remap_rows_errors_and_fill():
    out = remap_rows(np.array([[1, 2], [3, 4]]), np.array([1, 0]), 3, fill=9)
    assert out.tolist() == [[3, 4], [1, 2], [9, 9]]
    with pytest.raises(ValueError, match="state_array has 3 rows but old_to_new has 2"):
        remap_rows(np.zeros(3), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="old_to_new points outside"):
        remap_rows(np.zeros(2), np.array([0, 5]), 2)
    with pytest.raises(ValueError, match="n_new must be"):
        remap_rows(np.zeros(2), np.array([0, 1]), -1)


@given(st.integers(0, 2**32 - 1))
def test_change_sequence_conserves_state(seed):
    """Random adds / re-homes / retires: every old element's state row follows it by id."""
    rng = np.random.default_rng(seed)
    t = make_topology(rng, n_regions=3, n_sites=8, n_elements=40)
    state = t.ids["element"].astype(float) * 10  # state tied to the id
    next_id = 10**6
    for _ in range(6):
        op = rng.integers(0, 4)
        active_ids = t.ids["element"][t.active]
        if op == 0:
            t, ch = t.add_elements([next_id], [rng.choice(t.ids["site"])])
            next_id += 1
        elif op == 1 and len(active_ids) > 1:
            e = rng.choice(active_ids, 2, replace=False)
            t, ch = t.rehome_elements(e, rng.choice(t.ids["site"], 2))
        elif op == 2 and len(active_ids) > 1:
            t, ch = t.retire_elements([rng.choice(active_ids)])
        else:
            t, ch = t.compact()
        state = ch.remap(state, fill=np.nan)
        new = np.isnan(state)
        state[new] = t.ids["element"][new] * 10.0
        assert isinstance(ch, TopologyChange) and ch.to_version == t.version
    np.testing.assert_array_equal(state, t.ids["element"] * 10.0)
    assert len(t.change_log) == t.version


# ---- state ---------------------------------------------------------------------------------
def test_state_round_trip(topo):
    t2, _ = topo.retire_elements(topo.ids["element"][:2])
    t3, _ = t2.add_node("site", 5000, topo.ids["region"][0], name="new")
    d = t3.to_state()
    assert all(isinstance(v, (np.ndarray, int, str)) for v in d.values())
    back = Topology.from_state(d)
    assert back.equals(t3) and back.change_log == t3.change_log
    assert not back.equals(topo) and not back.equals("x")
    with pytest.raises(ValueError, match="lacks 'active'"):
        Topology.from_state({"levels": np.array(["a"]), "version": 0})


def test_equals_detects_differences():
    t = small()
    t2 = Topology.from_columns(
        [100, 101, 102, 103],
        {"region": [1, 1, 2, 2], "site": [10, 10, 20, 21]},
        {"lat": [1.0, 2.0, 3.0, 5.0]},
        names={"region": ["N", "N", "S", "S"]},
    )
    assert t.equals(small()) and not t.equals(t2)
    t3 = Topology.from_columns(
        [100, 101, 102, 103], {"region": [1, 1, 2, 2], "site": [10, 10, 20, 21]}, {"lat": [1.0, 2.0, 3.0, 4.0]}
    )
    assert not t.equals(t3)


# ---- node re-home, restore, attributes, reconcile ----------------------------------------------
def test_rehome_nodes_moves_subtree():
    t = small()
    t2, ch = t.rehome_nodes("site", [20], [1])
    assert ch.kind == "rehome_nodes" and ch.old_parent_ids.tolist() == [2] and ch.parent_ids.tolist() == [1]
    assert t2.element_to("region").tolist() == [0, 0, 0, 1]
    assert t2.rollup(np.ones(4), "region").tolist() == [3.0, 1.0]
    for call, match in (
        (lambda: t.rehome_nodes("region", [1], [2]), "root level"),
        (lambda: t.rehome_nodes("element", [100], [10]), "use rehome_elements"),
        (lambda: t.rehome_nodes("site", [20, 21], [1]), "has 1 values for 2 nodes"),
        (lambda: t.rehome_nodes("site", [99], [1]), "site 99 is not in the topology"),
        (lambda: t.rehome_nodes("site", [20, 20], [1, 1]), "more than once"),
    ):
        with pytest.raises(ValueError, match=match):
            call()


def test_restore_elements():
    t, _ = small().retire_elements([101])
    t2, ch = t.restore_elements([101])
    assert ch.kind == "restore_elements" and t2.active.all() and t2.version == 2
    assert t2.partition(np.array([1]), "region")[1].tolist() == [0, 1, 1, 1]
    with pytest.raises(ValueError, match="element 100 is not retired"):
        t.restore_elements([100])


def test_set_attributes():
    t = Topology.from_columns([1, 2], {"site": [7, 7]}, {"lat": [1.0, 2.0], "vendor": np.array(["a", "b"])})
    t2, ch = t.set_attributes([2], {"lat": [5.0], "vendor": ["longer"]})
    assert ch.kind == "set_attributes" and t2.attributes["lat"].tolist() == [1.0, 5.0]
    assert t2.attributes["vendor"].tolist() == ["a", "longer"] and t.attributes["lat"][1] == 2.0
    with pytest.raises(ValueError, match="attribute 'x' is not in this topology"):
        t.set_attributes([1], {"x": [1]})
    with pytest.raises(ValueError, match=r"attributes\['lat'\] has shape \(2,\), expected \(1,\)"):
        t.set_attributes([1], {"lat": [1.0, 2.0]})


def _renumbered(t: Topology, rng) -> Topology:
    """The same structure as freshly loaded from a file: rows shuffled, nodes numbered by id."""
    from telcoanalytics.topology.store import _topology_columns, topology_from_rows

    cols = _topology_columns(t)
    perm = rng.permutation(t.n_elements)
    return topology_from_rows({c: np.asarray(v)[perm].tolist() for c, v in cols.items()}, t.levels)


def _same_by_id(a: Topology, b: Topology):
    el = a.element_level
    ia, ib = a.index_of(b.ids[el]), np.arange(b.n_elements)
    assert np.all(ia >= 0)
    np.testing.assert_array_equal(a.active[ia], b.active[ib])
    for lv in a.levels[:-1]:
        np.testing.assert_array_equal(a.ids[lv][a.element_to(lv)[ia]], b.ids[lv][b.element_to(lv)[ib]])
    for k in b.attributes:
        np.testing.assert_array_equal(a.attributes[k][ia], b.attributes[k][ib])
    extra = np.setdiff1d(a.ids[el], b.ids[el])
    assert not np.any(a.active[a.index_of(extra)])  # elements missing from the target are retired


def test_reconcile_to_fresh_file_keeps_dense_indices(topo, rng):
    t = topo
    sites, _regions = t.ids["site"], t.ids["region"]
    t1, _ = t.add_node("region", 77)
    t1, _ = t1.add_node("site", 7700, 77)
    t1, _ = t1.add_elements([1, 2], [7700, sites[0]], {"lat": [9.0, 9.5]})
    t1, _ = t1.rehome_elements(t.ids["element"][:3], [sites[1]] * 3)
    t1, _ = t1.rehome_nodes("site", [sites[2]], [77])
    t1, _ = t1.retire_elements(t.ids["element"][10:12])
    t1, _ = t1.set_attributes(t.ids["element"][20:22], {"vendor_name": ["z", "z"]})
    target = _renumbered(t1, rng)
    state = np.arange(t.n_elements, dtype=float)
    res, changes = t.reconcile(target)
    _same_by_id(res, target)
    assert res.version == len(changes) and [c.kind for c in changes][:3] == ["add_node", "add_node", "rehome_nodes"]
    for ch in changes:
        state = ch.remap(state, fill=np.nan)
    np.testing.assert_array_equal(res.ids["element"][: t.n_elements], t.ids["element"])  # rows kept
    np.testing.assert_array_equal(state[: t.n_elements], np.arange(t.n_elements))
    # reconciling again changes nothing; a target with a retired element coming back restores it
    again, none = res.reconcile(target)
    assert none == [] and again is res
    back, ch = res.reconcile(_renumbered(t, rng))
    assert "restore_elements" in [c.kind for c in ch] and back.active[t.index_of(t.ids["element"])].all()


def test_reconcile_new_retired_element_and_names(rng):
    t = Topology.from_columns([1, 2], {"site": [7, 7]}, {"x": [1.0, np.nan]}, names={"element": ["a", "b"]})
    tgt = Topology.from_columns(
        [2, 3],
        {"site": [8, 7]},
        {"x": [np.nan, 3.0]},
        names={"element": ["b", "c"]},
    )
    tgt, _ = tgt.retire_elements([3])
    res, ch = t.reconcile(tgt)
    assert [c.kind for c in ch] == ["add_node", "add_elements", "retire_elements", "rehome_elements", "retire_elements"]
    assert res.names["element"].tolist() == ["a", "b", "c"] and res.active.tolist() == [False, True, False]
    _same_by_id(res, tgt)
    with pytest.raises(ValueError, match="target must be a Topology with levels"):
        t.reconcile(Topology(("cell",), {"cell": [1]}, {}))
    with pytest.raises(ValueError, match="reconcile keeps the attribute set"):
        t.reconcile(Topology.from_columns([1], {"site": [7]}))
    single = Topology(("cell",), {"cell": [1, 2]}, {})
    res, ch = single.reconcile(Topology(("cell",), {"cell": [2, 5]}, {}))
    assert res.ids["cell"].tolist() == [1, 2, 5] and res.active.tolist() == [False, True, True]


@given(st.integers(0, 2**32 - 1))
def test_reconcile_property(seed):
    """For random edits, reconcile(renumbered target) reaches the target without moving old rows."""
    rng = np.random.default_rng(seed)
    t = make_topology(rng, n_regions=3, n_sites=6, n_elements=25)
    cur = t
    for j in range(int(rng.integers(1, 6))):
        op = int(rng.integers(0, 5))
        act = cur.ids["element"][cur.active]
        if op == 0:
            cur, _ = cur.add_elements([10**6 + j], [rng.choice(cur.ids["site"])])
        elif op == 1 and len(act) > 1:
            cur, _ = cur.retire_elements([rng.choice(act)])
        elif op == 2 and len(act):
            cur, _ = cur.rehome_elements([rng.choice(act)], [rng.choice(cur.ids["site"])])
        elif op == 3:
            cur, _ = cur.rehome_nodes("site", [rng.choice(cur.ids["site"])], [rng.choice(cur.ids["region"])])
        else:
            cur, _ = cur.add_node("site", 5000 + j, rng.choice(cur.ids["region"]))
    target = _renumbered(cur, rng)
    res, changes = t.reconcile(target)
    _same_by_id(res, target)
    np.testing.assert_array_equal(res.ids["element"][: t.n_elements], t.ids["element"])
    assert res.version == t.version + len(changes)
