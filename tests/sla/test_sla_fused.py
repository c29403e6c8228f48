"""Fused conditions (``telcoanalytics.sla.fused``): each threshold rule's codes and values at a tick,
written by one kernel call, equal the step-by-step path (``KpiCalculator.compute``, the scope mask,
``sla_threshold_codes``) bit for bit, as do each SLO window pair's (windows from the minute ring and
from the hour ring), and a monitor gives the same events and state either way."""

import numpy as np
import pytest

from telcoanalytics.records import empty
from telcoanalytics.sla.sla import SlaMonitor
from tests.kpi.test_kpi import MIN, T0, random_cdr, topo6

from .test_sla_fast import RULES

# every branch of the fused path: ratio KPIs at element / site level, with a scope filter applied
# after a shared evaluation (element level) or in the roll-up (site level), a collection-gap
# source (equipment, QoS), quantile / per-time / E-model KPIs (shared evaluation, then the mask)
FUSED_RULES = RULES + [
    {"name": "blk_cls0", "kpi": "blocking_pct", "comparator": ">", "threshold": 20.0, "window": "3m",
     "filter": {"equipment_class": [0]}, "min_samples": 2, "clear_min_samples": 1},
    {"name": "css_site_r1", "kpi": "call_setup_success_pct", "level": "site", "comparator": "<=",
     "threshold": 95.0, "clear_threshold": 97.0, "window": "4m", "filter": {"region": [1]}},
    {"name": "loss", "kpi": "loss_pct", "comparator": ">=", "threshold": 0.5, "window": "5m"},
    {"name": "avail_el", "kpi": "availability_pct", "comparator": "<", "threshold": 99.5, "window": "8m",
     "for": "2m", "clear_for": "1m"},
    {"name": "erl", "kpi": "traffic_erl", "level": "site", "comparator": ">", "threshold": 0.4, "window": "2m"},
    {"name": "mos", "kpi": "mos_emodel", "comparator": "<", "threshold": 4.3, "window": "3m",
     "filter": {"equipment_class": [0, 2]}},
    {"name": "lat_p50", "kpi": "latency_p50_ms", "level": "region", "comparator": ">", "threshold": 30.0,
     "window": "2m"},
]  # fmt: skip


def _feed(mon, minutes, seed, late=False):
    """Calls every minute but minutes 30-37 (quiet short windows), QoS every minute (latency, loss,
    jitter), equipment every other minute; with ``late``, some calls arrive for minutes already
    evaluated (re-evaluation)."""
    rng = np.random.default_rng(seed)
    ids = topo6().ids["element"]
    for t in range(minutes):
        c = random_cdr(rng, 30, ids, 1)
        c["start_ms"] += t * MIN
        if late and t > 12:
            c["start_ms"] -= rng.integers(0, 6, len(c)) * (rng.random(len(c)) < 0.2) * MIN
        c["answer_ms"] = np.where(c["answer_ms"] >= 0, c["start_ms"] + 1000, -1)
        c["end_ms"] = c["start_ms"] + 30_000
        if not 30 <= t < 38:
            mon.update("cdr", c)
        q = empty("qos", 6)
        q["ts_ms"] = T0 + t * MIN
        q["element_id"] = ids
        q["latency_ms"] = rng.lognormal(3.5, 0.5, 6)
        q["jitter_ms"] = rng.uniform(0, 10, 6)
        q["loss_pct"] = rng.uniform(0, 1.2, 6) * (rng.random(6) < 0.5)
        mon.update("qos", q)
        if t % 2 == 0:
            eq = empty("equip", 6)
            eq["ts_ms"] = T0 + t * MIN
            eq["element_id"] = ids
            eq["metric_id"] = 3
            eq["value"] = rng.uniform(0, 20, 6) * (rng.random(6) < 0.3)
            mon.update("equip", eq)
        yield mon.advance(T0 + t * MIN)


def test_fused_codes_equal_the_step_by_step_codes_at_every_tick():
    mon = SlaMonitor(topo6(), FUSED_RULES, minute_ring=40, reeval_minutes=10)
    kinds = set()
    for _ in _feed(mon, 50, 9):
        t = mon.last_tick
        for ev in mon.evals:
            mon._memo.clear()
            want_c, want_v = mon._codes(ev, t)
            n = len(want_c)
            got_c, got_v = np.full(n, 99, np.int8), np.full(n, -1.0)
            mon._memo.clear()
            fused = mon._fused_codes(ev, t, got_c, got_v)
            assert fused == (ev.kind == "threshold" or mon.kpis[ev.kpi].kind == "ratio"), ev.name
            if not fused:
                assert (got_c == 99).all() and (got_v == -1.0).all()  # nothing written
                continue
            np.testing.assert_array_equal(got_c, want_c, err_msg=f"{ev.name} tick {t}")
            np.testing.assert_array_equal(got_v, np.asarray(want_v, np.float64), err_msg=f"{ev.name} tick {t}")
            kinds.add(int(want_c.max()))
    mon._memo.clear()
    assert kinds >= {0, 1, 2}  # insufficient, breach and clear all met
    assert {ev.kind for ev in mon.evals} == {"threshold", "burn"}
    assert any(w + 11 > 40 for ev in mon.evals if ev.burn for w in ev.burn[2:])  # an hour-ring window


@pytest.mark.parametrize("late", [False, True])
def test_a_monitor_gives_the_same_events_and_state_fused_or_not(late):
    a = SlaMonitor(topo6(), FUSED_RULES, minute_ring=40, reeval_minutes=10)
    b = SlaMonitor(topo6(), FUSED_RULES, minute_ring=40, reeval_minutes=10)
    b.fused_conditions = False
    n_events = 0
    for ea, eb in zip(_feed(a, 60, 3, late), _feed(b, 60, 3, late), strict=True):
        assert [e.to_dict() for e in ea] == [e.to_dict() for e in eb]
        n_events += len(ea)
    assert n_events > 0 and (a.n_late_rows > 0) == late
    sa, sb = a.to_state(), b.to_state()
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], np.ndarray):
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
        else:
            assert sa[k] == sb[k], k
