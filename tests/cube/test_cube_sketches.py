"""Sketch and kernel unit tests: HyperLogLog error, log-bucket percentile guarantee, key packing,
table growth, derivation validation."""

import os

import numpy as np
import pytest

from kernels.cube import cube_pack_keys
from kernels.hll import hll_estimate
from telcoanalytics.cube import Cube, CubeSpec, hll_relative_error
from telcoanalytics.cube.dims import Derivation, Dimension, builtin_dimension
from telcoanalytics.cube.spec import DerivePlan, KeySpace
from telcoanalytics.cube.table import CellTable
from telcoanalytics.records import TOPOLOGY_DTYPE
from telcoanalytics.topology.model import Topology

NO_JIT = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")


def one_dim_cube(measures, n_groups=1, **kw):
    g = Dimension("g", n_groups, lambda ctx: np.zeros(ctx.n, dtype=np.int64))
    return Cube(CubeSpec(dimensions=[g], measures=measures, values={"x": None, "h": None}, **kw))


@pytest.mark.parametrize("p", [4, 5, 6, 10])
def test_hll_error_within_stated_bound(rng, p):
    sigma = hll_relative_error(p)
    n_groups = 12
    sizes = np.array([0, 1, 3, 10, 50, 200, 800, 2000, 3000, 5000, 8000, 12000])[:n_groups]
    if NO_JIT:
        sizes = np.minimum(sizes, 1500)
    cube = one_dim_cube(["count", "distinct:h"], n_groups=n_groups, hll_p=p)
    g = np.repeat(np.arange(n_groups), sizes)
    ids = rng.permutation(g.size) * 7919 + 11  # distinct ids
    dup = rng.integers(0, g.size, g.size // 2)  # plus duplicates, which must not count
    g = np.concatenate([g, g[dup]])
    ids = np.concatenate([ids, ids[dup]])
    cube.update_codes({"g": g}, hashes={"h": ids})
    res = cube.query(("g",))
    true = sizes[sizes > 0]
    est = res["distinct_h"]
    assert len(est) == len(true)
    # 4 sigma per group, and an absolute slack of 1 for register collisions of tiny groups
    assert np.all(np.abs(est - true) <= np.maximum(4 * sigma * true, 1.0)), (est, true)


def test_hll_estimate_empty_registers():
    out = np.empty(1)
    hll_estimate(np.zeros((1, 16), dtype=np.uint8), 1, out)
    assert out[0] == 0.0


@pytest.mark.parametrize("alpha", [0.01, 0.05])
def test_quantile_sketch_relative_error_guarantee(rng, alpha):
    n = 3000 if NO_JIT else 50000
    x = rng.lognormal(6.0, 2.0, n)
    x[:50] = 0.0  # below quantile_min: reported as 0
    x[50:60] = 1e12  # above quantile_max: clamped to the top bucket
    cube = one_dim_cube(
        ["p1:x", "p10:x", "p50:x", "p90:x", "p99:x", "p99.9:x"],
        quantile_alpha=alpha,
        quantile_min=1e-3,
        quantile_max=1e9,
    )
    cube.update_codes({"g": np.zeros(n, dtype=np.int64)}, values={"x": x})
    res = cube.query(())
    xs = np.sort(x)
    for q, col in [(0.01, "p1_x"), (0.1, "p10_x"), (0.5, "p50_x"), (0.9, "p90_x"), (0.99, "p99_x"), (0.999, "p99_9_x")]:
        true = xs[int(np.ceil(q * n)) - 1]  # nearest rank, as quantile_disc
        got = res[col][0]
        if true == 0.0:
            assert got == 0.0
        elif true > 1e9:
            gamma = (1 + alpha) / (1 - alpha)
            assert 1e9 / gamma <= got <= 1e9 * gamma**2  # clamped to the top bucket (documented)
        else:
            assert abs(got - true) <= alpha * true * (1 + 1e-9), (q, got, true)
    # the lowest rank holds a 0 and the sketch says so
    low = one_dim_cube(["p0:x"], quantile_min=1.0)
    low.update_codes({"g": np.zeros(3, dtype=np.int64)}, values={"x": np.array([0.0, 0.5, 7.0])})
    assert low.query(())["p0_x"][0] == 0.0
    # a value exactly at quantile_min falls in bucket 1 (its own relative guarantee)
    at_min = one_dim_cube(["p50:x"], quantile_min=2.0, quantile_alpha=0.01)
    at_min.update_codes({"g": np.zeros(1, dtype=np.int64)}, values={"x": np.array([2.0])})
    assert abs(at_min.query(())["p50_x"][0] - 2.0) <= 0.01 * 2.0 * (1 + 1e-9)


@pytest.mark.parametrize("d", [0, 1, 4, 5, 9])
def test_pack_keys_matches_numpy(rng, d):
    n = 500
    card = rng.integers(1, 9, d)
    codes = np.stack([rng.integers(0, c, n) for c in card]).astype(np.int32) if d else np.zeros((0, n), np.int32)
    if d:
        codes[rng.integers(0, d, 20), rng.integers(0, n, 20)] = -1
    ks = KeySpace.of(
        [f"d{i}" for i in range(d)], {f"d{i}": Dimension(f"d{i}", int(card[i]), lambda ctx: 0) for i in range(d)}
    )
    keys = np.empty(n, dtype=np.int64)
    cube_pack_keys(codes, np.arange(d, dtype=np.int64), ks.strides, keys)
    expect = (codes.astype(np.int64) * ks.strides[:, None]).sum(axis=0) if d else np.zeros(n, np.int64)
    if d:
        expect[(codes < 0).any(axis=0)] = -1
    np.testing.assert_array_equal(keys, expect)


def test_tables_grow_inside_kernels(rng):
    """Accumulation and merges that run out of room stop, grow and resume (both layouts)."""
    n = 3000
    a = rng.integers(0, 50, n)
    b = rng.integers(0, 40, n)
    x = rng.random(n)
    x[::17] = np.nan
    for dense_limit in (0, 10**6):
        cube = Cube(
            CubeSpec(
                dimensions=[Dimension("a", 50, lambda c: 0), Dimension("b", 40, lambda c: 0)],
                measures=["count", "sum:x", "var:x", "sum:y", "var:y", "min:y"],
                cuboids=[("a", "b"), ("b",)],
                dense_limit=dense_limit,
                values={"x": None, "y": None},
            )
        )
        cube.update_codes({"a": a, "b": b}, values={"x": x, "y": 2 * x})
        res = cube.query(("a", "b"))
        k = a * 40 + b
        uk, inv, cnt = np.unique(k, return_inverse=True, return_counts=True)
        np.testing.assert_array_equal(res["count"], cnt)
        xs = np.where(np.isnan(x), 0.0, x)
        n_valid = np.bincount(inv, ~np.isnan(x))
        expect = np.where(n_valid > 0, np.bincount(inv, xs), np.nan)  # all missing -> NaN
        np.testing.assert_allclose(res["sum_x"], expect, rtol=1e-12)
        np.testing.assert_allclose(res["sum_y"], 2 * res["sum_x"], rtol=1e-12)
        np.testing.assert_allclose(res["var_y"], 4 * res["var_x"], rtol=1e-9, equal_nan=True)
    # accumulation into a table with little room stops, grows and resumes (both layouts)
    from telcoanalytics.cube.dims import BatchArrays

    keys = (a * 64 + b).astype(np.int64)
    keys[::50] = -1
    ba = BatchArrays(n, np.zeros((0, n), np.int32), {}, x[None, :].copy(), {"x": 0}, np.zeros((0, n), np.int64), {}, {})
    sums = []
    for dense, mom in ((False, True), (True, True), (True, False)):  # the last: the fast path
        t = CellTable(64 * 64, dense, 1, 0, 4, 0, 0, capacity=16)
        rej = t.accumulate(
            keys, ba, np.array([0]), np.array([mom]), np.zeros(0, np.int64), np.zeros(0, np.int64), 1.0, 1.0
        )
        assert rej == np.sum(keys < 0) and t.n_cells == len(np.unique(keys[keys >= 0]))
        assert t.cnt[: t.n_cells].sum() == np.sum(keys >= 0)
        assert t.fmiss[: t.n_cells].sum() == np.sum(np.isnan(x) & (keys >= 0))
        order = np.argsort(t.cell_key[: t.n_cells])
        sums.append((t.fsum[: t.n_cells, 0][order], t.fmin[: t.n_cells, 0][order]))
    for s_, m_ in sums[1:]:
        np.testing.assert_array_equal(s_, sums[0][0])  # same additions in the same order
        np.testing.assert_array_equal(m_, sums[0][1])
    # a merge into a table with little room grows it mid-kernel
    t = CellTable(2000, False, 0, 0, 4, 0, 0, capacity=16)
    src = cube.cuboids[0].table
    t.merge_cells(src.cell_key, src, cube.mom)
    assert t.n_cells == src.n_cells and t.cnt[: t.n_cells].sum() == n
    assert t.count_new(src.cell_key, src.n_cells) == 0
    assert t.count_new(np.array([10**6, -1]), 2) == 1


def test_derivation_validation_and_plans():
    with pytest.raises(ValueError, match="b >= 1"):
        Derivation(b=0)
    with pytest.raises(ValueError, match="codes >= 0"):
        Derivation(table=np.array([0, -1]))
    p = Dimension("p", 4, lambda c: 0, derive={"q": Derivation(table=np.array([0, 1]))})
    q = Dimension("q", 2, lambda c: 0)
    dims = {"p": p, "q": q}
    ks = KeySpace.of(["p"], dims)
    with pytest.raises(ValueError, match="2 entries for 4 codes"):
        DerivePlan.build(ks, ["q"], dims)
    with pytest.raises(ValueError, match="cannot be derived"):
        DerivePlan.build(ks, ["r"], dims)


def test_topology_without_attributes_and_custom_time_bucket(rng):
    t = np.zeros(6, dtype=TOPOLOGY_DTYPE)
    t["element_id"] = np.arange(6)
    t["site_id"] = np.arange(6) // 2
    t["region_id"] = np.arange(6) // 4
    full = Topology.from_table(t)
    bare = Topology(full.levels, dict(full.ids), dict(full.parent), {})
    with pytest.raises(ValueError, match="unknown dimension 'vendor'"):
        builtin_dimension("vendor", bare)
    assert set(builtin_dimension("element", bare).derive) == {"region", "site"}
    from tests.reference.cube import T0_MS, make_cdr

    cdr = make_cdr(rng, full, 400, days=1.0)
    cube = Cube(CubeSpec(dimensions=["time:900000"], time_origin_ms=T0_MS), full)
    cube.update(cdr)
    res = cube.query(("time:900000",))
    assert res["count"].sum() == 400
    np.testing.assert_array_equal(res["time:900000"], np.unique(cdr["start_ms"] // 900_000 * 900_000))
    by_hour = cube.query(("hour",))
    np.testing.assert_array_equal(by_hour["count"], np.unique(cdr["start_ms"] // 3_600_000, return_counts=True)[1])
    early = cdr.copy()
    early["start_ms"] = T0_MS - 1
    assert cube.update(early).n_rejected == 400  # before the origin: no bucket, rejected
