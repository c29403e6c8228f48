"""The lists of running aggregates the add path keeps between batches (``CounterStore._runs_of``,
the add kernels' column maps and outputs, the activity counts' groups): sums and counts created,
widened, re-placed after a topology change or a merge while batches keep arriving still receive
every late row, equal to window sums and activity counts recomputed from the rings with NumPy."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K
from telcoanalytics.kpi import CounterStore
from telcoanalytics.records import empty
from telcoanalytics.topology.model import Topology
from tests.kpi.test_kpi import MIN, T0, random_cdr, topo6


def _present(store, lo, hi):
    m = np.arange(max(lo, 0), hi)
    slots = m % store.minute_ring
    return slots[store.slot_minute[slots] == m]


def _ref_sum(store, group, cols, lo, hi):
    ring = {"cdr": store.cdr, "elem": store.elem, "hist": store.hist}[group]
    out = np.zeros((ring.shape[1], len(cols)))
    for s in _present(store, lo, hi):
        out += ring[s][:, cols].astype(np.float64)
    return out


def _ref_act(store, cols, lo, hi):
    out = np.zeros(store.elem.shape[1], np.int64)
    for s in _present(store, lo, hi):
        out += store.elem[s][:, cols].sum(axis=1) > 0
    return out


def _qos(rng, ids, minutes):
    q = empty("qos", len(minutes))
    q["ts_ms"] = T0 + np.asarray(minutes) * MIN
    q["element_id"] = rng.choice(ids, len(minutes))
    q["latency_ms"] = rng.integers(1, 200, len(minutes)).astype(float)
    q["jitter_ms"] = 1.0
    q["loss_pct"] = 0.0
    q["mos"] = 4.0
    return q


def _late_cdr(rng, ids, lo, hi, n):
    c = random_cdr(rng, n, ids, 1)
    c["start_ms"] += rng.integers(lo, hi, n) * MIN
    c["answer_ms"] = np.where(c["answer_ms"] >= 0, c["start_ms"] + 1000, -1)
    c["end_ms"] = c["start_ms"] + 60_000
    c["cause"] = 16  # counts only (exact sums)
    return c


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_sums_placed_mid_stream_receive_late_rows(seed):
    rng = np.random.default_rng(seed)
    topo = topo6()
    store = CounterStore(topo, 40)
    ids = topo.ids["element"]
    m0 = T0 // MIN
    store.add("cdr", _late_cdr(rng, ids, 0, 20, 60))
    store.add("qos", _qos(rng, ids, rng.integers(0, 20, 10)))
    end = m0 + 20
    live = {}  # key -> (group, kind, cols, window)

    def place(key, group, kind, cols, w):
        live[key] = (group, kind, np.asarray(cols, np.int64), w)
        store.running(key, group, kind, cols, end - w, end)

    def check():
        for key, (group, kind, cols, w) in live.items():
            r = store._running[key]
            assert (r.lo, r.hi) == (end - w, end)
            if kind == "sum":
                got = r.out[:, [r.colpos[int(c)] for c in cols]]
                np.testing.assert_array_equal(got, _ref_sum(store, group, cols, end - w, end), err_msg=str(key))
            else:
                np.testing.assert_array_equal(r.out, _ref_act(store, cols, end - w, end), err_msg=str(key))

    def late_rows():
        store.add("cdr", _late_cdr(rng, ids, 20 - 12, 21, 25))
        store.add("qos", _qos(rng, store.topology.ids["element"], rng.integers(20 - 12, 21, 6)))

    place(("win", "cdr", 5), "cdr", "sum", [0, 9], 5)
    late_rows()
    check()
    place(("win", "cdr", 12), "cdr", "sum", [1, 10, 18], 12)  # a second sum of the ring mid-stream
    place(("win", "hist", 6), "hist", "sum", np.arange(store.n_bins), 6)
    place(("act", "qos", 8), "elem", "act", [K.E_QOS_ROWS], 8)
    late_rows()
    check()
    place(("win", "cdr", 5), "cdr", "sum", [0, 9, 2, 27], 5)  # widened: a new aggregate under the same key
    place(("win", "elem", 7), "elem", "sum", [K.E_QOS_ROWS, K.E_LAT_N], 7)
    late_rows()
    check()
    for _ in range(3):  # slid by one minute each, then late rows
        end += 1
        store.slide_running(end)
        for key, (group, kind, cols, w) in live.items():
            store.running(key, group, kind, cols, end - w, end)
        late_rows()
        check()
    # a topology change reallocates the outputs: placed again, they follow the rows of the new elements too
    ids2 = np.append(ids, [16, 17])
    topo2 = Topology.from_columns(
        ids2,
        {"region": np.array([1, 1, 1, 1, 2, 2, 2, 2]), "site": np.array([100, 100, 101, 101, 102, 102, 103, 103])},
        {"equipment_class": np.array([0, 0, 1, 1, 0, 2, 0, 0], np.int16)},
    )
    store.set_topology(topo2)
    ids = ids2
    late_rows()  # before the sums are placed again: they take no rows (rebuilt from the rings)
    for key, (group, kind, cols, w) in live.items():
        store.running(key, group, kind, cols, end - w, end)
    late_rows()
    check()
    # a merge resets the intervals (recomputed at the next use)
    store.merge(CounterStore(topo2, 40))
    late_rows()
    for key, (group, kind, cols, w) in live.items():
        store.running(key, group, kind, cols, end - w, end)
    late_rows()
    check()
