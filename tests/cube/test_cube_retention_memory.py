"""A cube with a retention sizes its finest cuboid for the full window when it grows: memory stops
growing once the window has filled (no 4x allocation ahead, no doubling days into a run), and the
cells are still pandas' group-by of the retained events."""

import numpy as np
import pandas as pd

from telcoanalytics.cube import Cube, CubeSpec
from telcoanalytics.cube.table import CellTable
from tests.reference.cube import T0_MS, make_cdr, make_topology

HOUR = 3_600_000


def _stream(rng, topo, hours: int, per_hour: int) -> np.ndarray:
    r = make_cdr(rng, topo, hours * per_hour, days=hours / 24)
    return r[np.argsort(r["start_ms"], kind="stable")]  # in event-time order, as a stream arrives


def test_retention_cube_memory_is_flat_after_the_window_and_cells_equal_pandas():
    rng = np.random.default_rng(5)
    topo = make_topology(rng, n_elements=400)
    cdr = _stream(rng, topo, hours=30, per_hour=3000)
    spec = CubeSpec(
        dimensions=["element", "service", "hour"],
        measures=["count", "sum:duration_ms"],
        cuboids=[("element", "service", "hour")],
        retention_ms=6 * HOUR,
        direct_min_keys=1,
    )
    cube = Cube(spec, topo)
    table = cube.cuboids[0].table
    caps, held = [], []
    for part in np.array_split(cdr, 120):  # a quarter of an hour per batch
        cube.update(part)
        caps.append((int(part["start_ms"].max()), table.cap, table.tab_keys.shape[0]))
        held.append(table.n_cells)
    assert cube.memory_report()["build"] == "direct"
    window_full = T0_MS + 8 * HOUR  # six hours kept, plus a margin for the first bucket's estimate
    after = {(c, t) for ts, c, t in caps if ts >= window_full}
    assert len(after) == 1  # no growth once the window has filled
    cap, tab = after.pop()
    assert cap <= 2 * max(held)  # sized for the window, not 4x ahead and doubled
    assert tab == 1 << (2 * cap - 1).bit_length()  # the smallest power-of-two hash table for the cells
    # the kept cells are pandas' group-by of the events of the retained hours
    df = pd.DataFrame(
        {
            "e": topo.index_of(cdr["element_id"]),
            "s": cdr["service"],
            "h": (cdr["start_ms"] - spec.time_origin_ms) // HOUR,
            "d": cdr["end_ms"] - cdr["start_ms"],
        }
    )
    df = df[df["h"] > df["h"].max() - 6]
    ref = df.groupby(["e", "s", "h"]).agg(n=("d", "size"), d=("d", "sum"))
    got = cube.query(("element", "service", "hour"), measures=["count", "sum:duration_ms"])
    assert len(got) == len(ref) == table.n_cells
    assert got["count"].sum() == ref["n"].sum() and got["sum_duration_ms"].sum() == ref["d"].sum()
    # a restored cube is sized for what it holds, then for the window at its next growth
    back = Cube.from_state(cube.to_state(), topology=topo)
    assert back.cuboids[0].table.cap == table.n_cells
    back.update(cdr[-10:])
    assert back.cuboids[0].table.cap >= table.n_cells * 5 // 4


def test_exact_reserve_allocates_what_is_asked():
    t = CellTable(1 << 40, False, 1, 0, 4, 0, 0)
    t.reserve(1000, exact=True)
    assert t.cap == 1000 and t.tab_keys.shape[0] == 2048
    t.reserve(1100, exact=True)
    assert t.cap == 1100 and t.tab_keys.shape[0] == 4096
    t.reserve(1200)  # the default doubles the cells ...
    assert t.cap == 2200 and t.tab_keys.shape[0] == 4096
    t.reserve(2100)  # ... and the hash table
    assert t.cap == 2200 and t.tab_keys.shape[0] == 8192
    t.reserve(500, exact=True)  # never shrinks
    assert t.cap == 2200
