"""Grouped late-data path (``_LateData._late_groups``, :func:`kernels.sla.sla_late_ratio_group`,
:func:`kernels.sla.sla_late_quantile_group`): element-level threshold rules over ratio and quantile KPIs
of the element ring re-evaluated in one kernel call per group give, bit for bit, the rings, events and
state of the per-lifecycle path (``grouped_late = False``); the kernels equal the per-lifecycle span
kernels and the store's prefix sums."""

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K
from kernels import sla as SK
from telcoanalytics.sla import late as LT
from telcoanalytics.sla.sla import SlaMonitor
from tests.kpi.test_kpi import topo6

from .test_sla_changed import _same_state
from .test_sla_late_fused import LATE_RULES, _feed


def _dicts(events):
    """Events as JSON (a NaN value equals a NaN value)."""
    return [json.dumps(e.to_dict(), sort_keys=True) for e in events]


def _rings(mon):
    return [(ev.codes.copy(), ev.values.copy()) for ev in mon.evals]


def test_a_monitor_gives_the_same_rings_events_and_state_with_the_grouped_late_path(monkeypatch):
    used = {"grouped": 0}
    orig = LT._LateData._late_groups

    def counted(self, *a):
        out = orig(self, *a)
        used["grouped"] += len(out)
        return out

    monkeypatch.setattr(LT._LateData, "_late_groups", counted)
    for seed in (1, 2):
        a = SlaMonitor(topo6(), LATE_RULES, minute_ring=40, reeval_minutes=8)
        b = SlaMonitor(topo6(), LATE_RULES, minute_ring=40, reeval_minutes=8)
        b.grouped_late = False
        n_events = 0
        for k, (ea, eb) in enumerate(zip(_feed(a, 70, seed), _feed(b, 70, seed), strict=True)):
            assert _dicts(ea) == _dicts(eb)
            for (ca, va), (cb, vb) in zip(_rings(a), _rings(b), strict=True):
                np.testing.assert_array_equal(ca, cb, err_msg=f"codes after advance {k}")
                np.testing.assert_array_equal(va, vb, err_msg=f"values after advance {k}")
            n_events += len(ea)
            if k == 40:  # a restore in between: no intact bank until the next tick (per-lifecycle path)
                a.__dict__.update(SlaMonitor.from_state(a.to_state()).__dict__)
        _same_state(a, b)
        assert n_events > 0 and a.n_late_rows > 0
    assert used["grouped"] > 0


def test_the_grouped_path_declines_without_a_bank_or_beyond_the_prefix_budget():
    mon = SlaMonitor(topo6(), LATE_RULES, minute_ring=40, reeval_minutes=8)
    feed = _feed(mon, 30, 3)
    for _ in range(30):
        next(feed)
    T = mon.last_tick
    rows = np.arange(6, dtype=np.int64)
    ev = next(e for e in mon.evals if mon._late_spec(e))
    plan = [(ev, rows, rows, T - 2, T)]
    mon.calc.prefix_budget_bytes = 8  # the span path would evaluate step by step: so does this one
    assert mon._late_groups(plan, rows, T - 7, T, 8) == {}
    mon.calc.prefix_budget_bytes = 2**30
    assert set(mon._late_groups(plan, rows, T - 7, T, 8)) == {0}
    mon._bank = None
    assert mon._late_groups(plan, rows, T - 7, T, 8) == {}
    assert mon._late_groups(plan, None, T - 7, T, 8) == {}
    # a rule over the call ring or above the element level is not grouped
    assert all(not mon._late_spec(e) for e in mon.evals if e.level != "element" or mon.kpis[e.kpi].source == "cdr")


