"""Late-data re-evaluation over all ticks at once: ``KpiCalculator.compute_span`` and
``SlaMonitor._codes_span`` give, row by row, exactly what the per-tick evaluation gives."""

import numpy as np
import pytest

from telcoanalytics.kpi import KpiCalculator, kpi_registry
from telcoanalytics.sla.sla import SlaMonitor
from tests.kpi.test_kpi import CALL_KPIS, EQUIP_KPIS, MIN, QOS_KPIS, T0, random_cdr, topo6

from .test_sla_series import filled_store

SPAN_CASES = [
    ("element", None),
    ("site", None),
    ("region", None),
    ("element", np.array([1, 1, 0, 1, 1, 0], bool)),
    ("site", np.array([1, 0, 1, 1, 0, 1], bool)),
]


def _same(got, want):
    # the span path runs the same operations element by element as the per-tick path: equal bits
    np.testing.assert_array_equal(got.value, want.value)
    np.testing.assert_array_equal(got.samples, want.samples)
    np.testing.assert_array_equal(got.status, want.status)


@pytest.mark.parametrize("hints", [False, True])
def test_compute_span_equals_compute_per_tick_inside_a_span(hints):
    store, rng = filled_store(21)
    calc = KpiCalculator(store)
    end = store.head_minute + 1
    t_from, t_to = end - 6, end
    rows = np.array([0, 2, 3, 5], np.int64)
    names = CALL_KPIS + EQUIP_KPIS + QOS_KPIS
    keys = None
    if hints:  # the monitor's way: prefix sums of every counter the KPIs read, one per ring group
        keys = {}
        for k in names:
            kd = kpi_registry()[k]
            for c in KpiCalculator._names(kd):
                from telcoanalytics.kpi import COUNTERS

                keys.setdefault(COUNTERS[c].group, {})[(c, "")] = None
        for c in ("equip_rows", "qos_rows"):  # activity (collection gaps) from the prefix as well
            keys["elem"][(c, "")] = None
        keys = {g: list(v) for g, v in keys.items()}
    calc.begin_series(t_from, t_to, keys, {"cdr": rows, "elem": rows} if hints else None)
    for name in names:
        for level, mask in SPAN_CASES:
            for w in (1, 5, 12):
                span = calc.compute_span(
                    name, level, t_from + 1, t_to, w, element_mask=mask, rows=rows, min_samples=2.0
                )
                for k, t in enumerate(range(t_from + 1, t_to + 1)):
                    want = calc.compute(name, level, t, w, element_mask=mask, rows=rows, min_samples=2.0)
                    got = type(want)(span.value[k], span.samples[k], span.status[k])
                    _same(got, want)
    calc.end_series()


def test_compute_span_outside_a_span_stacks_compute_and_checks_its_arguments():
    store, _ = filled_store(4)
    calc = KpiCalculator(store)
    end = store.head_minute + 1
    rows = np.array([1, 4], np.int64)
    for r in (None, rows):
        span = calc.compute_span("blocking_pct", "site", end - 3, end, 5, rows=r)
        assert span.value.shape == (4, 3)
        for k, t in enumerate(range(end - 3, end + 1)):
            want = calc.compute("blocking_pct", "site", t, 5, rows=r)
            np.testing.assert_array_equal(span.value[k], want.value)
            np.testing.assert_array_equal(span.status[k], want.status)
    calc.begin_series(end - 3, end)
    with pytest.raises(ValueError, match="t_to .* must not be before t_from"):
        calc.compute_span("blocking_pct", "site", end, end - 1, 5, rows=rows)
    with pytest.raises(ValueError, match="window_min must be >= 1"):
        calc.compute_span("blocking_pct", "site", end - 1, end, 0, rows=rows)
    with pytest.raises(ValueError, match="not a call KPI"):
        calc.compute_span("availability_pct", "site", end - 1, end, 5, service="voice", rows=rows)
    # a tick range reaching past the span: per tick (same values)
    got = calc.compute_span("blocking_pct", "site", end - 4, end, 5, rows=rows)
    calc.end_series()
    want = calc.compute_span("blocking_pct", "site", end - 4, end, 5, rows=rows)
    np.testing.assert_array_equal(got.value, want.value)


def test_series_plan_of_no_ticks_is_empty():
    store, _ = filled_store(2, minutes=5)
    ptr, slots, signs = store._series_plan("cdr", [], [])
    assert ptr.tolist() == [0] and len(slots) == 0 and len(signs) == 0
    out = store.window_series(
        "cdr", store.columns("attempts"), np.zeros(4, np.int64), 1, np.arange(6, dtype=np.int64), [], []
    )
    assert out.shape == (0, 6, 1)


