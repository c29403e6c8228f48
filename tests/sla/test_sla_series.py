"""Late-data re-evaluation from window series: each tick's window moved from the previous one's
(``CounterStore.window_series``) equals summing every window afresh, and the monitor emits the same
events with and without it."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K
from telcoanalytics.kpi import CounterStore, KpiCalculator
from telcoanalytics.records import empty
from telcoanalytics.sla.sla import SlaMonitor
from tests.kpi.test_kpi import MIN, T0, random_cdr, topo6


def filled_store(seed, minutes=40, lead_late=25):
    rng = np.random.default_rng(seed)
    topo = topo6()
    store = CounterStore(topo, 30, hour_columns=[("attempts", ""), ("up_s", "")], hour_ring=4)
    ids = topo.ids["element"]
    for t in range(minutes):
        c = random_cdr(rng, 10, ids, 1)
        c["start_ms"] += (t - rng.integers(0, lead_late, 10) * (rng.random(10) < 0.3)) * MIN
        c["answer_ms"] = np.where(c["answer_ms"] >= 0, c["start_ms"] + 1000, -1)
        c["end_ms"] = c["start_ms"] + 61_500
        store.add("cdr", c)
        if t % 4 == 0:
            eq = empty("equip", 3)
            eq["ts_ms"] = T0 + (t - rng.integers(0, 5, 3)) * MIN
            eq["element_id"] = rng.choice(ids, 3)
            eq["metric_id"] = 3
            eq["value"] = rng.uniform(0, 60, 3)
            store.add("equip", eq)
            q = empty("qos", 3)
            q["ts_ms"] = T0 + t * MIN
            q["element_id"] = rng.choice(ids, 3)
            q["latency_ms"] = rng.lognormal(3, 1, 3)
            store.add("qos", q)
    return store, rng


@settings(max_examples=10)
@given(
    seed=st.integers(0, 2**32 - 1),
    w=st.integers(1, 35),
    n_ticks=st.integers(1, 12),
    back=st.integers(0, 12),
    n_rows=st.integers(1, 6),
)
def test_window_series_equals_fresh_sums(seed, w, n_ticks, back, n_rows):
    store, rng = filled_store(seed)
    rows = np.sort(rng.choice(6, n_rows, replace=False)).astype(np.int64)
    end = store.head_minute + 1 - back
    ticks = list(range(end - n_ticks + 1, end + 1))
    calc = KpiCalculator(store)
    for grp, cols in (
        ("cdr", store.columns("attempts")),
        ("cdr", store.columns("hold_s", "voice")),
        ("elem", store.columns("up_s")),
        ("hist", np.arange(store.n_bins)),
    ):
        outc = np.zeros(len(cols), np.int64) if grp != "hist" else np.arange(store.n_bins)
        n_out = 1 if grp != "hist" else store.n_bins
        ser = store.window_series(grp, cols, outc, n_out, rows, [t - w for t in ticks], ticks)
        for k, t in enumerate(ticks):
            fresh = np.zeros((len(rows), n_out))
            ring = store.hist if grp == "hist" else store.ring_of(grp)
            K.kpi_window_sum(ring, rows, store.window_slots(t, w), np.asarray(cols, np.int64), outc, fresh)
            # counts are integers (exact); holding seconds are float32 cells summed in float64
            np.testing.assert_allclose(ser[k], fresh, rtol=1e-12, atol=0)
    act = store.window_series("elem", store.columns("equip_rows"), None, 0, rows, [t - w for t in ticks], ticks, "act")
    hist_act = store.window_series(
        "elem",
        store.columns("equip_rows"),
        None,
        0,
        rows,
        [max(t - store.minute_ring, 0) for t in ticks],
        [t - w for t in ticks],
        "act",
    )
    for k, t in enumerate(ticks):
        a, h = calc.activity("equip", t, w, rows) if w < store.minute_ring else (None, None)
        if a is None:
            continue
        np.testing.assert_array_equal(act[k], a)
    for j, n_h in ((0, 1), (0, 3), (1, 2)):
        ser = store.hour_sums_series(j, ticks, n_h, rows)
        for k, t in enumerate(ticks):
            np.testing.assert_allclose(ser[k], store.hour_sums(j, t, n_h, rows), rtol=1e-12, atol=0)
    # the calculator's span path gives the same KPI values as the per-tick path
    calc.begin_series(ticks[0], ticks[-1])
    got = [calc.compute("blocking_pct", "site", t, w, rows=rows) for t in ticks]
    act_span = [calc.activity("equip", t, min(w, 29), rows) for t in ticks]
    calc.end_series()
    for k, t in enumerate(ticks):
        want = calc.compute("blocking_pct", "site", t, w, rows=rows)
        np.testing.assert_allclose(got[k].value, want.value, rtol=1e-12)
        np.testing.assert_array_equal(got[k].status, want.status)
        a, e = calc.activity("equip", t, min(w, 29), rows)
        np.testing.assert_array_equal(act_span[k][0], a)
        np.testing.assert_allclose(act_span[k][1], e, rtol=1e-12)
    assert hist_act.shape == (len(ticks), len(rows))


def _late_run(monkeypatch=None, mode="prefix"):
    rules = [
        {
            "name": "blk",
            "kpi": "blocking_pct",
            "comparator": ">",
            "threshold": 10.0,
            "clear_threshold": 5.0,
            "window": "5m",
            "for": "2m",
            "clear_for": "2m",
            "min_samples": 5,
        },
        {
            "name": "site_css",
            "kpi": "call_setup_success_pct",
            "level": "site",
            "comparator": "<",
            "threshold": 90.0,
            "clear_threshold": 95.0,
            "window": "3m",
            "min_samples": 5,
        },
        {
            "name": "lat",
            "kpi": "latency_p95_ms",
            "comparator": ">",
            "threshold": 60.0,
            "window": "4m",
            "min_samples": 2,
        },
        {
            "type": "slo",
            "name": "slo",
            "kpi": "call_setup_success_pct",
            "objective": 0.95,
            "level": "site",
            "windows": [{"severity": "page", "factor": 2.0, "long": "2h", "short": "10m"}],
        },
    ]
    mon = SlaMonitor(topo6(), rules, minute_ring=40, reeval_minutes=10)
    if mode == "ring":  # per-tick window sums from the ring (the path before series)
        monkeypatch.setattr(mon.calc, "begin_series", lambda *a: None)
    elif mode == "budget":  # prefix sums over the memory budget: window series instead
        monkeypatch.setattr(mon.calc, "prefix_budget_bytes", 0)
    elif mode == "series":  # window series without prefix sums
        orig = mon.calc.begin_series
        monkeypatch.setattr(mon.calc, "begin_series", lambda a, b, *hints: orig(a, b))
    rng = np.random.default_rng(5)
    ids = topo6().ids["element"]
    out = []
    for t in range(100):
        n = 30
        c = random_cdr(rng, n, ids, 1)
        c["start_ms"] += (t - rng.integers(1, 9, n) * (rng.random(n) < 0.2)) * MIN
        bad = (t // 20) % 2 == 1
        c["cause"] = np.where(rng.random(n) < (0.4 if bad else 0.02), 34, 16)
        c["answer_ms"] = np.where(c["cause"] == 16, c["start_ms"] + 1000, -1)
        c["end_ms"] = c["start_ms"] + 30_000
        mon.update("cdr", c)
        q = empty("qos", 6)
        q["ts_ms"] = T0 + (t - rng.integers(0, 4, 6)) * MIN
        q["element_id"] = ids
        q["latency_ms"] = rng.lognormal(3.5 if bad else 3.0, 0.5, 6)
        mon.update("qos", q)
        out += [(e.rule, e.state, e.scope_id, e.t_ms, e.start_ms, round(e.value, 9)) for e in mon.advance(T0 + t * MIN)]
    return out


def test_monitor_events_equal_with_and_without_series(monkeypatch):
    """Late-data re-evaluation from prefix sums, from window series and per tick from the ring
    give identical events (values rounded to 1e-9: float64 sums of float32 cells)."""
    with_series = _late_run()
    assert _late_run(monkeypatch, "series") == with_series
    assert _late_run(monkeypatch, "budget") == with_series
    assert _late_run(monkeypatch, "ring") == with_series
    assert {r for r, *_ in with_series} >= {"blk", "site_css", "lat"} and len(with_series) > 20


def test_prefix_span_hints_subsets_and_fallbacks():
    """The calculator's prefix path with and without row hints, for the hinted rows themselves, for
    a subset, for rows outside the hint and for counters outside the gathered set equals the
    per-tick path."""
    store, rng = filled_store(11)
    calc = KpiCalculator(store)
    end = store.head_minute + 1
    ticks = list(range(end - 5, end + 1))
    hint = np.array([0, 2, 3, 5], np.int64)
    cases = [
        (hint, {"cdr": hint}),
        (hint[[1, 3]], {"cdr": hint}),
        (np.array([1, 2], np.int64), {"cdr": hint}),
        (np.array([0, 1], np.int64), None),
    ]
    keys = {"cdr": [("blocked", ""), ("attempts", "")]}
    for rows, hints in cases:
        want = [
            (
                calc.compute("blocking_pct", "site", t, 7, rows=rows),
                calc.compute("call_setup_success_pct", "site", t, 7, rows=rows),
            )
            for t in ticks
        ]
        calc.begin_series(ticks[0], ticks[-1], keys, hints)
        got = [
            (
                calc.compute("blocking_pct", "site", t, 7, rows=rows),  # from prefix sums
                calc.compute("call_setup_success_pct", "site", t, 7, rows=rows),
            )
            for t in ticks
        ]  # setup_ok: series
        calc.end_series()
        for (a, b), (c, d) in zip(want, got):
            np.testing.assert_allclose(c.value, a.value, rtol=1e-12)
            np.testing.assert_allclose(d.value, b.value, rtol=1e-12)
            np.testing.assert_array_equal(c.samples, a.samples)


def test_window_series_any_direction():
    """Windows that shrink or move backwards between ticks are still exact (signed pieces)."""
    store, rng = filled_store(3)
    rows = np.arange(6, dtype=np.int64)
    end = store.head_minute + 1
    lo = [end - 10, end - 12, end - 3, end - 8]
    hi = [end - 2, end - 5, end, end - 1]
    cols = store.columns("attempts")
    ser = store.window_series("cdr", cols, np.zeros(len(cols), np.int64), 1, rows, lo, hi)
    for k, (a, b) in enumerate(zip(lo, hi)):
        fresh = np.zeros((6, 1))
        K.kpi_window_sum(store.cdr, rows, store.window_slots(b, b - a), cols, np.zeros(len(cols), np.int64), fresh)
        np.testing.assert_array_equal(ser[k], fresh)


def test_store_set_topology_appends_rows_and_legacy_topology_state():
    from telcoanalytics.kpi import topology_from_state

    store, rng = filled_store(2)
    before = store.cdr.copy()
    topo, _ = store.topology.add_elements([99], [102])
    store.set_topology(topo)
    assert store.cdr.shape[1] == 7 and np.array_equal(store.cdr[:, :6], before) and not store.cdr[:, 6].any()
    assert store.index_of([99, 10]).tolist() == [6, 0]
    old = {
        "topology.levels": "region,site,element",
        "topology.version": 3,
        "topology.attributes": "",
        "topology.ids.region": np.array([1]),
        "topology.ids.site": np.array([7]),
        "topology.ids.element": np.array([5, 6]),
        "topology.parent.site": np.array([0]),
        "topology.parent.element": np.array([0, 0]),
    }
    t = topology_from_state(old)
    assert t.version == 3 and t.ids["element"].tolist() == [5, 6] and t.active.all()
