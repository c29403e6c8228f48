"""Minutes leaving the minute ring into the hour ring: the compiled flush
(``kernels.kpi.kpi_flush_hour``) against the NumPy path it replaces (kept for hour columns of 8 ring
columns or more), bit for bit, with non-integer counters (holding seconds) and running hour sums."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.kpi import CounterStore
from telcoanalytics.records import SERVICES, empty
from tests.kpi.test_kpi import MIN, T0, random_cdr, topo6

HOUR_COLS = [("hold_s", ""), ("attempts", SERVICES[1]), ("equip_rows", ""), ("unavailable_s", "")]


def _equip(rng, n, elements, m0, minutes):
    eq = empty("equip", n)
    eq["ts_ms"] = T0 + m0 * MIN + rng.integers(0, minutes * MIN, n)
    eq["element_id"] = rng.choice(elements, n)
    eq["metric_id"] = rng.integers(0, 6, n)
    eq["value"] = rng.random(n) * 300
    return eq


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), ring=st.integers(3, 12))
def test_flush_kernel_equals_numpy(seed, ring):
    rng = np.random.default_rng(seed)
    topo = topo6()
    els = topo.ids["element"][:4]  # elements 14 and 15 never report: rows known empty
    a = CounterStore(topo, minute_ring=ring, hour_columns=HOUR_COLS, hour_ring=4)
    b = CounterStore(topo, minute_ring=ring, hour_columns=HOUR_COLS, hour_ring=4)
    b._hour_kernel = False  # the NumPy path
    got, want = [], []
    for step in range(0, 200, 7):
        cdr = random_cdr(rng, 60, els, 7)
        cdr["start_ms"] += step * MIN
        cdr["answer_ms"] = np.where(cdr["answer_ms"] >= 0, cdr["answer_ms"] + step * MIN, -1)
        cdr["end_ms"] += step * MIN
        eq = _equip(rng, 20, els, step, 7)
        for st_ in (a, b):
            st_.add("cdr", cdr)
            st_.add("equip", eq)
            st_.set_watermark(T0 + (step + 7) * MIN)
        end = T0 // MIN + step + 7
        for c in range(len(HOUR_COLS)):  # running hour sums (moved by later flushes)
            got.append(a.hour_sums(c, end, 3))
            want.append(b.hour_sums(c, end, 3))
    assert a._hour_kernel and b._hour_kernel is False
    np.testing.assert_array_equal(a.hour, b.hour)
    np.testing.assert_array_equal(a.slot_hour, b.slot_hour)
    assert a.hour[:, 4:].max() == 0 and a.hour.max() > 0
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x, y)
    for key, r in a._running.items():
        np.testing.assert_array_equal(r.out, b._running[key].out)


def test_wide_hour_column_takes_numpy_path():
    topo = topo6()
    st_ = CounterStore(topo, minute_ring=3, hour_columns=[("hold_s", ""), ("attempts", "")], hour_ring=3)
    st_._hour_spec[0] = ("cdr", np.arange(8))  # 8 ring columns: numpy would add them pairwise
    rng = np.random.default_rng(0)
    st_.add("cdr", random_cdr(rng, 50, topo.ids["element"], 10))
    later = random_cdr(rng, 50, topo.ids["element"], 10)
    later["start_ms"] += 20 * MIN
    later["answer_ms"] = np.where(later["answer_ms"] >= 0, later["answer_ms"] + 20 * MIN, -1)
    later["end_ms"] += 20 * MIN
    st_.set_watermark(T0 + 20 * MIN)
    st_.add("cdr", later)  # the first batch's minutes leave the ring
    assert st_._hour_kernel is False
    assert st_.hour.sum() > 0