# ---- the kernels ---------------------------------------------------------------------------------
def _random_ring(rng, n_el, n_cols, ring, head):
    """A minute ring [slot, element, column] with some slots not held and some cells known empty."""
    slot_minute = np.full(ring, -1, np.int64)
    for m in range(max(head - ring + 1, 0), head + 1):
        if rng.random() < 0.85:
            slot_minute[m % ring] = m
    used = rng.random((ring, n_el)) < 0.4
    vals = rng.integers(0, 5, (ring, n_el, n_cols)).astype(np.float32)
    vals += rng.choice(np.array([0.0, 0.25, 0.1], np.float32), (ring, n_el, n_cols))
    vals[~used] = 0.0
    return slot_minute, used, vals


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_rows=st.integers(0, 6), n_keys=st.integers(1, 4), back=st.integers(0, 40))
def test_late_prefix_equals_the_stores_prefix_gather(seed, n_rows, n_keys, back):
    rng = np.random.default_rng(seed)
    ring, n_el, n_cols, head = 20, 8, 6, 45
    slot_minute, used, vals = _random_ring(rng, n_el, n_cols, ring, head)
    rows = np.sort(rng.choice(n_el, n_rows, replace=False)).astype(np.int64)
    counts = rng.integers(1, 3, n_keys)
    key_ptr = np.zeros(n_keys + 1, np.int64)
    np.cumsum(counts, out=key_ptr[1:])
    key_cols = rng.integers(0, n_cols, key_ptr[-1]).astype(np.int64)
    lo, hi = head - back - ring, head + 1
    got = SK.sla_late_prefix(vals, used, slot_minute, rows, key_ptr, key_cols, lo, hi)
    mins = np.arange(lo, hi)
    slots = np.where((slot_minute[mins % ring] == mins) & (mins >= 0), mins % ring, -1).astype(np.int64)
    want = np.empty((n_keys, hi - lo + 1, n_rows))
    out_col = np.repeat(np.arange(n_keys), counts).astype(np.int64)
    K.kpi_prefix_gather(vals, rows, slots, key_cols, out_col, want)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), w=st.integers(1, 25), n_t=st.integers(1, 6), head=st.integers(0, 60))
def test_late_span_ticks_equal_window_slots_and_the_expected_factor(seed, w, n_t, head):
    rng = np.random.default_rng(seed)
    ring = 20
    slot_minute = _random_ring(rng, 1, 1, ring, head)[0]
    t_from = head - n_t + 2
    live, factors = np.empty(n_t, bool), np.empty(n_t)
    SK.sla_late_span_ticks(slot_minute, t_from, n_t, w, ring, live, factors)
    for k in range(n_t):
        t = t_from + k
        assert live[k] == any(slot_minute[m % ring] == m for m in range(t - w, t))  # CounterStore.window_slots
        n_h = sum(1 for m in range(t - ring, t - w) if m >= 0 and slot_minute[m % ring] == m)
        assert factors[k] == (w / n_h if n_h >= w else 0.0)


def _group_case(seed, n_rows, n_rules, n_t, gap, quantile):
    rng = np.random.default_rng(seed)
    ring, n_el, n_cols, head, L = 30, 9, 5, 70, 6
    slot_minute, used, vals = _random_ring(rng, n_el, n_cols, ring, head)
    rows = np.sort(rng.choice(n_el, n_rows, replace=False)).astype(np.int64)
    n_names = 1 if quantile else 3
    key_ptr = np.arange(n_names + gap + 1, dtype=np.int64)
    key_cols = rng.permutation(n_cols)[: n_names + gap].astype(np.int64)
    T = head + 1
    base = T - L + 1
    lo = base - ring
    t_from = base + int(rng.integers(0, 3))
    n_t = min(n_t, T - t_from + 1)
    w = int(rng.integers(1, 15))
    nodes = [
        np.sort(rng.choice(rows, rng.integers(0, n_rows + 1), replace=False)).astype(np.int64) for _ in range(n_rules)
    ]
    offsets = np.cumsum(rng.integers(n_el, n_el + 3, n_rules)) - n_el
    thr = [(float(rng.integers(0, 4)), float(rng.integers(0, 3)), int(rng.integers(0, 4))) for _ in range(n_rules)]
    levels = (3.0, 2.0) if quantile else (40.0, 30.0)
    ms = rng.integers(0, 4, n_rules).astype(np.float64)
    N = int(offsets[-1]) + n_el
    ring_codes = rng.integers(0, 4, (L, N)).astype(np.int8)
    ring_values = rng.random((L, N)).astype(np.float32)
    rules = (
        0.5,
        ms,
        np.array([(a, b, *levels) for a, b, _ in thr]),
        np.array([c for _, _, c in thr], np.int64),
        np.concatenate([[0], np.cumsum([len(x) for x in nodes])]).astype(np.int64),
        np.concatenate([np.searchsorted(rows, x) for x in nodes] + [np.zeros(0, np.int64)]).astype(np.int64),
        np.concatenate([x + o for x, o in zip(nodes, offsets)] + [np.zeros(0, np.int64)]).astype(np.int64),
        np.arange(t_from, t_from + n_t, dtype=np.int64) % L,
    )
    pre = (vals, used, rows, key_ptr, key_cols, n_names if gap else -1, lo)
    span = (slot_minute, t_from, n_t, w, T)
    return locals()


