"""A collection gap of hours: the monitor's quiet-stretch path (cached conditions, then a jump) gives
exactly the minute-by-minute path's events and state, at a cost that does not follow the gap."""

import numpy as np
import pytest

from kernels import sla as SK
from telcoanalytics.records import METRICS, empty
from telcoanalytics.sla.sla import SlaMonitor
from tests.kpi.test_kpi import MIN, T0, topo6

RULES = {
    "rules": [
        {"name": "blk", "kpi": "blocking_pct", "comparator": ">", "threshold": 20.0, "window": "5m", "for": "3m"},
        {
            "name": "site_css",
            "kpi": "call_setup_success_pct",
            "level": "site",
            "comparator": "<",
            "threshold": 90.0,
            "clear_threshold": 95.0,
            "window": "10m",
            "clear_for": "4m",
        },
        {"name": "avail", "kpi": "availability_pct", "comparator": "<", "threshold": 99.0, "window": "10m"},
        {"name": "loss", "kpi": "loss_pct", "comparator": ">", "threshold": 1.0, "window": "5m", "for": "2m"},
    ],
    "slos": [
        {
            "name": "cs",
            "kpi": "call_setup_success_pct",
            "objective": 0.99,
            "level": "site",
            "min_samples": 20,
            "clear_for": "10m",
            "windows": [
                {"severity": "page", "factor": 5.0, "long": "30m", "short": "5m"},
                {"severity": "ticket", "factor": 1.0, "long": "6h", "short": "2h"},
            ],
        }
    ],
}
ELEMS = np.array([10, 11, 12, 13, 14, 15])


def minute_batches(rng, minute):
    """CDRs, PM rows every 5 minutes and QoS probes of one minute; element 12 blocks and loses
    packets from minute 100, element 14 is down from minute 150 (all still open at minute 180)."""
    n = 6 * 8
    c = empty("cdr", n)
    c["record_id"] = minute * 1000 + np.arange(n)
    c["element_id"] = np.repeat(ELEMS, 8)
    c["start_ms"] = T0 + minute * MIN + rng.integers(0, MIN, n)
    bad = (c["element_id"] == 12) & (minute >= 100) & (rng.random(n) < 0.6)
    c["answer_ms"] = np.where(bad, -1, c["start_ms"] + 1000)
    c["end_ms"] = np.where(bad, c["start_ms"], c["answer_ms"] + 30_000)
    c["cause"] = np.where(bad, 34, 16)
    out = [("cdr", c)]
    if minute % 5 == 0:
        e = empty("equip", 6)
        e["ts_ms"], e["element_id"] = T0 + minute * MIN, ELEMS
        e["metric_id"] = METRICS.index("unavailable_s")
        e["value"] = np.where((ELEMS == 14) & (minute >= 150), 120.0, 0.0)
        out.append(("equip", e))
    q = empty("qos", 6)
    q["ts_ms"], q["element_id"] = T0 + minute * MIN + 5000, ELEMS
    q["latency_ms"], q["jitter_ms"], q["mos"] = 30.0, 2.0, 4.2
    q["loss_pct"] = np.where((ELEMS == 12) & (minute >= 100), 3.0, 0.1)
    out.append(("qos", q))
    return out


def run(mon, gap_h, gap_step_min=None):
    """180 minutes of data, ``gap_h`` hours without any, 60 minutes of data; an advance per data
    minute and, inside the gap, every ``gap_step_min`` minutes (None: one advance over it)."""
    rng = np.random.default_rng(5)
    evs = []
    minutes = list(range(180)) + list(range(180 + 60 * gap_h, 240 + 60 * gap_h))
    for m in minutes:
        if m == 180 + 60 * gap_h and gap_step_min:
            evs += [e for t in range(181, m, gap_step_min) for e in mon.advance(T0 + t * MIN)]
        for src, b in minute_batches(rng, m):
            mon.update(src, b)
        evs += mon.advance(T0 + (m + 1) * MIN)
    return evs


def per_minute(mon):
    mon._quiet_until = lambda tick, wm_tick: tick  # the minute-by-minute reference path
    return mon


def same_state(a, b):
    sa, sb = a.to_state(), b.to_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(np.asarray(sa[k]), np.asarray(sb[k]), err_msg=k)


@pytest.mark.parametrize("gap_h,step", [(3, None), (9, None), (5, 7)])
def test_gap_equals_the_minute_by_minute_path(gap_h, step):
    fast, ref = SlaMonitor(topo6(), RULES), per_minute(SlaMonitor(topo6(), RULES))
    got, want = run(fast, gap_h, step), run(ref, gap_h, step)
    assert [e.to_dict() for e in got] == [e.to_dict() for e in want]
    # the gap's own story is in there: open violations resolve or stay, none fires from nothing
    states = {(e.rule, e.state) for e in got}
    assert ("blk", "firing") in states and ("avail", "firing") in states and ("cs/page-30m", "firing") in states
    same_state(fast, ref)


