"""The positional layout of the direct build's finest cuboid (measures at row = packed key)
against the indexed layout, and the PositionalCellTable against a CellTable."""

from types import SimpleNamespace

import numpy as np
import pytest

from telcoanalytics.cube import Cube, CubeSpec
from telcoanalytics.cube.table import _EPOCH_MAX, CellTable, PositionalCellTable
from tests.reference.cube import make_cdr, make_topology

from .test_cube import N, oracle_columns
from .test_cube_direct import DIMS, FAST, assert_same, element_cuboids

POS = 1 << 23  # positional_max_keys turning the layout on (off by default)


def layouts(cube):
    return [c["layout"] for c in cube.memory_report()["cuboids"]]


def test_positional_chosen_and_identical_to_indexed(rng):
    topo = make_topology(rng)
    cdr = make_cdr(rng, topo, N, unknown_frac=0.005)
    spec = dict(dimensions=DIMS, measures=FAST + ["mean:duration_ms"], cuboids=element_cuboids(), direct_min_keys=1)
    a = Cube(CubeSpec(**spec, positional_max_keys=POS), topo)
    b = Cube(CubeSpec(**spec), topo)
    assert layouts(a)[0] == "positional" and layouts(b)[0] == "dense"
    sets = [c.dims for c in a.cuboids] + [("site", "service"), ("region",)]
    for p in np.array_split(cdr, 4):
        ra, rb = a.update(p), b.update(p)
        assert (ra.n_applied, ra.n_rejected) == (rb.n_applied, rb.n_rejected)
        # read between batches: the compact cells are gathered, then go stale again
        assert_same(a, b, sets[:1])
    assert a.memory_report()["last_batch_build"] == b.memory_report()["last_batch_build"] == "direct"
    assert a.n_cells == b.n_cells
    assert_same(a, b, sets)
    assert (
        a.view().group_by("element").top_k("count", 3).tolist()
        == b.view().group_by("element").top_k("count", 3).tolist()
    )
    assert a.nbytes > 0 and a.memory_report()["nbytes"] == a.nbytes
    # the indexed layout is checked against DuckDB in test_cube_direct; the grand total here
    cols, n_bad = oracle_columns(topo, cdr)
    assert a.query(())["count"][0] == len(cdr) - n_bad


