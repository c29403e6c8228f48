"""The minute rings stored as column planes ``[slot, column, element]``: the sliding-sum kernel over
them (``kernels.kpi.kpi_running_shift_planes``) against a NumPy reference, and the store's
``[slot, element, column]`` views, checkpoints (the same entries as a row-major ring gives, older
formats still load) and topology changes against plain NumPy on the logical ring."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K
from telcoanalytics.kpi import CounterStore
from telcoanalytics.kpi.running import PLANE_GROUPS
from telcoanalytics.records import empty
from telcoanalytics.topology.model import Topology
from tests.kpi.test_kpi import MIN, T0, random_cdr, topo6


def _reference(ring, add_slot, sub_slots, col_ptr, cols, outs):
    """``out + ((0 + ring[add]) - ring[sub])`` per cell, on the logical ring ``[slot, element, column]``."""
    res = []
    for i, out in enumerate(outs):
        c = cols[col_ptr[i] : col_ptr[i + 1]]
        acc = np.zeros((ring.shape[1], len(c)))
        if add_slot >= 0:
            acc = acc + ring[add_slot][:, c].astype(np.float64)
        if sub_slots[i] >= 0:
            acc = acc - ring[sub_slots[i]][:, c].astype(np.float64)
        res.append(out + acc)
    return res


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 300),
    density=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
    n_out=st.integers(1, 6),
    integer=st.booleans(),
    no_add=st.booleans(),
)
def test_shift_planes_equals_reference(seed, n, density, n_out, integer, no_add):
    rng = np.random.default_rng(seed)
    m, width = 12, 9
    ring = np.zeros((m, n, width), np.float32)
    used = rng.random((m, n)) < density
    k = int(used.sum())
    vals = rng.integers(0, 50, (k, width)) if integer else rng.random((k, width)) * 1e3
    vals[rng.random((k, width)) < 0.5] = 0
    ring[used] = vals
    planes = np.ascontiguousarray(ring.transpose(0, 2, 1))
    sizes = rng.integers(1, width + 1, n_out)
    cols = np.concatenate([rng.choice(width, s, replace=False) for s in sizes]).astype(np.int64)
    col_ptr = np.zeros(n_out + 1, np.int64)
    np.cumsum(sizes, out=col_ptr[1:])
    outs = tuple(
        np.asfortranarray(rng.integers(0, 100, (n, s)).astype(np.float64) * (1.0 if integer else 0.25)) for s in sizes
    )
    add_slot = -1 if no_add else int(rng.integers(0, m))
    sub_slots = rng.integers(-1, m, n_out).astype(np.int64)
    want = _reference(ring, add_slot, sub_slots, col_ptr, cols, outs)
    K.kpi_running_shift_planes(planes, add_slot, sub_slots, col_ptr, cols, tuple(o.T for o in outs))
    for got, exp in zip(outs, want):
        np.testing.assert_array_equal(got, exp)
        assert not np.signbit(got[got == 0]).any()


def _fed_store(rng, minutes=30, **kw) -> CounterStore:
    st_ = CounterStore(topo6(), minute_ring=20, **kw)
    for m0 in range(0, minutes, 10):
        cdr = random_cdr(rng, 300, np.array([10, 11, 12, 13, 14, 15]), 10)
        cdr["start_ms"] += m0 * MIN
        cdr["answer_ms"] = np.where(cdr["answer_ms"] >= 0, cdr["answer_ms"] + m0 * MIN, -1)
        cdr["end_ms"] += m0 * MIN
        st_.add("cdr", cdr)
    return st_


def _row_major_sparse(ring):
    """The checkpoint entries of a row-major ``[slot, element, column]`` ring (the format's definition)."""
    flat = np.ascontiguousarray(ring).reshape(-1)
    at = np.flatnonzero(flat)
    return {"shape": np.array(ring.shape, np.int64), "at": at.astype(np.uint32), "value": flat[at]}


def test_views_are_the_planes_transposed(rng):
    st_ = _fed_store(rng)
    for g in ("cdr", "elem", "hist"):
        ring = getattr(st_, g)
        assert ring.shape == (20, 6, st_._planes[g].shape[1])
        assert np.shares_memory(ring, st_._planes[g]) and st_._planes[g].flags.c_contiguous
        np.testing.assert_array_equal(ring, st_._planes[g].transpose(0, 2, 1))
    assert st_.cdr.sum() > 0
    assert st_.memory_bytes() == sum(p.nbytes for p in st_._planes.values()) + st_.hour.nbytes


def test_checkpoint_entries_are_the_row_major_ones(rng):
    st_ = _fed_store(rng)
    d = st_.to_state()
    for g in ("cdr", "elem", "hist"):
        want = _row_major_sparse(getattr(st_, g))
        for k in ("shape", "at", "value"):
            np.testing.assert_array_equal(d[f"{g}.{k}"], want[k], err_msg=f"{g}.{k}")
            assert d[f"{g}.{k}"].dtype == want[k].dtype
    back = CounterStore.from_state(d)
    for g in ("cdr", "elem", "hist", "hour", "slot_minute"):
        np.testing.assert_array_equal(getattr(back, g), getattr(st_, g))
    for g in ("cdr", "elem", "hist"):
        np.testing.assert_array_equal(back._row_used[g], getattr(st_, g).any(axis=2))


def test_older_checkpoints_load(rng):
    st_ = _fed_store(rng)
    d = st_.to_state()
    # formats 1-2: dense row-major rings; an element ring of 21 columns (before outage_reports)
    old = {k: v for k, v in d.items() if not k.startswith(("cdr.", "elem.", "hist."))}
    old["cdr"] = np.ascontiguousarray(st_.cdr)
    old["hist"] = np.ascontiguousarray(st_.hist)
    old["elem"] = np.ascontiguousarray(st_.elem[:, :, : K.E_OUTAGE_REPORTS])
    back = CounterStore.from_state(old)
    np.testing.assert_array_equal(back.cdr, st_.cdr)
    np.testing.assert_array_equal(back.hist, st_.hist)
    np.testing.assert_array_equal(back.elem[:, :, : K.E_OUTAGE_REPORTS], st_.elem[:, :, : K.E_OUTAGE_REPORTS])
    assert not back.elem[:, :, K.E_OUTAGE_REPORTS].any()
    # sparse, 21 columns
    sp = {k: v for k, v in d.items() if not k.startswith("elem.")}
    sp.update({f"elem.{k}": v for k, v in _row_major_sparse(st_.elem[:, :, : K.E_OUTAGE_REPORTS]).items()})
    np.testing.assert_array_equal(CounterStore.from_state(sp).elem[:, :, : K.E_OUTAGE_REPORTS], old["elem"])


@pytest.mark.parametrize("dense", [True, False])
def test_checkpoint_with_too_many_columns_is_refused(rng, dense):
    st_ = _fed_store(rng)
    d = st_.to_state()
    wide = np.zeros(st_.cdr.shape[:2] + (st_.cdr.shape[2] + 1,), np.float32)
    if dense:
        d = {k: v for k, v in d.items() if not k.startswith("cdr.")}
        d["cdr"] = wide
    else:
        d.update({f"cdr.{k}": v for k, v in _row_major_sparse(wide).items()})
    with pytest.raises(ValueError, match="37 columns cannot be restored into 36"):
        CounterStore.from_state(d)


def test_topology_change_moves_plane_columns(rng):
    st_ = _fed_store(rng)
    # running sums of each kind first: they are rebuilt after the change
    end = int(st_.slot_minute.max()) + 1
    sums = st_.running(("win", "cdr", 5), "cdr", "sum", [0, 1, 9], end - 5, end)
    hist = st_.running(("win", "hist", 5), "hist", "sum", np.arange(st_.n_bins), end - 5, end)
    assert sums.out.flags.f_contiguous and not sums.out.flags.c_contiguous and hist.out.flags.c_contiguous
    before = {g: np.array(getattr(st_, g)) for g in ("cdr", "elem", "hist")}
    topo2 = Topology.from_columns(
        np.array([10, 12, 13, 15]),
        {"region": np.array([1, 1, 1, 2]), "site": np.array([100, 101, 101, 102])},
        {"equipment_class": np.array([0, 1, 1, 2], np.int16)},
    )
    o2n = np.array([0, -1, 1, 2, -1, 3], np.int64)  # elements 11 and 14 removed
    st_.set_topology(topo2, o2n)
    keep = o2n >= 0
    for g, old in before.items():
        ring = getattr(st_, g)
        assert ring.shape == (old.shape[0], 4, old.shape[2])
        np.testing.assert_array_equal(ring, old[:, keep])
    assert st_._running[("win", "cdr", 5)].out.flags.f_contiguous
    again = st_.running(("win", "cdr", 5), "cdr", "sum", [0, 1, 9], end - 5, end).out
    slots = st_.window_slots(end, 5)
    np.testing.assert_array_equal(again, st_.cdr[slots][:, :, [0, 1, 9]].astype(np.float64).sum(axis=0))


def test_sliding_sums_follow_the_ring_in_both_kernels(rng):
    """slide_running over cdr (column planes) and hist (row kernel) equals fresh window sums."""
    st_ = _fed_store(rng, minutes=40)
    q = empty("qos", 200)
    q["ts_ms"] = T0 + rng.integers(0, 40 * MIN, 200)
    q["element_id"] = rng.choice([10, 11, 12, 13, 14, 15], 200)
    q["latency_ms"] = rng.random(200) * 100
    q["jitter_ms"] = 1.0
    q["loss_pct"] = 0.0
    q["mos"] = 4.0
    st_.add("qos", q)
    first = int(st_.first_minute)
    cols = np.array([0, 1, 9, 10], np.int64)
    hc = np.arange(st_.n_bins, dtype=np.int64)
    moved = 0
    for end in range(first + 6, first + 30):
        moved += st_.slide_running(end)
        a = st_.running(("win", "cdr", 5), "cdr", "sum", cols, end - 5, end).out
        h = st_.running(("win", "hist", 5), "hist", "sum", hc, end - 5, end).out
        slots = st_.window_slots(end, 5)
        np.testing.assert_array_equal(a, st_.cdr[slots][:, :, cols].astype(np.float64).sum(axis=0))
        np.testing.assert_array_equal(h, st_.hist[slots].astype(np.float64).sum(axis=0))
    assert moved == 2 * 23 and "cdr" in PLANE_GROUPS and "hist" not in PLANE_GROUPS
