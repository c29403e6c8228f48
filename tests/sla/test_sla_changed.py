"""Conditions carried over unchanged inputs (``telcoanalytics.sla.changed``): a monitor that evaluates
a rule only where its inputs changed gives, tick by tick, the conditions, events and state of one that
evaluates every rule at every tick (``changed_only = False``), also across a checkpoint, a topology
change and a warm start; the rows kernels equal plain re-statements of the whole-rule arithmetic."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import sla as SK
from telcoanalytics.records import empty
from telcoanalytics.sla.sla import SlaMonitor
from telcoanalytics.topology.model import Topology
from tests.kpi.test_kpi import MIN, T0, random_cdr

from .test_sla_fused import FUSED_RULES

N_EL = 24

# element-level rules over ratio and quantile KPIs (evaluated per changed element), with filters
# (a shared quantile evaluation masked after it), gap sources; the others carried or evaluated whole
RULES = FUSED_RULES + [
    {"name": "lat_p95_c0", "kpi": "latency_p95_ms", "comparator": ">", "threshold": 40.0, "window": "6m",
     "filter": {"equipment_class": [0]}, "min_samples": 1},
    {"name": "lat_p95_c1", "kpi": "latency_p95_ms", "comparator": ">", "threshold": 30.0, "window": "6m",
     "filter": {"equipment_class": [1, 2]}, "min_samples": 1, "for": "1m", "clear_for": "2m"},
    {"name": "outage", "kpi": "outage_interval_pct", "comparator": ">", "threshold": 40.0, "window": "10m",
     "clear_threshold": 20.0, "min_samples": 1},
    {"name": "drop_cell", "kpi": "call_drop_pct", "comparator": ">", "threshold": 20.0, "window": "4m",
     "min_samples": 2, "clear_min_samples": 1, "for": "1m", "clear_for": "1m"},
]  # fmt: skip


def topo(n=N_EL):
    return Topology.from_columns(
        np.arange(100, 100 + n),
        {"region": (np.arange(n) // 3) % 2 + 1, "site": 1000 + np.arange(n) // 3},
        {"equipment_class": (np.arange(n) % 3).astype(np.int16)},
    )


def _feed(mon, minutes, seed, late=True, silent=(40, 52), ids=None, start=0):
    """A few calls on a few cells each minute, equipment and QoS reports every 5 minutes (a few
    elements reporting late, a few skipping reports), some calls late, and a silence: most ticks
    change the inputs of only some elements, some of none."""
    rng = np.random.default_rng(seed)
    ids = topo().ids["element"] if ids is None else ids
    n = len(ids)
    for t in range(start, start + minutes):
        quiet = silent[0] <= t < silent[1]
        if not quiet:
            c = random_cdr(rng, int(rng.integers(0, 12)), ids[rng.permutation(n)[: max(1, n // 4)]], 1)
            c["start_ms"] += t * MIN
            if late and t > 12:
                c["start_ms"] -= rng.integers(0, 6, len(c)) * (rng.random(len(c)) < 0.3) * MIN
            c["answer_ms"] = np.where(c["answer_ms"] >= 0, c["start_ms"] + 1000, -1)
            c["end_ms"] = c["start_ms"] + 30_000
            mon.update("cdr", c)
        if t % 5 == 2 and not quiet:
            rep = ids[rng.random(n) < 0.9]
            q = empty("qos", len(rep))
            q["ts_ms"] = T0 + t * MIN
            q["element_id"] = rep
            q["latency_ms"] = rng.lognormal(3.3, 0.6, len(rep))
            q["jitter_ms"] = rng.uniform(0, 10, len(rep))
            q["loss_pct"] = rng.uniform(0, 1.2, len(rep)) * (rng.random(len(rep)) < 0.5)
            if late:
                q["ts_ms"] -= (rng.random(len(rep)) < 0.1) * 2 * MIN  # a few reports of 2 minutes ago
            mon.update("qos", q)
            eq = empty("equip", len(rep))
            eq["ts_ms"] = T0 + t * MIN
            eq["element_id"] = rep
            eq["metric_id"] = 3
            eq["value"] = rng.uniform(0, 60, len(rep)) * (rng.random(len(rep)) < 0.3)
            mon.update("equip", eq)
        yield mon.advance(T0 + t * MIN)


def _conditions(mon):
    b = mon._bank
    if b is None:  # before the first tick
        return np.zeros(0, np.int8), np.zeros(0)
    return b.cur_codes.copy(), b.cur_values.copy()


def _same_state(a, b):
    sa, sb = a.to_state(), b.to_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], np.ndarray):
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
        else:
            assert sa[k] == sb[k], k


def _monitors(**kw):
    a = SlaMonitor(topo(), RULES, minute_ring=40, reeval_minutes=10, **kw)
    b = SlaMonitor(topo(), RULES, minute_ring=40, reeval_minutes=10, **kw)
    b.changed_only = False
    b.grouped_late = False  # late data through the per-lifecycle path too
    return a, b


def _count_carried(mon):
    """Wrap ``mon._carried`` to count whole rules carried and element entries evaluated per row."""
    seen = {"whole": 0, "rows": 0, "rows_entries": 0, "all_entries": 0}
    orig = mon._carried

    def carried(tick):
        out = orig(tick)
        for ev, k in zip(mon.evals, out):
            if k is True:
                seen["whole"] += 1
            elif k is not False:
                seen["rows"] += 1
                seen["rows_entries"] += len(k)
                seen["all_entries"] += len(ev.state.state)
        return out

    mon._carried = carried
    return seen


def test_a_monitor_evaluating_changed_inputs_only_equals_one_evaluating_everything():
    for seed, late, grouped in ((3, True, True), (4, False, False)):
        a, b = _monitors()
        a.grouped_rows = grouped  # quantile rules sharing an evaluation in one call, or rule by rule
        seen = _count_carried(a)
        n_events = 0
        for ea, eb in zip(_feed(a, 90, seed, late), _feed(b, 90, seed, late), strict=True):
            assert [e.to_dict() for e in ea] == [e.to_dict() for e in eb]
            ca, cb = _conditions(a), _conditions(b)
            np.testing.assert_array_equal(ca[0], cb[0], err_msg=f"codes, tick {a.last_tick}")
            np.testing.assert_array_equal(ca[1], cb[1], err_msg=f"values, tick {a.last_tick}")
            n_events += len(ea)
        _same_state(a, b)
        assert n_events > 0 and (a.n_late_rows > 0) == late
        # both ways of keeping conditions happened, and rows evaluated were a part of the rules
        assert seen["whole"] > 0 and seen["rows"] > 0
        assert 0 < seen["rows_entries"] < seen["all_entries"]


def test_a_checkpoint_in_between_restores_the_carried_conditions_exactly():
    a, b = _monitors()
    feed_a, feed_b = _feed(a, 90, 5), _feed(b, 90, 5)
    for k, (ea, eb) in enumerate(zip(feed_a, feed_b, strict=True)):
        assert [e.to_dict() for e in ea] == [e.to_dict() for e in eb]
        if k in (33, 61):  # mid-stream restore of the monitor evaluating changed inputs only
            restored = SlaMonitor.from_state(a.to_state())
            assert restored.changed_only
            a.__dict__.update(restored.__dict__)
    _same_state(a, b)


def test_a_topology_change_and_a_warm_start_evaluate_afresh():
    a, b = _monitors()
    ids = topo().ids["element"]
    grown = topo(N_EL + 3)
    for k, (ea, eb) in enumerate(zip(_feed(a, 70, 8, ids=ids), _feed(b, 70, 8, ids=ids), strict=True)):
        assert [e.to_dict() for e in ea] == [e.to_dict() for e in eb]
        np.testing.assert_array_equal(_conditions(a)[0], _conditions(b)[0])
        if k == 30:
            assert [e.to_dict() for e in a.set_topology(grown)] == [e.to_dict() for e in b.set_topology(grown)]
            assert a._chg_tick == -1  # the next tick evaluates every rule
    _same_state(a, b)
    # a warm start from history skips ticks: nothing is carried over the skipped ones
    a, b = _monitors()
    for _ in zip(_feed(a, 20, 9), _feed(b, 20, 9), strict=True):
        pass
    assert a.skip_to(T0 + 25 * MIN) == b.skip_to(T0 + 25 * MIN) == 6
    assert a._chg_tick == -1
    for ea, eb in zip(_feed(a, 50, 10, start=26), _feed(b, 50, 10, start=26), strict=True):
        assert [e.to_dict() for e in ea] == [e.to_dict() for e in eb]
    _same_state(a, b)


# ---- kernels ---------------------------------------------------------------------------------
def _ratio_reference(rows, plan, params, x, act, seg, n_el, post, thr):
    """Plain re-statement of one element-level ratio rule for ``rows``: the counters' columns summed,
    value, status (insufficient / collection gap / no scope), scope mask, threshold code."""
    col_ptr, cols, num_k, den_k, samp_k = plan
    scale, min_samples, gap_fraction = params
    active, hist, factor = act
    t_min, t_clr, cmp_code, threshold, clear_threshold = thr
    ops = [np.less, np.less_equal, np.greater, np.greater_equal]
    out = {}
    for r in rows.tolist():
        sums = [0.0] * (len(col_ptr) - 1)
        if seg[r] >= 0:
            for k in range(len(col_ptr) - 1):
                sums[k] = float(sum(x[r, cols[j]] for j in range(col_ptr[k], col_ptr[k + 1])))
        num, den = sum(sums[k] for k in num_k), sum(sums[k] for k in den_k)
        v = scale * num / den if den != 0 else np.nan
        sm = sums[samp_k]
        s = 1 if sm < min_samples or not np.isfinite(v) or sm <= 0 else 0
        if len(active) and seg[r] >= 0:
            e = float(hist[r]) * factor
            if e > 0 and active[r] < gap_fraction * e:
                s = 2
        if n_el[r] == 0:
            s = 3
        if len(post) and not post[r]:
            s, sm = 3, 0.0
        v = v if s == 0 else np.nan
        if s == 0 and sm >= t_min and ops[cmp_code](v, threshold):
            code = 1  # breach
        elif s == 0 and sm >= t_clr and not ops[cmp_code](v, clear_threshold):
            code = 2  # clear
        elif s == 0 and sm >= t_min:
            code = 3  # band
        else:
            code = 0
        out[r] = (code, v)
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 40),
    gap=st.booleans(),
    masked=st.sampled_from(["none", "seg", "post"]),
    cmp_code=st.integers(0, 3),
)
def test_ratio_threshold_rows_equals_a_plain_reference_and_the_whole_rule(seed, n, gap, masked, cmp_code):
    rng = np.random.default_rng(seed)
    n_cols = 7
    x = rng.integers(0, 6, (n, n_cols)).astype(np.float64) * rng.choice([1.0, 0.25, 1.5], (n, n_cols))
    x[rng.random((n, n_cols)) < 0.3] = 0.0
    plan = (np.array([0, 2, 3, 5], np.int64), rng.permutation(n_cols)[:5].astype(np.int64))
    plan = plan + (np.array([0], np.int64), np.array([1], np.int64), 2)
    if rng.random() < 0.5:  # several counters in the numerator
        plan = plan[:2] + (np.array([0, 2], np.int64),) + plan[3:]
    params = (100.0, float(rng.integers(0, 4)), 0.5)
    act = (
        (rng.integers(0, 6, n), rng.integers(0, 30, n), float(rng.choice([0.0, 0.2, 1 / 3])))
        if gap
        else (np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0)
    )
    keep = rng.random(n) < 0.7
    seg = np.where(keep, np.arange(n), -1) if masked == "seg" else np.arange(n)
    n_el = (seg >= 0).astype(np.float64)
    post = keep if masked == "post" else np.zeros(0, bool)
    thr = (float(rng.integers(0, 4)), float(rng.integers(0, 3)), cmp_code, 50.0, 40.0 if cmp_code >= 2 else 60.0)
    rows = np.flatnonzero(rng.random(n) < 0.5).astype(np.int64)
    codes, values = np.full(n, 99, np.int8), np.full(n, -1.0)
    SK.sla_ratio_threshold_rows(rows, plan, params, x, act, seg, n_el, post, thr, codes, values)
    ref = _ratio_reference(rows, plan, params, x, act, seg, n_el, post, thr)
    others = np.setdiff1d(np.arange(n), rows)
    assert (codes[others] == 99).all() and (values[others] == -1.0).all()  # left as they were
    for r, (code, v) in ref.items():
        assert codes[r] == code, r
        np.testing.assert_allclose(values[r], v, rtol=1e-12, equal_nan=True)
    # bit for bit the entries of the whole-rule kernel (with a scope mask too: its compiled form
    # once lost the insufficient / gap statuses of the nodes inside the mask)
    n_x = 2 if gap else 0
    out = (np.zeros((n, 3 + n_x)), np.empty(n), np.empty(n), np.empty(n, np.int8), np.zeros((n, n_x)))
    wc, wv = np.empty(n, np.int8), np.empty(n)
    SK.sla_ratio_threshold(out, plan, params, x, act, seg, n_el, post, thr, wc, wv)
    np.testing.assert_array_equal(codes[rows], wc[rows])
    np.testing.assert_array_equal(values[rows], wv[rows])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 30), factor=st.sampled_from([0.0, 0.1, 1 / 3, 0.5, 2.0]))
def test_gap_flags_equal_numpy(seed, n, factor):
    rng = np.random.default_rng(seed)
    active, hist = rng.integers(0, 10, n), rng.integers(0, 40, n)
    out = np.empty(n, bool)
    SK.sla_gap_flags(active, hist, factor, 0.5, out)
    expected = hist * factor
    np.testing.assert_array_equal(out, (expected > 0) & (active < 0.5 * expected))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 30), n_marks=st.integers(1, 4), gap=st.booleans())
def test_changed_rows_equal_numpy(seed, n, n_marks, gap):
    rng = np.random.default_rng(seed)
    marks = tuple(rng.random(n) < 0.15 for _ in range(n_marks))
    want = np.logical_or.reduce(marks)
    saved, now = np.zeros(0, bool), np.zeros(0, bool)
    act = (np.zeros(0, np.int64), np.zeros(0, np.int64), 0.0)
    if gap:
        act = (rng.integers(0, 10, n), rng.integers(0, 40, n), 0.25)
        saved, now = rng.random(n) < 0.3, np.empty(n, bool)
        flags = np.empty(n, bool)
        SK.sla_gap_flags(*act, 0.5, flags)
        want = want | (flags != saved)
    out = np.full(n, -1, np.int64)
    k = SK.sla_changed_rows(marks, act, 0.5, saved, now, out)
    np.testing.assert_array_equal(out[:k], np.flatnonzero(want))
    if gap:
        np.testing.assert_array_equal(now, flags)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 30),
    n_rules=st.integers(1, 4),
    gap=st.booleans(),
    ms=st.sampled_from([0.0, 1.0, 3.0]),
)
def test_quantile_rows_group_equals_the_rule_by_rule_kernels(seed, n, n_rules, gap, ms):
    """One call for the changed rows of several quantile rules (scope masks, thresholds) equals, per
    rule, the quantile of the rows' histograms, their status and the masked threshold codes (the
    kernels ``_quantile_rows`` calls one after another); other entries are left as they are."""
    from kernels import kpi as K

    rng = np.random.default_rng(seed)
    n_b = 7
    h = rng.integers(0, 4, (n, n_b)).astype(np.float64) * (rng.random((n, 1)) < 0.8)
    samples = h.sum(axis=1) + rng.integers(0, 2, n)
    active = rng.integers(0, 6, n).astype(np.float64) if gap else np.zeros(0)
    expected = rng.choice([0.0, 2.0, 5.5], n) if gap else np.zeros(0)
    rows = np.flatnonzero(rng.random(n) < 0.6).astype(np.int64)
    masks = rng.random((n_rules, n)) < 0.6
    has_mask = rng.random(n_rules) < 0.6
    thr = [
        (float(rng.integers(0, 4)), float(rng.integers(0, 3)), int(rng.integers(0, 4)), 3.0, 2.0)
        for _ in range(n_rules)
    ]
    offsets = np.arange(n_rules, dtype=np.int64) * (n + 2) + 1
    N = n_rules * (n + 2) + 1
    codes, values = np.full(N, 99, np.int8), np.full(N, -1.0)
    rules = (
        offsets,
        has_mask,
        masks,
        np.array([(a, b, c, d) for a, b, _, c, d in thr]),
        np.array([t[2] for t in thr], np.int64),
    )
    SK.sla_quantile_rows_group(rows, (h, 0.9, 1.0, 2.0), samples, (active, expected), (ms, 0.5), rules, (codes, values))
    # rule by rule: the quantile of all rows, the rows' status, the masked threshold codes
    full = np.full(n, np.nan)
    K.kpi_hist_quantile(h, 0.9, 1.0, 2.0, full)
    m = len(rows)
    n_act = active[rows] if gap else np.zeros(m)
    n_exp = expected[rows] if gap else np.zeros(m)
    status, v = np.empty(m, np.int8), np.empty(m)
    K.kpi_status(full[rows], samples[rows], ms, n_act, n_exp, 0.5, np.ones(m), status, v)
    want_c, want_v = np.full(N, 99, np.int8), np.full(N, -1.0)
    for j in range(n_rules):
        c, x = np.empty(m, np.int8), np.empty(m)
        post = masks[j][rows] if has_mask[j] else np.zeros(0, bool)
        SK.sla_masked_threshold(v, samples[rows].astype(np.float64), status, post, thr[j], c, x)
        want_c[offsets[j] + rows], want_v[offsets[j] + rows] = c, x
    np.testing.assert_array_equal(codes, want_c)
    np.testing.assert_array_equal(values, want_v)


def test_quantile_rules_of_a_source_without_collection_gaps_are_grouped_exactly():
    """QoS not treated as a gap source: the grouped quantile rows read no activity, and still equal
    the evaluate-everything monitor's conditions tick by tick."""
    a, b = _monitors()
    for m in (a, b):
        m.calc.gap_sources = ("equip",)
    for ea, eb in zip(_feed(a, 60, 12), _feed(b, 60, 12), strict=True):
        assert [e.to_dict() for e in ea] == [e.to_dict() for e in eb]
        np.testing.assert_array_equal(_conditions(a)[0], _conditions(b)[0])
        np.testing.assert_array_equal(_conditions(a)[1], _conditions(b)[1])
    _same_state(a, b)