def test_positional_merge_checkpoint_and_counts_only(rng):
    topo = make_topology(rng)
    parts = np.array_split(make_cdr(rng, topo, N // 2), 3)
    spec = dict(
        dimensions=["element", "service", "region"],
        measures=FAST,
        cuboids=[("element", "service"), ("region",)],
        direct_min_keys=1,
    )
    a = Cube(CubeSpec(**spec, positional_max_keys=POS), topo)
    b = Cube(CubeSpec(**spec), topo)
    for p in parts[:2]:
        a.update(p)
        b.update(p)
    back = Cube.from_state(a.to_state())
    assert layouts(back)[0] == "positional" and int(a.to_state()["positional_max_keys"]) == 1 << 23
    back.update(parts[2])  # restored positional rows keep accumulating
    b.update(parts[2])
    assert_same(back, b, [("element", "service"), ("region",), ()])
    other = Cube(CubeSpec(**spec, positional_max_keys=POS), topo)
    other.update(parts[0])
    other.merge(back)  # merged cells are written back to their rows
    other.update(parts[1])
    ref = Cube(CubeSpec(**spec), topo)
    for p in [parts[0], *parts, parts[1]]:
        ref.update(p)
    assert_same(other, ref, [("element", "service"), ("service",)])
    cnt = Cube(
        CubeSpec(
            dimensions=["element", "service"],
            measures=["count"],
            cuboids=[("element", "service")],
            direct_min_keys=1,
            positional_max_keys=POS,
        ),
        topo,
    )
    cnt.update(parts[0])
    assert layouts(cnt) == ["positional"]
    assert cnt.query(("element", "service"))["count"].sum() == len(parts[0])
    # a topology change re-packs the cells into a new positional layout (more elements)
    t1, _ = topo.add_elements(np.array([77_777, 77_778]), parent_ids=topo.ids["site"][:2])
    for c in (back, b):
        c.set_topology(t1)
    assert layouts(back)[0] == "positional"
    late = make_cdr(rng, t1, 200)
    back.update(late)
    b.update(late)
    assert_same(back, b, [("element", "service"), ("region",)])


def test_positional_only_for_the_fast_measures(rng):
    topo = make_topology(rng)
    assert (
        layouts(Cube(CubeSpec(dimensions=DIMS, cuboids=element_cuboids(), direct_min_keys=1, measures=FAST), topo))[0]
        == "dense"
    )  # off by default
    base = dict(dimensions=DIMS, cuboids=element_cuboids(), direct_min_keys=1)
    for measures in (["count", "var:duration_ms"], ["count", "p50:duration_ms"], ["sum:duration_ms", "sum:setup_ms"]):
        assert layouts(Cube(CubeSpec(**base, measures=measures, positional_max_keys=POS), topo))[0] == "dense", measures
    assert layouts(Cube(CubeSpec(**base, measures=FAST, dense_limit=16, positional_max_keys=POS), topo))[0] == "hashed"
    assert layouts(Cube(CubeSpec(**base, measures=FAST, positional_max_keys=16), topo))[0] == "dense"


def _batch(v):
    return SimpleNamespace(n=len(v), vals=v[None, :], hashes=np.zeros((0, len(v)), np.int64))


@pytest.mark.parametrize("n_fields", [0, 1])
def test_positional_table_matches_cell_table(rng, n_fields):
    keyspace, n = 512, 3000
    # two dimensions of 10 and 20 codes packed on radices 16 and 32 (200 rows, 512 keys)
    keys = (rng.integers(0, 10, n) << 5) | rng.integers(0, 20, n)
    keys[rng.random(n) < 0.02] = -1  # rejected rows
    layout = (np.array([5, 0]), np.array([16, 32]), np.array([10, 20]))
    v = rng.normal(size=n)
    v[rng.random(n) < 0.05] = np.nan  # missing values are counted
    vrows = np.zeros(n_fields, np.int64)
    args = (np.zeros(n_fields, np.bool_), np.zeros(0, np.int64), np.zeros(0, np.int64), 1.0, 1.0)
    p = PositionalCellTable(keyspace, n_fields, *layout)  # 16 cells: grows inside accumulate
    c = CellTable(keyspace, True, n_fields, 0, 4, 0, 0)

    def same():
        for name in ("cell_key", "cnt", "fmiss", "fsum", "fmin", "fmax"):
            # same events in the same order per cell: bit-identical
            np.testing.assert_array_equal(getattr(p, name)[: p.n_cells], getattr(c, name)[: c.n_cells], name)
        assert p.n_cells == c.n_cells and p.counters[1] == c.counters[1]

    for part in np.array_split(np.arange(n), 3):
        b = _batch(v[part])
        assert p.accumulate(keys[part], b, vrows, *args) == c.accumulate(keys[part], b, vrows, *args)
        same()
    p.accumulate(keys[:50], _batch(v[:50]), vrows, *args)  # stale rows: compact gathers first
    c.accumulate(keys[:50], _batch(v[:50]), vrows, *args)
    keep = rng.random(c.n_cells) < 0.5
    p.compact(keep)
    c.compact(keep)
    same()
    p.accumulate(keys, _batch(v), vrows, *args)  # removed keys come back empty
    c.accumulate(keys, _batch(v), vrows, *args)
    same()
    st = c.to_state("x.")
    p.clear()
    assert p.n_cells == 0
    p.load_state(st, "x.")
    same()
    p.accumulate(keys, _batch(v), vrows, *args)
    c.accumulate(keys, _batch(v), vrows, *args)
    same()
    assert p.nbytes > 0 and p.n_rows == 200
    p._pstate[0] = _EPOCH_MAX - 1  # the next read wraps the epoch tags
    for part in np.array_split(np.arange(n), 3):
        p.accumulate(keys[part], _batch(v[part]), vrows, *args)
        c.accumulate(keys[part], _batch(v[part]), vrows, *args)
        same()
    assert p._pstate[0] == 3
    with pytest.raises(ValueError, match="at most one value field, got 2"):
        PositionalCellTable(keyspace, 2, *layout)