def test_gap_cost_does_not_follow_its_length():
    """KPI evaluations (one per lifecycle and evaluated tick): with minute windows only the stretch
    after the last data minute (ring length plus the time to settle) is evaluated, whatever the
    gap; an SLO with hour windows adds one per hour boundary while those still hold data."""
    counts = {}
    for rules in ("minute", "hour"):
        for gap_h in (4, 40):
            r = {"rules": RULES["rules"], "slos": [] if rules == "minute" else RULES["slos"]}
            mon = SlaMonitor(topo6(), r)
            calls = []
            codes = mon._codes
            mon._codes = lambda ev, tick, calls=calls, codes=codes: calls.append(tick) or codes(ev, tick)
            run(mon, gap_h)
            counts[rules, gap_h] = len(calls) // len(mon.evals)  # evaluated ticks
    n_data = 240  # minutes with data, each evaluated
    assert counts["minute", 4] == counts["minute", 40] < n_data + 120
    # the ticket pair reads hours up to 6 h back (a ring of 8 hours): boundaries within it
    assert counts["hour", 40] - counts["hour", 4] <= 8
    assert counts["hour", 40] < n_data + 120 + 8 + 2 * 8


def test_settled_is_a_fixed_point_of_the_step():
    """``sla_settled`` says True exactly when one more step with the same conditions changes nothing."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = 5
        codes = rng.integers(0, 4, n).astype(np.int8)
        values = rng.choice([1.0, 2.0, np.nan], n)
        state = rng.integers(0, 3, n).astype(np.int8)
        count = rng.integers(0, 2, n).astype(np.int64)
        worst = rng.choice([1.0, 2.0], n)
        start = np.zeros(n, np.int64)
        settled = SK.sla_settled(codes, values, 1.0, state, count, worst)
        s2, c2, w2 = state.copy(), count.copy(), worst.copy()
        buf = [np.empty(n, np.int64), np.empty(n, np.int8), np.empty(n, np.int64), np.empty(n), np.empty(n)]
        k = SK.sla_rule_step(np.arange(n), codes, values, 0, 2, 2, 1.0, s2, c2, start, w2, *buf)
        unchanged = k == 0 and np.array_equal(s2, state) and np.array_equal(c2, count)
        unchanged &= np.array_equal(w2, worst, equal_nan=True)
        assert settled == unchanged, (codes, values, state, count, worst)


def test_tick_step_equals_one_rule_step_per_rule():
    """The bank kernel (all rules in one call, float32 ring values included) against
    ``sla_rule_step`` rule by rule: same states, counts, starts, worst values and events."""
    rng = np.random.default_rng(8)
    sizes = [3, 0, 5, 2]
    ptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n = int(ptr[-1])
    params = (ptr, np.array([0, 1, 2, 3]), np.array([1, 0, 2, 1]), np.array([1.0, -1.0, 1.0, -1.0]))
    bank = (np.zeros(n, np.int8), np.zeros(n, np.int64), np.full(n, -1, np.int64), np.full(n, np.nan))
    ref = tuple(a.copy() for a in bank)
    out = (np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int8), np.zeros(n, np.int64))
    out += (np.zeros(n), np.zeros(n))
    for tick in range(60):
        codes = rng.integers(0, 4, n).astype(np.int8)
        values = rng.normal(size=n).astype(np.float32 if tick % 2 else np.float64)
        k = SK.sla_tick_step(bank, params, codes, values, tick * MIN, out)
        got = [tuple(a[j].item() for a in out) for j in range(k)]
        want = []
        for r in range(len(sizes)):
            o, m = ptr[r], ptr[r + 1]
            buf = [np.empty(m - o, np.int64), np.empty(m - o, np.int8), np.empty(m - o, np.int64)]
            buf += [np.empty(m - o), np.empty(m - o)]
            life = [a[o:m] for a in ref]
            kr = SK.sla_rule_step(
                np.arange(m - o), codes[o:m], values[o:m].astype(np.float64), tick * MIN,
                params[1][r], params[2][r], params[3][r], *life, *buf,
            )  # fmt: skip
            want += [(r, *(a[j].item() for a in buf)) for j in range(kr)]
        assert got == want
        for a, b in zip(bank, ref):
            np.testing.assert_array_equal(a, b)
