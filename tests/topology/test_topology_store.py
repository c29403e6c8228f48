"""Topology loaders: CSV, flat and nested JSON, the SQLite topology database; round trips, errors."""

import json
import sqlite3

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.records import TOPOLOGY_DTYPE, VENDORS
from telcoanalytics.topology import (
    SQLITE_SCHEMA,
    Topology,
    list_versions,
    load_sqlite,
    read_csv,
    read_json,
    save_sqlite,
    topology_from_json,
    topology_from_rows,
    topology_to_json,
    write_csv,
    write_json,
)


def rich_topology(rng, n=60):
    """Region > site > element with every attribute kind, names, a retired element."""
    site_of = rng.integers(0, 9, n)
    region_of_site = np.array([1, 1, 2, 2, 3, 3, 3, 4, 4])
    t = Topology.from_columns(
        np.arange(5000, 5000 + n) * 7,
        {"region": region_of_site[site_of], "site": site_of + 100},
        {
            "equipment_class": rng.integers(0, 5, n).astype(np.int16),
            "vendor": rng.integers(0, 3, n).astype(np.int16),
            "technology": rng.integers(0, 5, n).astype(np.int16),
            "lat": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(50, 52, n)),
            "lon": rng.uniform(-1, 1, n),
            "owner": np.array(["acme", "beta co", "c,d"])[site_of % 3],
            "capacity": rng.integers(1, 100, n),
        },
        names={
            "region": np.array(["north", "north", "south", "south", "east", "east", "east", "west", "west"])[site_of],
            "site": np.char.add("site-", (site_of + 100).astype(str)),
        },
    )
    t, _ = t.retire_elements([t.ids["element"][3]])
    return t


def same_structure(a: Topology, b: Topology, element_order: bool = True):
    """Equal up to version, change log and dense numbering (files other than SQLite store no
    versions; upper-level nodes are renumbered by id, nested JSON orders elements by tree)."""
    assert a.levels == b.levels
    el = a.element_level
    if element_order:
        np.testing.assert_array_equal(a.ids[el], b.ids[el])
    for lv in a.levels:
        assert sorted(a.ids[lv].tolist()) == sorted(b.ids[lv].tolist()), lv
    ia = {lv: np.argsort(a.ids[lv], kind="stable") for lv in a.levels}  # dense index by sorted id
    ib = {lv: np.argsort(b.ids[lv], kind="stable") for lv in b.levels}
    for d, lv in enumerate(a.levels[1:], start=1):
        up = a.levels[d - 1]
        np.testing.assert_array_equal(a.ids[up][a.parent[lv][ia[lv]]], b.ids[up][b.parent[lv][ib[lv]]])
    assert set(a.names) == set(b.names)
    for lv in a.names:
        np.testing.assert_array_equal(a.names[lv][ia[lv]], b.names[lv][ib[lv]])
    assert list(a.attributes) == list(b.attributes)
    for k in a.attributes:
        assert a.attributes[k].dtype.kind == b.attributes[k].dtype.kind, k
        # floats are written with repr(), which round-trips exactly: compare bit for bit
        np.testing.assert_array_equal(a.attributes[k][ia[el]], b.attributes[k][ib[el]])
    np.testing.assert_array_equal(a.active[ia[el]], b.active[ib[el]])


# ---- CSV ---------------------------------------------------------------------------------------
def test_csv_round_trip(tmp_path, rng):
    t = rich_topology(rng)
    t, _ = t.add_node("site", 50, 4)  # an unsorted, later node id order: renumbered by id on reload
    t, _ = t.add_elements([9], [50], {"vendor": [2]})
    write_csv(t, tmp_path / "t.csv")
    back = read_csv(tmp_path / "t.csv")
    same_structure(t, back)
    assert back.attributes["vendor"].dtype == np.int16


def test_csv_synth_layout_with_names(tmp_path):
    tab = np.zeros(3, dtype=TOPOLOGY_DTYPE)
    tab["element_id"], tab["site_id"], tab["region_id"] = [7, 8, 9], [1, 1, 2], [0, 0, 0]
    (tmp_path / "t.csv").write_text(
        "element_id,site_id,region_id,equipment_class,vendor,technology,lat,lon\n"
        "7,1,0,macro_cell,vendor_a,4g,51.5,-0.1\n"
        "8,1,0,1,vendor_b,5g,,0.2\n"
        "\n"
        "9,2,0,core_router,2,ip,51.0,0.0\n"
    )
    t = read_csv(tmp_path / "t.csv")
    assert t.levels == ("region", "site", "element")
    assert t.attributes["equipment_class"].tolist() == [0, 1, 2]
    assert t.attributes["vendor"].tolist() == [0, 1, 2] and VENDORS[2] == "vendor_c"
    assert t.attributes["technology"].tolist() == [2, 3, 4]
    assert np.isnan(t.attributes["lat"][1])
    assert t.element_to("site").tolist() == [0, 0, 1]