def _reference_group(c, span_kernel, extra):
    """Per rule: the per-lifecycle span kernel over the store's prefix sums, then the ring assignment."""
    live, factors = np.empty(c["n_t"], bool), np.empty(c["n_t"])
    SK.sla_late_span_ticks(c["slot_minute"], c["t_from"], c["n_t"], c["w"], c["ring"], live, factors)
    mins = np.arange(c["lo"], c["T"])
    ring = c["ring"]
    slots = np.where((c["slot_minute"][mins % ring] == mins) & (mins >= 0), mins % ring, -1).astype(np.int64)
    n_k = len(c["key_cols"])
    P = np.empty((n_k, len(mins) + 1, c["n_rows"]))
    K.kpi_prefix_gather(c["vals"], c["rows"], slots, c["key_cols"], np.arange(n_k, dtype=np.int64), P)
    gap = c["gap"]
    keys = np.arange(c["n_names"], dtype=np.int64)
    pre = (P, np.arange(c["n_rows"], dtype=np.int64), keys, c["n_names"] if gap else -1, c["lo"])
    seg = np.arange(c["n_rows"], dtype=np.int64)
    span = (c["t_from"], c["w"], ring, factors, seg, np.ones(c["n_rows"]))
    codes_ring, values_ring = c["ring_codes"].copy(), c["ring_values"].copy()
    changed = []
    for i, nodes in enumerate(c["nodes"]):
        a, b, cmp = c["thr"][i]
        thr = (a, b, cmp, *c["levels"])
        codes, values = np.empty((c["n_t"], len(nodes)), np.int8), np.empty((c["n_t"], len(nodes)))
        sel = np.searchsorted(c["rows"], nodes).astype(np.int64)
        params = (100.0, c["ms"][i], 0.5)
        span_kernel(pre, span, extra, params, sel, np.zeros(0, bool), live, thr, codes, values)
        at = np.ix_(c["rules"][7], nodes + c["offsets"][i])
        changed.append(bool(np.any(codes_ring[at] != codes)))
        codes_ring[at], values_ring[at] = codes, values
    return codes_ring, values_ring, changed


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 6),
    n_rules=st.integers(1, 3),
    n_t=st.integers(1, 6),
    gap=st.booleans(),
)
def test_late_ratio_group_equals_the_span_kernel_per_rule(seed, n_rows, n_rules, n_t, gap):
    c = _group_case(seed, n_rows, n_rules, n_t, int(gap), False)
    plan = (np.array([0], np.int64), np.array([1], np.int64), 2)
    want = _reference_group(c, SK.sla_late_ratio_span, plan)
    ring = (c["ring_codes"], c["ring_values"])
    changed = np.zeros(n_rules, bool)
    SK.sla_late_ratio_group(c["pre"], c["span"], plan, 100.0, c["rules"], ring, changed)
    np.testing.assert_array_equal(ring[0], want[0])
    np.testing.assert_array_equal(ring[1], want[1])
    assert changed.tolist() == want[2]


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 5),
    n_rules=st.integers(1, 3),
    n_t=st.integers(1, 6),
    gap=st.booleans(),
)
def test_late_quantile_group_equals_the_span_kernel_per_rule(seed, n_rows, n_rules, n_t, gap):
    c = _group_case(seed, n_rows, n_rules, n_t, int(gap), True)
    rng = np.random.default_rng(seed + 7)
    n_b = 6
    hused = rng.random(c["used"].shape) < 0.5
    hring = rng.integers(0, 4, c["used"].shape + (n_b,)).astype(np.float32)
    hring[~hused] = 0.0
    # the histogram windows of every tick summed afresh (whole counts: any order is exact)
    sm, ring = c["slot_minute"], c["ring"]
    hs = np.zeros((c["n_t"], n_rows, n_b))
    for k in range(c["n_t"]):
        t = c["t_from"] + k
        for m in range(max(t - c["w"], 0), t):
            if sm[m % ring] == m:
                hs[k] += hring[m % ring, c["rows"]]
    want = _reference_group(c, SK.sla_late_quantile_span, (hs, 0, 0.95, 1.0, 2.0))
    rings = (c["ring_codes"], c["ring_values"])
    changed = np.zeros(n_rules, bool)
    SK.sla_late_quantile_group(c["pre"], c["span"], (hring, hused, 0.95, 1.0, 2.0), c["rules"], rings, changed)
    np.testing.assert_array_equal(rings[0], want[0])
    np.testing.assert_array_equal(rings[1], want[1])
    assert changed.tolist() == want[2]