RULES = [
    {
        "name": "blk",
        "kpi": "blocking_pct",
        "comparator": ">",
        "threshold": 10.0,
        "clear_threshold": 5.0,
        "window": "5m",
        "for": "1m",
        "min_samples": 3,
    },
    {
        "name": "site_css",
        "kpi": "call_setup_success_pct",
        "level": "site",
        "comparator": "<",
        "threshold": 90.0,
        "window": "3m",
        "min_samples": 3,
    },
    {
        "name": "lat_cls0",
        "kpi": "latency_p95_ms",
        "comparator": ">",
        "threshold": 40.0,
        "window": "4m",
        "filter": {"equipment_class": [0]},
        "min_samples": 1,
    },
    {
        "name": "avail",
        "kpi": "availability_pct",
        "level": "site",
        "comparator": "<",
        "threshold": 99.0,
        "window": "6m",
        "min_samples": 1,
    },
    {
        "type": "slo",
        "name": "slo",
        "kpi": "call_setup_success_pct",
        "objective": 0.95,
        "level": "site",
        "windows": [
            {"severity": "page", "factor": 2.0, "long": "2h", "short": "10m"},
            {"severity": "page", "factor": 1.0, "long": "20m", "short": "5m"},
        ],
    },
]


def _monitor(minutes=70):
    from telcoanalytics.records import empty

    mon = SlaMonitor(topo6(), RULES, minute_ring=40, reeval_minutes=10)
    rng = np.random.default_rng(9)
    ids = topo6().ids["element"]
    for t in range(minutes):
        c = random_cdr(rng, 30, ids, 1)
        c["start_ms"] += t * MIN
        c["answer_ms"] = np.where(c["answer_ms"] >= 0, c["start_ms"] + 1000, -1)
        c["end_ms"] = c["start_ms"] + 30_000
        mon.update("cdr", c)
        q = empty("qos", 6)
        q["ts_ms"] = T0 + t * MIN
        q["element_id"] = ids
        q["latency_ms"] = rng.lognormal(3.5, 0.5, 6)
        mon.update("qos", q)
        if t % 2 == 0:
            eq = empty("equip", 6)
            eq["ts_ms"] = T0 + t * MIN
            eq["element_id"] = ids
            eq["metric_id"] = 3
            eq["value"] = rng.uniform(0, 20, 6) * (rng.random(6) < 0.3)
            mon.update("equip", eq)
        mon.advance(T0 + t * MIN)
    return mon


@pytest.mark.parametrize("in_span", [False, True])
def test_codes_span_equals_codes_per_tick(in_span):
    """Every lifecycle (thresholds incl. a shared filtered one, a gap source, SLO pairs from the
    minute and the hour ring): all rows' codes over a tick range equal the per-tick codes."""
    mon = _monitor()
    T = mon.last_tick
    t_from = T - 8
    rows = np.arange(6, dtype=np.int64)
    if in_span:
        mon.calc.begin_series(t_from, T, mon._rule_counters(), {"cdr": rows, "elem": rows})
    for ev in mon.evals:
        nodes = np.arange(mon.topology.n_nodes(ev.level), dtype=np.int64)
        codes, values = mon._codes_span(ev, t_from, T, rows, nodes)
        assert codes.shape == values.shape == (T - t_from + 1, len(nodes))
        for k, t in enumerate(range(t_from, T + 1)):
            mon._memo.clear()
            c, v = mon._codes(ev, t)
            np.testing.assert_array_equal(codes[k], c, err_msg=f"{ev.name} tick {t}")
            # all rows vs the running aggregates: float64 sums of integer counts, exact
            np.testing.assert_array_equal(values[k], v, err_msg=f"{ev.name} tick {t}")
        mon._memo.clear()
    mon.calc.end_series()
    assert {ev.kind for ev in mon.evals} == {"threshold", "burn"}


def test_codes_span_before_the_data_is_insufficient():
    mon = _monitor(minutes=3)
    first = mon.store.first_minute
    rows = np.arange(6, dtype=np.int64)
    for ev in mon.evals:
        nodes = np.arange(mon.topology.n_nodes(ev.level), dtype=np.int64)
        codes, values = mon._codes_span(ev, first - 5, first - 1, rows, nodes)
        assert not codes.any() and np.isnan(values).all()