def test_csv_custom_levels(tmp_path):
    (tmp_path / "t.csv").write_text(
        "cell,country,area,area_name,cell_name,band\n1,44,7,Kent,c1,n78\n2,44,8,Essex,c2,n1\n"
    )
    t = read_csv(tmp_path / "t.csv", levels=("country", "area", "cell"))
    assert t.levels == ("country", "area", "cell")
    assert t.names["area"].tolist() == ["Kent", "Essex"] and t.names["cell"].tolist() == ["c1", "c2"]
    assert t.attributes["band"].tolist() == ["n78", "n1"]


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "is empty"),
        ("element_id,site_id\n1,10\n", r"has no column 'region_id' \(or 'region'\) for level 'region'"),
        ("site_id,region_id\n1,10\n", "has no column 'element_id'"),
        (
            "element_id,site_id,region_id\n1,10,1\n1,11,1\n",
            r"element_id 1 appears more than once in the topology "
            r"\(.*line 2 and .*line 3\)",
        ),
        (
            "element_id,site_id,region_id\n1,10,1\n2,10,2\n",
            r"site 10 has two parents: region 1 \(.*line 2\) and "
            r"region 2 \(.*line 3\)",
        ),
        ("element_id,site_id,region_id\n1,10,1\nx,10,1\n", r"line 3: element_id 'x' is not an integer id"),
        ("element_id,site_id,region_id\n1,10,1\n2,10\n", "line 3: 2 fields for 3 columns"),
        ("element_id,site_id,region_id,vendor\n1,10,1,nokia\n", r"line 2: vendor 'nokia' is neither a known name"),
        ("element_id,site_id,region_id,vendor\n1,10,1,7\n", r"line 2: vendor '7' is neither"),
        ("element_id,site_id,region_id,active\n1,10,1,maybe\n", r"line 2: active 'maybe' is not 1/0"),
        ("element_id,site_id,region_id,site_name\n1,10,1,a\n2,10,1,b\n", r"site 10 has two names"),
    ],
)
def test_csv_errors_name_the_line(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_csv(p)


def test_csv_bad_levels_argument(tmp_path):
    (tmp_path / "t.csv").write_text("element_id\n1\n")
    with pytest.raises(ValueError, match="levels must be a non-empty sequence"):
        read_csv(tmp_path / "t.csv", levels=())
    t = read_csv(tmp_path / "t.csv", levels=("element",))
    assert t.levels == ("element",) and t.n_elements == 1


def test_column_type_inference():
    cols = {
        "element_id": [1, 2, 3],
        "i": ["1", " 2", "-3"],
        "f": ["1.5", "", "2"],
        "s": ["a", "1", ""],
        "b": [True, False, True],
        "n": [None, 2.5, 3],
    }
    t = topology_from_rows(cols, levels=("element",))
    a = t.attributes
    assert a["i"].dtype == np.int64 and a["i"].tolist() == [1, 2, -3]
    assert a["f"].dtype == np.float64 and np.isnan(a["f"][1])
    assert a["s"].dtype.kind == "U" and a["b"].dtype == bool
    assert a["n"].dtype == np.float64 and np.isnan(a["n"][0])
    mixed = topology_from_rows({"element_id": [1, 2], "x": [True, 1], "y": [True, 1.5]}, levels=("element",))
    assert mixed.attributes["x"].tolist() == ["True", "1"] and mixed.attributes["y"].dtype.kind == "U"
    with pytest.raises(ValueError, match="levels must name at least"):
        topology_from_rows(cols, levels=())
    with pytest.raises(ValueError, match=r"row 1: element_id 2.5 is not an integer id"):
        topology_from_rows({"element_id": [1, 2.5]}, levels=("element",))
    with pytest.raises(ValueError, match=r"row 0: element_id True is not"):
        topology_from_rows({"element_id": [True]}, levels=("element",))
    t = topology_from_rows({"element_id": [1.0, "2"], "equipment_class": [-1, "small_cell"]}, levels=("element",))
    assert t.ids["element"].tolist() == [1, 2] and t.attributes["equipment_class"].tolist() == [-1, 1]


# ---- JSON --------------------------------------------------------------------------------------
@pytest.mark.parametrize("nested", [False, True])
def test_json_round_trip(tmp_path, rng, nested):
    t = rich_topology(rng)
    write_json(t, tmp_path / "t.json", nested=nested)
    doc = json.loads((tmp_path / "t.json").read_text())
    assert ("nodes" in doc) == nested
    same_structure(t, read_json(tmp_path / "t.json"), element_order=not nested)


def test_json_list_of_rows_default_levels():
    t = topology_from_json([{"element_id": 1, "site_id": 2, "region_id": 3, "vendor": "vendor_b"}])
    assert t.levels == ("region", "site", "element") and t.attributes["vendor"].tolist() == [1]


def test_nested_json_empty_nodes_attributes_object_and_levels():
    doc = {
        "levels": ["region", "site", "cell"],
        "nodes": [
            {
                "id": 1,
                "name": "N",
                "level": "region",
                "children": [
                    {
                        "id": 10,
                        "children": [
                            {"id": 100, "attributes": {"lat": 1.0}, "technology": "5g"},
                            {"id": 101, "lat": 2.0, "active": 0},
                        ],
                    },
                    {"id": 11, "name": "empty site"},
                ],
            },
            {"id": 2, "name": "S"},
        ],
    }
    t = topology_from_json(doc)
    assert t.levels == ("region", "site", "cell") and t.version == 0 and t.change_log == []
    assert t.ids["site"].tolist() == [10, 11] and t.names["site"].tolist() == ["", "empty site"]
    assert t.ids["region"].tolist() == [1, 2] and t.names["region"].tolist() == ["N", "S"]
    assert t.active.tolist() == [True, False]
    assert t.attributes["lat"].tolist() == [1.0, 2.0] and t.attributes["technology"].tolist() == [3, -1]
    # a site without elements under a region without elements
    t2 = topology_from_json(
        {"nodes": [{"id": 1, "children": [{"id": 10, "children": [{"id": 5}]}]}, {"id": 2, "children": [{"id": 20}]}]}
    )
    assert t2.ids["site"].tolist() == [10, 20] and t2.node_to("site", "region").tolist() == [0, 1]


@pytest.mark.parametrize(
    "doc,match",
    [
        (
            {"nodes": [{"id": 1, "children": [{"id": 10, "children": [{"id": 100, "children": [{"id": 5}]}]}]}]},
            r"nodes\[0\].children\[0\].children\[0\]: element 100 has children; unknown level",
        ),
        (
            {"levels": ["site", "element"], "nodes": [{"id": 1, "level": "region"}]},
            r"says level 'region' but sits at depth 0, which is level 'site'",
        ),
        ({"nodes": [{"children": []}]}, r"nodes\[0\]: each node must be an object with an 'id'"),
        ({"nodes": {"id": 1}}, "'nodes' must be a list"),
        ({"nodes": [{"id": 1, "children": {"id": 2}}]}, "children of region 1 must be a list"),
        (
            {
                "nodes": [
                    {"id": 1, "children": [{"id": 10, "children": [{"id": 100}]}]},
                    {"id": 2, "children": [{"id": 10, "children": [{"id": 101}]}]},
                ]
            },
            r"site 10 appears more than once \(first at nodes\[0\].children\[0\]\)",
        ),
        (
            {"nodes": [{"id": 1, "children": [{"id": 10, "children": [{"id": 100}, {"id": 100}]}]}]},
            r"element_id 100 appears more than once in the topology \(.*children\[0\] and .*children\[1\]\)",
        ),
        (
            {
                "elements": [
                    {"element_id": 1, "site_id": 2, "region_id": 3},
                    {"element_id": 2, "site_id": 2, "region_id": 4},
                ]
            },
            r"site 2 has two parents: region 3 \(json elements\[0\]\) and region 4 \(json elements\[1\]\)",
        ),
        ({"elements": [{"element_id": 1, "site_id": 2}]}, "has no column 'region_id'"),
        ({"elements": 5}, "expected a list of element objects"),
        ({"levels": ["a", "b"], "elements": []}, "disagree"),
    ],
)
def test_json_errors(doc, match):
    levels = ("x", "y") if doc.get("levels") == ["a", "b"] else None
    with pytest.raises(ValueError, match=match):
        topology_from_json(doc, levels)


def test_json_file_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_nested_json_element_names():
    t = Topology.from_columns([1, 2], {"site": [7, 8]}, names={"element": ["a", "b"], "site": ["s7", "s8"]})
    doc = topology_to_json(t, nested=True)
    assert doc["nodes"][0]["children"][0]["name"] == "a"
    same_structure(t, topology_from_json(doc, ("site", "element")))


def test_single_level_json_round_trip():
    t = Topology(("cell",), {"cell": [3, 4]}, {}, {"x": [1.0, np.nan]})
    back = topology_from_json(topology_to_json(t, nested=True))
    same_structure(t, back)


# ---- SQLite -------------------------------------------------------------------------------------
def test_sqlite_round_trip_versions_and_change_log(tmp_path, rng):
    db = tmp_path / "topo.db"
    t0 = rich_topology(rng)  # version 1 (one retire)
    assert save_sqlite(t0, db, note="initial") == 1
    t1, _ = t0.add_node("site", 999, 4, name="site-999")
    t2, _ = t1.add_elements([1, 2], [999, 100], {"owner": ["new", "new"], "lat": [50.0, 51.0]})
    t3, _ = t2.rehome_elements([t0.ids["element"][0]], [999])
    save_sqlite(t3, db)
    latest = load_sqlite(db)
    assert latest.equals(t3) and latest.change_log == t3.change_log
    old = load_sqlite(db, version=1)
    assert old.equals(t0) and len(old.change_log) == 1
    assert [v["version"] for v in list_versions(db)] == [1, 4]
    assert list_versions(db)[0]["note"] == "initial" and list_versions(db)[0]["n_active"] == t0.n_active
    # saving the same version again replaces it
    save_sqlite(t3, db, note="again")
    assert [v["note"] for v in list_versions(db)] == ["initial", "again"]
    assert load_sqlite(db).equals(t3)
    # a real file database that operators can query with SQL
    con = sqlite3.connect(db)
    n = con.execute("SELECT COUNT(*) FROM elements WHERE version = 4 AND parent_id = 999").fetchone()[0]
    kinds = [r[0] for r in con.execute("SELECT kind FROM topology_change ORDER BY version")]
    con.close()
    assert n == 2 and kinds == ["retire_elements", "add_node", "add_elements", "rehome_elements"]


def test_sqlite_new_attribute_in_later_version_and_single_level(tmp_path):
    db = tmp_path / "t.db"
    a = Topology(("cell",), {"cell": [1, 2]}, {}, {"x": [1.0, 2.0]})
    save_sqlite(a, db)
    b = Topology(
        ("cell",),
        {"cell": [1, 2]},
        {},
        {"x": [1.0, 2.0], "flag": np.array([True, False])},
        version=1,
        names={"cell": ["a", "b"]},
    )
    save_sqlite(b, db)
    assert load_sqlite(db, 0).equals(a) and load_sqlite(db).equals(b)


def test_sqlite_schema_is_documented():
    import telcoanalytics.topology.sqlite as ts

    for table in ("meta", "topology_version", "levels", "nodes", "elements", "attributes", "topology_change"):
        assert f"CREATE TABLE IF NOT EXISTS {table}" in SQLITE_SCHEMA and table in ts.__doc__


def test_sqlite_errors(tmp_path, rng):
    db = tmp_path / "t.db"
    with pytest.raises(ValueError, match="does not exist; create it with save_sqlite"):
        load_sqlite(db)
    t = rich_topology(rng)
    bad = Topology(("cell",), {"cell": [1]}, {}, {"parent_id": [1]})
    with pytest.raises(ValueError, match="cannot be a column of the elements table"):
        save_sqlite(bad, db)
    bad = Topology(("cell",), {"cell": [1]}, {}, {"a b": [1]})
    with pytest.raises(ValueError, match="cannot be a column"):
        save_sqlite(bad, db)
    assert not db.exists()  # a rejected save creates nothing
    con = sqlite3.connect(db)  # an operator-made database in the documented schema, still empty
    con.executescript(SQLITE_SCHEMA)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="holds no topology version yet"):
        load_sqlite(db)
    save_sqlite(t, db)
    with pytest.raises(ValueError, match=r"has no topology version 7; stored versions are \[1\]"):
        load_sqlite(db, version=7)
    con = sqlite3.connect(db)
    con.execute("UPDATE elements SET parent_id = 4242 WHERE dense_index = 0")
    con.commit()
    con.execute("UPDATE meta SET value = '99'")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="schema version 99, expected 1"):
        load_sqlite(db)
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET value = '1'")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match=r"elements row for element 35000 has parent_id 4242, which is not a site"):
        load_sqlite(db)
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    with pytest.raises(ValueError, match="is not a telcoanalytics topology database"):
        load_sqlite(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ValueError, match="is not a telcoanalytics topology database"):
        list_versions(junk)


@settings(max_examples=12)  # file I/O per example: a dozen random shapes is plenty
@given(st.integers(0, 2**32 - 1))
def test_all_formats_agree(seed):
    """CSV, flat JSON, nested JSON and SQLite give the same topology (hypothesis over shapes)."""
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(seed)
    t = rich_topology(rng, n=int(rng.integers(4, 30)))
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        write_csv(t, d / "t.csv")
        write_json(t, d / "f.json")
        write_json(t, d / "n.json", nested=True)
        save_sqlite(t, d / "t.db")
        same_structure(t, read_csv(d / "t.csv"))
        same_structure(t, read_json(d / "f.json"))
        same_structure(t, read_json(d / "n.json"), element_order=False)
        assert load_sqlite(d / "t.db").equals(t)
