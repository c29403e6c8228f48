"""``kernels.kpi.kpi_act_cells`` and ``kpi_act_count`` (activity counts moved by a batch's late
rows) against a plain Python reference: the cells a batch writes, each once, and the change of
each cell's activity (any activity column > 0) added to the counts whose interval holds its minute."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(0, 60), n_runs=st.integers(1, 4))
def test_act_cells_and_count_equal_reference(seed, n_rows, n_runs):
    rng = np.random.default_rng(seed)
    m, n, width = 10, 7, 4
    head = 100
    late_bound = head - m
    minute = rng.integers(late_bound - 3, head + 2, n_rows).astype(np.int64)
    elem = rng.integers(0, n, n_rows).astype(np.int64)
    reason = np.where(rng.random(n_rows) < 0.2, 3, 0).astype(np.int8)
    lo, hi = int(rng.integers(late_bound - 2, head)), int(rng.integers(late_bound, head + 2))
    cs, ce, cm = K.kpi_act_cells(elem, minute, reason, late_bound, lo, hi, m, n)
    want = sorted(
        {
            (int(mi % m), int(e), int(mi))
            for e, mi, r in zip(elem, minute, reason)
            if r == 0 and late_bound < mi and lo <= mi < hi
        }
    )
    assert list(zip(cs.tolist(), ce.tolist(), cm.tolist())) == want

    ring = np.where(rng.random((m, n, width)) < 0.5, 0, rng.integers(1, 5, (m, n, width))).astype(np.float32)
    run_lo = rng.integers(late_bound - 2, head, n_runs).astype(np.int64)
    run_hi = run_lo + rng.integers(0, 8, n_runs)
    sizes = rng.integers(1, width + 1, n_runs)
    cols = np.concatenate([rng.choice(width, s, replace=False) for s in sizes]).astype(np.int64)
    col_ptr = np.zeros(n_runs + 1, np.int64)
    np.cumsum(sizes, out=col_ptr[1:])
    outs = tuple(rng.integers(0, 20, n).astype(np.int64) for _ in range(n_runs))
    exp = [o.copy() for o in outs]
    before = ring.copy()
    K.kpi_act_count(ring, cs, ce, cm, run_lo, run_hi, col_ptr, cols, -1, outs)
    for s_, e_, _ in want:  # the batch writes its cells
        ring[s_, e_] = np.where(rng.random(width) < 0.5, 0, rng.integers(1, 5, width))
    K.kpi_act_count(ring, cs, ce, cm, run_lo, run_hi, col_ptr, cols, 1, outs)
    for k in range(n_runs):
        c = cols[col_ptr[k] : col_ptr[k + 1]]
        for s_, e_, mi in want:
            if run_lo[k] <= mi < run_hi[k]:
                exp[k][e_] += int(ring[s_, e_, c].sum() > 0) - int(before[s_, e_, c].sum() > 0)
        np.testing.assert_array_equal(outs[k], exp[k])


def test_batch_straddling_the_counts_without_a_row_inside_them():
    """Rows older than the ring and after the running activity counts' intervals (none inside): the
    counts are not moved, and they still equal fresh counts after the batch."""
    from telcoanalytics.kpi import CounterStore, KpiCalculator
    from telcoanalytics.records import empty
    from tests.kpi.test_kpi import MIN, T0, topo6

    def equip(minutes, element=10):
        eq = empty("equip", len(minutes))
        eq["ts_ms"] = [T0 + m * MIN for m in minutes]
        eq["element_id"] = element
        eq["metric_id"] = 3
        eq["value"] = 1.0
        return eq

    store = CounterStore(topo6(), minute_ring=12)
    store.add("equip", equip(range(0, 20)))
    store.set_watermark(T0 + 20 * MIN)
    calc = KpiCalculator(store)
    end = T0 // MIN + 15
    active, hist, _ = calc.activity_parts("equip", end, 5)  # counts over minutes [10, 15) and before
    before = active.copy(), hist.copy()
    store.add("equip", equip([6, 17], element=11))  # too old for the ring (head 19), and after 15
    active, hist, _ = calc.activity_parts("equip", end, 5)
    np.testing.assert_array_equal(active, before[0])
    fresh = KpiCalculator(CounterStore.from_state(store.to_state())).activity_parts("equip", end, 5)
    np.testing.assert_array_equal(active, fresh[0])
    np.testing.assert_array_equal(hist, fresh[1])
    np.testing.assert_array_equal(hist, before[1])
    assert hist[0] == 2 and active[0] == 5 and hist[1] == 0  # the ring holds minutes 8-19
