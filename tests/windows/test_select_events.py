"""The one-pass selection kernels of the windows component against NumPy references, and the
component's fast path against the public ``SlidingWindows.update`` fed by NumPy selections."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.windows import select_answered_calls, select_events
from telcoanalytics.pipeline.components import WindowsComponent
from telcoanalytics.pipeline.contract import RoutedBatch
from telcoanalytics.records import DTYPES, ELEMENT_FIELD, METRIC_CODE
from telcoanalytics.synth.network import generate
from telcoanalytics.windows.sliding import SlidingWindows


def _buffers(n):
    return np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)


def _cdr_rows(rng, n, n_elem):
    rows = np.zeros(n, dtype=DTYPES["cdr"])
    rows["start_ms"] = rng.integers(0, 10**9, n)
    answered = rng.random(n) < 0.7
    rows["answer_ms"] = np.where(answered, rows["start_ms"] + rng.integers(0, 10**4, n), -1)
    rows["end_ms"] = rows["start_ms"] + rng.integers(10**4, 10**6, n)
    return rows, rng.integers(0, n_elem, n)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(1, 50), st.integers(0, 2**31))
def test_select_answered_calls_matches_numpy(n, n_elem, seed):
    rng = np.random.default_rng(seed)
    rows, idx = _cdr_rows(rng, n, n_elem)
    ts, slot, val = _buffers(n)
    m, lo, hi = select_answered_calls(rows["start_ms"], rows["answer_ms"], rows["end_ms"], idx, 3, 0, ts, slot, val)
    ok = rows["answer_ms"] >= 0
    ref_slot = idx[ok] * 3
    assert m == ok.sum()
    np.testing.assert_array_equal(ts[:m], rows["start_ms"][ok])
    np.testing.assert_array_equal(slot[:m], ref_slot)
    np.testing.assert_array_equal(val[:m], (rows["end_ms"][ok] - rows["answer_ms"][ok]) / 1000.0)  # bit-equal
    if m:
        assert (lo, hi) == (ref_slot.min(), ref_slot.max())
    else:
        assert lo > hi


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(1, 50), st.integers(0, 2**31), st.booleans())
def test_select_events_matches_numpy(n, n_elem, seed, every):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 10**9, n)
    values = rng.normal(size=n).astype(np.float32)  # a narrower type: converted as np.float64 does
    codes = rng.integers(0, 4, n).astype(np.int32)
    idx = rng.integers(0, n_elem, n)
    ts, slot, val = _buffers(n)
    m, lo, hi = select_events(t, values, codes[:0] if every else codes, 2, idx, 3, 1, ts, slot, val)
    keep = np.ones(n, bool) if every else codes == 2
    assert m == keep.sum()
    np.testing.assert_array_equal(ts[:m], t[keep])
    np.testing.assert_array_equal(slot[:m], idx[keep] * 3 + 1)
    np.testing.assert_array_equal(val[:m], values[keep].astype(np.float64))
    if m:
        assert (lo, hi) == ((idx[keep] * 3 + 1).min(), (idx[keep] * 3 + 1).max())


def _reference_update(win, batch, throughput):
    """The component's former selection in NumPy, through the public update; the late count."""
    rows, e = batch.rows, batch.element_index
    if batch.source == "cdr":
        ok = rows["answer_ms"] >= 0
        ts, e, v, k = rows["start_ms"][ok], e[ok], (rows["end_ms"][ok] - rows["answer_ms"][ok]) / 1000.0, 0
    elif batch.source == "qos":
        ts, v, k = rows["ts_ms"], rows["latency_ms"], 1
    elif batch.source == "equip":
        ok = rows["metric_id"] == throughput
        ts, e, v, k = rows["ts_ms"][ok], e[ok], rows["value"][ok], 2
    else:
        return 0
    if not len(ts):
        return 0
    return int(np.count_nonzero(win.update(ts, e * 3 + k, v).status == 1))


def test_component_equals_public_update_on_a_replayed_stream():
    day = generate(n_elements=60, days=0.1, seed=3)
    topo = day.topology
    comp = WindowsComponent(topo, allowed_lateness_ms=60_000)
    ref = SlidingWindows(topo.n_elements * 3, WindowsComponent.RESOLUTIONS, 60_000, WindowsComponent.HALF_LIVES_S)
    n_late = 0
    rng = np.random.default_rng(0)
    for source, rows in day.raw_batches():
        rows = np.asarray(rows)
        if source not in DTYPES or rows.dtype != DTYPES[source] or not len(rows):
            continue
        idx = topo.index_of(rows[ELEMENT_FIELD[source]])
        rows, idx = rows[idx >= 0].copy(), idx[idx >= 0]
        if source in ("cdr", "qos", "equip") and rng.random() < 0.2:  # some rows far behind: late
            tf = "start_ms" if source == "cdr" else "ts_ms"
            rows[tf][: len(rows) // 3] -= 3_600_000
        b = RoutedBatch(source, rows, idx, np.zeros(len(rows), np.int64))
        comp.update(b)
        n_late += _reference_update(ref, b, METRIC_CODE["throughput_mbps"])
    assert n_late > 0 and comp.n_side == n_late
    np.testing.assert_array_equal(comp.win.cells, ref.cells)
    np.testing.assert_array_equal(comp.win.ew.state, ref.ew.state)
    np.testing.assert_array_equal(comp.win.counters, ref.counters)
    np.testing.assert_array_equal(comp.win.expired, ref.expired)


def test_component_slot_out_of_range_takes_the_checked_path():
    """Slots beyond the windows (a topology larger than the windows) raise the public error."""
    day = generate(n_elements=20, days=0.02, seed=1)
    comp = WindowsComponent(day.topology)
    comp.win = SlidingWindows(3, WindowsComponent.RESOLUTIONS, 0, WindowsComponent.HALF_LIVES_S)
    rows = np.zeros(2, dtype=DTYPES["qos"])
    rows["ts_ms"] = [1000, 2000]
    b = RoutedBatch("qos", rows, np.array([0, 5]), np.zeros(2, np.int64))
    try:
        comp.update(b)
    except ValueError as exc:
        assert "outside 0..2" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected the slot range error")


def test_component_refuses_windows_with_record_ids():
    day = generate(n_elements=20, days=0.02, seed=1)
    comp = WindowsComponent(day.topology)
    comp.win = SlidingWindows(60, WindowsComponent.RESOLUTIONS, 0, dedup=True)
    rows = np.zeros(1, dtype=DTYPES["qos"])
    with pytest.raises(ValueError, match="pass record_id"):
        comp.update(RoutedBatch("qos", rows, np.array([0]), np.zeros(1, np.int64)))
    assert comp.win.n_accepted == 0


def test_component_ignores_other_sources_and_empty_batches():
    day = generate(n_elements=20, days=0.02, seed=1)
    comp = WindowsComponent(day.topology)
    before = comp.win.cells.copy()
    assert (
        comp.update(RoutedBatch("flow", np.zeros(3, DTYPES["flow"]), np.zeros(3, np.int64), np.zeros(3, np.int64)))
        == []
    )
    assert (
        comp.update(RoutedBatch("cdr", np.zeros(0, DTYPES["cdr"]), np.zeros(0, np.int64), np.zeros(0, np.int64))) == []
    )
    rows = np.zeros(2, DTYPES["cdr"])
    rows["answer_ms"] = -1  # no answered call: nothing selected
    assert comp.update(RoutedBatch("cdr", rows, np.zeros(2, np.int64), np.zeros(2, np.int64))) == []
    np.testing.assert_array_equal(comp.win.cells, before)
    assert comp.win.n_accepted == 0
