"""Fused late-data path (``_LateData._late_ratio_codes``, :func:`kernels.sla.sla_late_ratio_span`,
:func:`kernels.sla.sla_late_quantile_span`): a threshold rule over a ratio or quantile KPI re-evaluated for a few rows in one kernel call gives, bit for bit,
the codes and values of the step-by-step span path (``SlaMonitor._codes_span``) and of the per-tick
evaluation, and a monitor fed late calls, QoS and equipment rows gives the same events and state
with it or without it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import kpi as K
from telcoanalytics.records import empty
from telcoanalytics.sla import late as LT
from telcoanalytics.sla.sla import SlaMonitor
from tests.kpi.test_kpi import MIN, T0, random_cdr, topo6

from .test_sla_fused import FUSED_RULES

# ratio threshold rules of every shape the fused path takes: element / site / region level, a scope
# filter applied after the evaluation (element level) or in the roll-up, several numerator and
# denominator counters, collection-gap sources (equipment, QoS), a service filter, hysteresis
LATE_RULES = FUSED_RULES + [
    {"name": "css_region", "kpi": "call_setup_success_pct", "level": "region", "comparator": "<",
     "threshold": 97.0, "clear_threshold": 98.0, "window": "6m", "min_samples": 3, "clear_min_samples": 1},
    {"name": "avail_site_f", "kpi": "availability_pct", "level": "site", "comparator": "<", "threshold": 99.0,
     "window": "9m", "filter": {"equipment_class": [0, 1]}},
    {"name": "loss_el_f", "kpi": "loss_pct", "comparator": ">", "threshold": 0.3, "window": "4m",
     "filter": {"equipment_class": [0]}, "min_samples": 2},
    {"name": "blk_voice", "kpi": "blocking_pct", "service": "voice", "comparator": ">=", "threshold": 10.0,
     "window": "5m", "min_samples": 1},
    {"name": "lat_el_f", "kpi": "latency_p95_ms", "comparator": ">", "threshold": 45.0, "clear_threshold": 35.0,
     "window": "5m", "filter": {"equipment_class": [0, 2]}, "min_samples": 2},
    {"name": "lat_site", "kpi": "latency_p99_ms", "level": "site", "comparator": ">", "threshold": 50.0,
     "window": "7m"},
]  # fmt: skip


def _feed(mon, minutes, seed):
    """Calls, QoS and equipment rows every minute, some of each arriving a few minutes late."""
    rng = np.random.default_rng(seed)
    ids = topo6().ids["element"]
    for t in range(minutes):
        late = t > 12

        def back(n, late=late):
            return rng.integers(0, 7, n) * (rng.random(n) < 0.25) * MIN if late else 0

        c = random_cdr(rng, 30, ids, 1)
        c["start_ms"] += t * MIN - back(len(c))
        c["answer_ms"] = np.where(c["answer_ms"] >= 0, c["start_ms"] + 1000, -1)
        c["end_ms"] = c["start_ms"] + 30_000
        if not 30 <= t < 36:
            mon.update("cdr", c)
        q = empty("qos", 6)
        q["ts_ms"] = T0 + t * MIN - back(6)
        q["element_id"] = ids
        q["latency_ms"] = rng.lognormal(3.5, 0.5, 6)
        q["loss_pct"] = rng.uniform(0, 1.2, 6) * (rng.random(6) < 0.5)
        keep = rng.random(6) < 0.8  # gaps: some elements miss minutes
        mon.update("qos", q[keep])
        eq = empty("equip", 6)
        eq["ts_ms"] = T0 + t * MIN - back(6)
        eq["element_id"] = ids
        eq["metric_id"] = 3
        eq["value"] = rng.uniform(0, 20, 6) * (rng.random(6) < 0.3)
        mon.update("equip", eq[rng.random(6) < 0.7])
        yield mon.advance(T0 + t * MIN)


def _ratio_thresholds(mon):
    """The lifecycles the fused path takes: threshold rules over ratio and quantile KPIs."""
    return [ev for ev in mon.evals if ev.kind == "threshold" and mon.kpis[ev.kpi].kind in ("ratio", "quantile")]


def test_a_monitor_gives_the_same_events_and_state_with_the_fused_late_path(monkeypatch):
    used = {"fused": 0, "other": 0}
    fused = LT._LateData._late_ratio_codes

    def counted(self, *a):
        out = fused(self, *a)
        used["fused" if out is not None else "other"] += 1
        return out

    monkeypatch.setattr(LT._LateData, "_late_ratio_codes", counted)
    a = SlaMonitor(topo6(), LATE_RULES, minute_ring=40, reeval_minutes=10)
    b = SlaMonitor(topo6(), LATE_RULES, minute_ring=40, reeval_minutes=10)
    b.fused_late = False
    n_events = 0
    for ea, eb in zip(_feed(a, 70, 5), _feed(b, 70, 5), strict=True):
        assert [e.to_dict() for e in ea] == [e.to_dict() for e in eb]
        n_events += len(ea)
    assert n_events > 0 and a.n_late_rows > 0
    assert used["fused"] > 50 and used["other"] > 0  # burn / per-time / E-model lifecycles take _codes_span
    sa, sb = a.to_state(), b.to_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], np.ndarray):
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
        else:
            assert sa[k] == sb[k], k


_MON = {}


def _fed_monitor():
    if "mon" not in _MON:
        mon = SlaMonitor(topo6(), LATE_RULES, minute_ring=40, reeval_minutes=10)
        for _ in _feed(mon, 45, 11):
            pass
        _MON["mon"] = mon
    return _MON["mon"]


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.integers(0, 5), min_size=1, max_size=6, unique=True),
    n_ticks=st.integers(1, 10),
    back=st.integers(0, 3),
    extra_node=st.booleans(),
    hints=st.booleans(),
)
def test_fused_span_codes_equal_codes_span_and_per_tick_codes(rows, n_ticks, back, extra_node, hints):
    """Any rows, span and nodes (also nodes no row touches: no scope): the fused codes and values equal
    ``_codes_span``; for nodes whose rows are all given, also the per-tick ``_codes`` (no span)."""
    mon = _fed_monitor()
    T = mon.last_tick - back
    t_from = T - n_ticks + 1
    r = np.array(sorted(rows), np.int64)
    union = np.arange(6, dtype=np.int64) if hints else r
    mon.calc.begin_series(t_from - 2, T, mon._rule_counters(), {"cdr": union, "elem": union})
    try:
        for ev in _ratio_thresholds(mon):
            e2l = mon.topology.element_to(ev.level)
            nodes = np.unique(e2l[r])
            if extra_node:
                nodes = np.arange(mon.topology.n_nodes(ev.level), dtype=np.int64)
            mon._memo.clear()
            want_c, want_v = mon._codes_span(ev, t_from, T, r, nodes)
            got = mon._late_ratio_codes(ev, t_from, T, r, nodes)
            assert got is not None, ev.name
            np.testing.assert_array_equal(got[0], want_c, err_msg=ev.name)
            np.testing.assert_array_equal(got[1], want_v, err_msg=ev.name)
            full = np.array([np.isin(np.flatnonzero(e2l == n), r).all() for n in nodes])
            for k, t in enumerate(range(t_from, T + 1)):
                mon._memo.clear()
                c, v = mon._codes(ev, t)
                np.testing.assert_array_equal(got[0][k][full], c[nodes][full], err_msg=f"{ev.name} {t}")
                np.testing.assert_array_equal(got[1][k][full], v[nodes][full], err_msg=f"{ev.name} {t}")
    finally:
        mon.calc.end_series()
        mon._memo.clear()


def test_fused_span_codes_cover_breach_clear_band_and_insufficient():
    mon = _fed_monitor()
    T = mon.last_tick
    r = np.arange(6, dtype=np.int64)
    mon.calc.begin_series(T - 9, T, mon._rule_counters(), {"cdr": r, "elem": r})
    seen = set()
    try:
        for ev in _ratio_thresholds(mon):
            nodes = np.arange(mon.topology.n_nodes(ev.level), dtype=np.int64)
            seen |= set(np.unique(mon._late_ratio_codes(ev, T - 9, T, r, nodes)[0]).tolist())
    finally:
        mon.calc.end_series()
    assert seen == {0, 1, 2, 3}


def test_fused_span_codes_decline_what_they_do_not_cover():
    """Burn-rate pairs, per-time and E-model KPIs and a span without the rules' prefix sums take
    ``_codes_span``."""
    mon = _fed_monitor()
    T = mon.last_tick
    r = np.array([1, 4], np.int64)
    nodes = np.array([1, 4], np.int64)
    others = [ev for ev in mon.evals if ev not in _ratio_thresholds(mon)]
    assert {ev.kind for ev in others} == {"threshold", "burn"}
    mon.calc.begin_series(T - 3, T, mon._rule_counters(), {"cdr": r, "elem": r})
    try:
        for ev in others:
            assert mon._late_ratio_codes(ev, T - 3, T, r, nodes) is None, ev.name
    finally:
        mon.calc.end_series()
    mon.calc.begin_series(T - 3, T)  # no prefix sums
    try:
        for ev in _ratio_thresholds(mon):
            assert mon._late_ratio_codes(ev, T - 3, T, r, nodes) is None, ev.name
    finally:
        mon.calc.end_series()


@pytest.mark.parametrize("level", ["element", "site"])
def test_fused_span_codes_before_the_ring_holds_the_window(level):
    """Ticks whose window the ring does not hold are insufficient (NaN), as in ``_codes_span``."""
    mon = SlaMonitor(topo6(), LATE_RULES, minute_ring=40, reeval_minutes=10)
    for _ in _feed(mon, 3, 2):
        pass
    r = np.arange(6, dtype=np.int64)
    t0 = mon.store.first_minute - 2
    mon.calc.begin_series(t0, t0 + 4, mon._rule_counters(), {"cdr": r, "elem": r})
    try:
        for ev in _ratio_thresholds(mon):
            if ev.level != level:
                continue
            nodes = np.arange(mon.topology.n_nodes(ev.level), dtype=np.int64)
            mon._memo.clear()
            want = mon._codes_span(ev, t0, t0 + 4, r, nodes)
            got = mon._late_ratio_codes(ev, t0, t0 + 4, r, nodes)
            np.testing.assert_array_equal(got[0], want[0], err_msg=ev.name)
            np.testing.assert_array_equal(got[1], want[1], err_msg=ev.name)
            assert (got[0][0] == 0).all() and np.isnan(got[1][0]).all()
    finally:
        mon.calc.end_series()


# ---- the kernels against plain Python references -------------------------------------------
def _ref_codes(v, s, st, thr):
    t_min, t_clr, cmp_code, threshold, clear_threshold = thr
    cmp = [lambda a, b: a < b, lambda a, b: a <= b, lambda a, b: a > b, lambda a, b: a >= b][cmp_code]
    ok = st == 0
    if ok and s >= t_min and cmp(v, threshold):
        return K.COND_BREACH
    if ok and s >= t_clr and not cmp(v, clear_threshold):
        return K.COND_CLEAR
    if ok and s >= t_min:
        return K.COND_BAND
    return K.COND_INSUFFICIENT


def _ref_span(rng_inputs, value_of):
    """Plain Python: rolled-up window sums (prefix differences, row order), active / expected minutes,
    ``value_of(k, node, sums)``, status, scope and codes of every tick and output node."""
    P, pos, keys, act_key, lo, t_from, w, ring, factors, seg, n_el, params, sel, post, live, thr = rng_inputs
    _, min_samples, gap_fraction = params
    n_t, n_nodes = len(live), len(n_el)
    codes, values = np.zeros((n_t, len(sel)), np.int8), np.full((n_t, len(sel)), np.nan)
    for k in range(n_t):
        t = t_from + k
        sums = [[0.0] * (len(keys) + 2) for _ in range(n_nodes)]
        for r, p in enumerate(pos):
            g = seg[r]
            if g < 0:
                continue
            at = lambda m, j, p=p: P[j, max(m, lo) - lo, p]  # noqa: E731
            for j, key in enumerate(keys):
                sums[g][j] += at(t, key) - at(t - w, key)
            if act_key >= 0:
                col = P[act_key, :, p]
                active_before = lambda m, col=col: sum(  # noqa: E731
                    1 for i in range(max(m, lo) - lo) if col[i + 1] - col[i] > 0
                )
                sums[g][-2] += float(active_before(t) - active_before(t - w))
                sums[g][-1] += float(active_before(t - w) - active_before(max(t - ring, 0))) * factors[k]
        if not live[k]:
            continue
        for q, i in enumerate(sel):
            if i < 0 or (len(post) and not post[q]):
                v, s, st_ = np.nan, 0.0, 3
            else:
                v, s = value_of(k, i, sums[i]), sums[i][0 if value_of.samples is None else value_of.samples]
                st_ = 1 if (s < min_samples or not np.isfinite(v) or s <= 0) else 0
                if act_key >= 0 and sums[i][-1] > 0 and sums[i][-2] < gap_fraction * sums[i][-1]:
                    st_ = 2
                st_ = 3 if n_el[i] == 0 else st_
                v = v if st_ == 0 else np.nan
            codes[k, q], values[k, q] = _ref_codes(v, s, st_, thr), v
    return codes, values


def _random_span(seed, n_keys, gap, n_rows, n_nodes, n_t):
    rng = np.random.default_rng(seed)
    n_min, n_base = 30, n_rows + 2
    lo, t_from, w, ring = 1000, 1000 + rng.integers(0, 25), int(rng.integers(1, 12)), 20
    step = rng.integers(0, 4, (n_keys + 1, n_min, n_base)) * (rng.random((n_keys + 1, n_min, n_base)) < 0.6)
    P = np.zeros((n_keys + 1, n_min + 1, n_base))
    P[:, 1:] = np.cumsum(step, axis=1)
    pos = rng.choice(n_base, n_rows, replace=False).astype(np.int64)
    keys = rng.permutation(n_keys).astype(np.int64)
    seg = rng.integers(-1, n_nodes, n_rows).astype(np.int64)
    n_el = np.bincount(seg[seg >= 0], minlength=n_nodes).astype(np.float64)
    n_el[rng.random(n_nodes) < 0.1] = 0.0  # a node out of scope
    factors = rng.choice([0.0, 0.5, 1.25], n_t)
    sel = rng.integers(-1, n_nodes, rng.integers(1, n_nodes + 2)).astype(np.int64)
    post = rng.random(len(sel)) < 0.8 if rng.random() < 0.5 else np.zeros(0, bool)
    live = rng.random(n_t) < 0.85
    thr = (float(rng.integers(0, 4)), float(rng.integers(0, 3)), int(rng.integers(0, 4)), 40.0, 30.0)
    params = (100.0, float(rng.integers(0, 4)), 0.5)
    act_key = n_keys if gap else -1
    return (P, pos, keys, act_key, lo, t_from, w, ring, factors, seg, n_el, params, sel, post, live, thr)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_keys=st.integers(2, 4),
    gap=st.booleans(),
    n_rows=st.integers(1, 6),
    n_nodes=st.integers(1, 4),
    n_t=st.integers(1, 6),
)
def test_late_ratio_span_kernel_equals_a_plain_reference(seed, n_keys, gap, n_rows, n_nodes, n_t):
    from kernels import sla as SK

    x = _random_span(seed, n_keys, gap, n_rows, n_nodes, n_t)
    P, pos, keys, act_key, lo, t_from, w, ring, factors, seg, n_el, params, sel, post, live, thr = x
    num_k, den_k, samp_k = np.array([0], np.int64), np.arange(1, n_keys, dtype=np.int64), n_keys - 1

    def value_of(k, i, s):
        num, den = 0.0 + s[0], sum(s[j] for j in den_k)
        return params[0] * num / den if den != 0 else np.nan

    value_of.samples = samp_k
    codes, values = np.empty((n_t, len(sel)), np.int8), np.empty((n_t, len(sel)))
    SK.sla_late_ratio_span(
        (P, pos, keys, act_key, lo),
        (t_from, w, ring, factors, seg, n_el),
        (num_k, den_k, samp_k),
        params,
        sel,
        post,
        live,
        thr,
        codes,
        values,
    )
    want_c, want_v = _ref_span(x, value_of)
    np.testing.assert_array_equal(codes, want_c)
    np.testing.assert_array_equal(values, want_v)  # the same additions, in the same order


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), gap=st.booleans(), n_rows=st.integers(1, 6), n_t=st.integers(1, 5))
def test_late_quantile_span_kernel_equals_a_plain_reference(seed, gap, n_rows, n_t):
    from kernels import sla as SK

    x = _random_span(seed, 1, gap, n_rows, 3, n_t)
    P, pos, keys, act_key, lo, t_from, w, ring, factors, seg, n_el, params, sel, post, live, thr = x
    rng = np.random.default_rng(seed + 1)
    n_b, k0 = 8, int(rng.integers(0, 3))
    hs = rng.integers(0, 5, (k0 + n_t + 1, n_rows, n_b)).astype(np.float64) * (rng.random((1, n_rows, 1)) < 0.8)

    def value_of(k, i, s):
        h = np.zeros((1, n_b))
        for r in range(n_rows):
            if seg[r] == i:
                h[0] += hs[k0 + k, r]
        out = np.empty(1)
        K.kpi_hist_quantile(h, 0.95, 1.0, 3.0, out)  # the bucket reading (tested in tests/kpi)
        return out[0]

    value_of.samples = None
    codes, values = np.empty((n_t, len(sel)), np.int8), np.empty((n_t, len(sel)))
    thr = (thr[0], thr[1], thr[2], 3.0, 2.0)
    SK.sla_late_quantile_span(
        (P, pos, keys, act_key, lo),
        (t_from, w, ring, factors, seg, n_el),
        (hs, k0, 0.95, 1.0, 3.0),
        params,
        sel,
        post,
        live,
        thr,
        codes,
        values,
    )
    want_c, want_v = _ref_span(x[:-1] + (thr,), value_of)
    np.testing.assert_array_equal(codes, want_c)
    np.testing.assert_array_equal(values, want_v)


def test_fused_span_codes_decline_counters_of_two_rings(monkeypatch):
    """A KPI whose counters (or row counter) lie in two ring groups has no single prefix: declined."""
    mon = _fed_monitor()
    T = mon.last_tick
    r = np.array([0, 3], np.int64)
    ev = next(e for e in _ratio_thresholds(mon) if mon.kpis[e.kpi].source == "qos")
    monkeypatch.setitem(LT.ACTIVITY_COUNTER, "qos", "attempts")  # a call counter (the "cdr" ring)
    mon.calc.begin_series(T - 3, T, mon._rule_counters(), {"cdr": r, "elem": r})
    try:
        assert mon._late_ratio_codes(ev, T - 3, T, r, r) is None
    finally:
        mon.calc.end_series()
