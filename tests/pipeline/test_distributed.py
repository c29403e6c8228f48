"""Partitioned analyses: per-region states merged == one pass, in-process and on a Dask cluster."""

import numpy as np
import pytest

from telcoanalytics.pipeline.distributed import map_merge, split_by_level, windows_by_partition
from telcoanalytics.topology.model import Topology
from telcoanalytics.windows.sliding import SlidingWindows

RES = ((60_000, 30), (3_600_000, 6))


@pytest.fixture
def data(rng):
    n_el = 60
    topo = Topology.from_columns(
        np.arange(n_el) + 100, {"region": (np.arange(n_el) // 3) % 4, "site": np.arange(n_el) // 3}
    )
    n = 5_000
    ts = np.sort(rng.integers(0, 4 * 3_600_000, n))
    e = rng.integers(0, n_el, n)
    metric = rng.integers(0, 2, n)
    value = rng.normal(1e6, 3.0, n)  # large offset, small spread: stability matters
    return topo, ts, e, e * 2 + metric, value


def _check_equal(a: SlidingWindows, b: SlidingWindows):
    t = max(a.max_ts_ms, b.max_ts_ms)
    for span in (60_000 * 30, 3_600_000 * 6):
        qa, qb = a.query(t, span), b.query(t, span)
        np.testing.assert_array_equal(qa["count"], qb["count"])  # counts exact
        np.testing.assert_array_equal(qa["min"], qb["min"])  # min/max exact
        np.testing.assert_array_equal(qa["max"], qb["max"])
        # sums of ~1e6-sized values in another order: rounding only
        np.testing.assert_allclose(qa["sum"], qb["sum"], rtol=1e-12)
        np.testing.assert_allclose(qa["var"], qb["var"], rtol=1e-6, atol=1e-9)
    ea, eb = a.ew_values(t), b.ew_values(t)
    np.testing.assert_allclose(ea["mean"], eb["mean"], rtol=1e-12)


def test_split_by_level_is_a_partition(data):
    topo, ts, e, slot, value = data
    parts = split_by_level(topo, e, {"ts": ts, "v": value}, "region")
    assert sum(len(p["ts"]) for p in parts) == len(ts)
    region = topo.element_to("region")
    for p in parts:
        rows = np.flatnonzero(region[e] == p["_node"])
        np.testing.assert_array_equal(p["ts"], ts[rows])  # stable order within the partition


def test_split_errors(data):
    topo, ts, e, slot, value = data
    bad = e.copy()
    bad[7] = -1
    with pytest.raises(ValueError, match="first at row 7"):
        split_by_level(topo, bad, {"ts": ts}, "region")
    with pytest.raises(ValueError, match="column 'ts' has 3 rows"):
        split_by_level(topo, e, {"ts": ts[:3]}, "region")


def test_windows_by_partition_equals_one_pass(data):
    topo, ts, e, slot, value = data
    one = SlidingWindows(120, RES, 0, (60.0, 3600.0))
    one.update(ts, slot, value)
    merged = windows_by_partition(topo, e, ts, slot, value, 120, RES, 0, (60.0, 3600.0), "region")
    _check_equal(merged, one)
    by_site = windows_by_partition(topo, e, ts, slot, value, 120, RES, 0, (60.0, 3600.0), "site")
    _check_equal(by_site, one)


def test_empty_input_gives_empty_state(data):
    topo = data[0]
    z = np.zeros(0, np.int64)
    w = windows_by_partition(topo, z, z, z, np.zeros(0), 120, RES)
    assert w.n_accepted == 0 and map_merge([], len, max) is None


@pytest.mark.slow
def test_dask_cluster_gives_identical_results(data):
    distributed = pytest.importorskip("distributed", reason="the [distributed] extra is part of [test]")
    topo, ts, e, slot, value = data
    local = windows_by_partition(topo, e, ts, slot, value, 120, RES, 0, (60.0,), "region")
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        on_dask = windows_by_partition(topo, e, ts, slot, value, 120, RES, 0, (60.0,), "region", client=client)
    np.testing.assert_array_equal(on_dask.cells, local.cells)  # same partitions, same merge order: bitwise
    np.testing.assert_array_equal(on_dask.ew.state, local.ew.state)