def test_compute_span_for_asked_nodes_only():
    """``nodes`` picks columns of the full result, also nodes the rows do not touch (no scope)."""
    store, _ = filled_store(8)
    calc = KpiCalculator(store)
    end = store.head_minute + 1
    rows = np.array([0, 1, 4], np.int64)  # sites 0 and 2, regions 0 and 1
    calc.begin_series(end - 4, end)
    for level, nodes in (("site", np.array([2, 0])), ("site", np.array([1, 2])), ("element", np.array([4, 3, 0]))):
        full = calc.compute_span("call_setup_success_pct", level, end - 3, end, 5, rows=rows)
        part = calc.compute_span("call_setup_success_pct", level, end - 3, end, 5, rows=rows, nodes=nodes)
        for a in ("value", "samples", "status"):
            np.testing.assert_array_equal(getattr(part, a), getattr(full, a)[:, nodes])
    none = np.zeros(6, bool)  # every row masked out: nothing in scope
    part = calc.compute_span(
        "blocking_pct", "site", end - 1, end, 5, element_mask=none, rows=rows, nodes=np.array([0, 1])
    )
    assert (part.status == 3).all() and np.isnan(part.value).all()
    calc.end_series()
    out = calc.compute_span("blocking_pct", "site", end - 1, end, 5, rows=rows, nodes=np.array([1]))
    assert out.value.shape == (2, 1) and (out.status == 3).all()


def test_codes_span_nodes_outside_the_rows():
    """Element-level nodes that are not among the rows are evaluated on their own (no sharing)."""
    mon = _monitor(minutes=30)
    T = mon.last_tick
    rows = np.array([0, 2, 3], np.int64)
    mon.calc.begin_series(T - 4, T)
    ev = mon.evals[0]  # blk: element level
    nodes = np.array([0, 1], np.int64)
    codes, values = mon._codes_span(ev, T - 4, T, rows, nodes)
    mon.calc.end_series()
    mon._memo.clear()
    for k, t in enumerate(range(T - 4, T + 1)):
        res = mon.calc.compute("blocking_pct", "element", t, ev.window_min, rows=rows, min_samples=ev.min_samples)
        assert res.status[1] == 3 and codes[k, 1] == 0  # element 1 holds no row: no scope, insufficient
        np.testing.assert_array_equal(np.isnan(values[k, 0]), np.isnan(res.value[0]))


def _sums(store, end, windows):
    calc = KpiCalculator(store)
    out = {}
    for w in windows:
        out[w] = calc.counter_sums(["attempts", "blocked", "up_s", "latency_n"], "", end, w)
        out[("hist", w)] = calc.hist_sums(end, w)
        out[("act", w)] = calc.activity("equip", end, w)
    return out


def test_slide_running_gives_what_running_gives():
    """Sliding every window sum by one minute in one pass per ring leaves each sum exactly where
    ``running`` would have moved it (windows of 1 and 2 minutes, which ``running`` sums afresh, and
    sums not ending one minute before are left alone)."""
    windows = (1, 2, 5, 12, 29)
    a, _ = filled_store(31, minutes=50)
    b, _ = filled_store(31, minutes=50)
    end = a.head_minute - 6
    _sums(a, end, windows)
    _sums(b, end, windows)
    a._running[("win", "cdr", 7)] = a._running[("win", "cdr", 5)].__class__("cdr", "sum", [0], 6)  # never placed
    moved = 0
    for t in range(end + 1, end + 7):
        moved += a.slide_running(t)
        got, want = _sums(a, t, windows), _sums(b, t, windows)
        for k in want:
            for x, y in zip(
                np.atleast_1d(got[k]) if not isinstance(got[k], dict) else got[k].values(),
                np.atleast_1d(want[k]) if not isinstance(want[k], dict) else want[k].values(),
            ):
                np.testing.assert_array_equal(x, y)
    # 3 windows x 3 rings (cdr, elem, hist) per minute; the equipment ring is empty in most minutes
    assert moved == 6 * 3 * 3
    assert a.slide_running(end + 20) == 0  # nothing ends at end + 19


def test_sum_columns_adds_left_to_right():
    from kernels import kpi as K

    x = np.random.default_rng(3).random((7, 5)) * 1e3
    js = np.array([3, 0, 4], np.int64)
    out = np.empty(7)
    K.kpi_sum_columns(x, js, out)
    want = x[:, 3].copy()
    want += x[:, 0]
    want += x[:, 4]
    np.testing.assert_array_equal(out, want)
