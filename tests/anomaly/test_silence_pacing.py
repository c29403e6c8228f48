"""Silence and collection-gap findings depend on the data, not on how often the checks run."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.anomaly.detector import ClassifyConfig, NetworkAnomalyDetector, SilenceMonitor
from telcoanalytics.anomaly.policy import paged_alerts
from tests.anomaly.test_anomaly_network import CFG, METRICS2, PM, _grid, _topo

DELAY = 20_000  # every report arrives 20 s after its event time


def _gap_day(seed=0):
    """Region 2 (12 cells) goes quiet 25-30 PM; its cells come back staggered over three intervals,
    one cell's first report back arrives after its second, and one cell fails during the gap."""
    topo = _topo()
    t, e, m, x = _grid(topo, 45, np.random.default_rng(seed))
    reg = np.flatnonzero(topo.element_to("region") == 1)
    back = np.repeat([30, 31, 32], 4) * PM  # resume times, four cells each
    gone = np.zeros(len(t), bool)
    for el, b in zip(reg, back):
        gone |= (e == el) & (t >= 25 * PM) & (t < b)
    gone |= (e == reg[5]) & (t >= 25 * PM)  # failed during the gap: never back
    arrival = t + DELAY
    late = (e == reg[1]) & (t == 30 * PM)
    arrival[late] += 2 * PM  # arrives after the cell's 31 PM report
    keep = ~gone
    o = np.argsort(arrival[keep], kind="stable")
    return topo, tuple(a[keep][o] for a in (t, e, m, x, arrival))


def _paced(topo, data, checks):
    """Feed what arrived by each check time, then check; returns (rows, alerts)."""
    t, e, m, x, arrival = data
    net = NetworkAnomalyDetector(topo, METRICS2, CFG, classify=ClassifyConfig(gap_min_elements=5, gap_fraction=0.5))
    rows, alerts, i = [], set(), 0
    for c in checks:
        j = np.searchsorted(arrival, c, side="right")
        if j > i:
            net.update(t[i:j], e[i:j], m[i:j], x[i:j])
            i = j
        r = net.check_silence(int(c))
        rows.append(r)
        for a in paged_alerts(r, topo, int(c)):
            alerts.add((tuple(sorted(a.labels.items())), a.state, a.starts_at_ms, a.ends_at_ms))
    return np.concatenate(rows), alerts


def _key(rows):
    """Everything of each row but the check time and, for open rows, the time silent so far."""
    closed = rows["end_ms"] >= 0
    fields = ("element_id", "classification", "start_ms", "end_ms", "scope_level", "scope_id", "baseline")
    out = [tuple(r[f].item() for f in fields) + ((r["value"].item(),) if c else ()) for r, c in zip(rows, closed)]
    return sorted(out)


def _checks(first, step):
    return np.arange(first, 45 * PM, step)  # the data end at 44 PM: no check sees that as silence


@pytest.mark.filterwarnings("ignore:.*older than their slot")
def test_two_pacings_give_the_same_silences_gaps_and_alerts():
    topo, data = _gap_day()
    rows_a, alerts_a = _paced(topo, data, _checks(PM // 2 + DELAY, PM))  # once per interval
    for first, step in ((7_000, 60_000), (170_000, 2 * PM)):  # every minute off the grid; every 10 min
        rows_b, alerts_b = _paced(topo, data, _checks(first, step))
        assert _key(rows_a) == _key(rows_b)
        assert alerts_a == alerts_b
    ids = topo.ids["element"][np.flatnonzero(topo.element_to("region") == 1)]
    closes = rows_a[(rows_a["classification"] == "collection_gap") & (rows_a["end_ms"] >= 0)]
    assert len(closes) == 11 and len(np.unique(closes["t_ms"])) == 1  # closed together, once
    # resume = the first report after the silence, also for the cell whose first report came late
    ends = dict(zip(closes["element_id"].tolist(), closes["end_ms"].tolist()))
    assert ends[int(ids[1])] == 30 * PM and max(ends.values()) == 32 * PM
    failed = rows_a[rows_a["element_id"] == ids[5]]
    assert failed["classification"].tolist() == ["collection_gap", "silence"]  # the gap hid a failure
    gap = [a for a in alerts_a if dict(a[0])["alertname"] == "collection_gap"]
    assert sorted(a[1] for a in gap) == ["firing", "resolved"]
    assert [a[3] for a in gap if a[1] == "resolved"] == [32 * PM]


@pytest.mark.filterwarnings("ignore:.*older than their slot")
@settings(max_examples=8, deadline=None)
@given(step=st.integers(20_000, 2 * PM), first=st.integers(0, 60_000))
def test_any_pacing_finer_than_the_silences_gives_the_same_rows(step, first):
    topo, data = _gap_day(seed=1)
    ref, ref_alerts = _paced(topo, data, _checks(PM // 2 + DELAY, PM))
    rows, alerts = _paced(topo, data, _checks(first, step))
    assert _key(rows) == _key(ref)
    assert alerts == ref_alerts


def test_resume_time_is_the_first_report_after_the_silence():
    m = SilenceMonitor(2, min_reports=2)
    m.observe([0, 0, 60_000, 60_000], [0, 1, 0, 1])
    assert m.check(300_000)[0].tolist() == [0, 1]
    m.observe([500_000, 400_000, 450_000], [0, 0, 1])  # element 0's reports out of order
    assert m.check(510_000)[1].tolist() == [0, 1]
    m.observe([350_000], [0])  # an even earlier report arrives after the check: still the resume
    assert m.resume_ms([0, 1]).tolist() == [350_000, 450_000]
    back = SilenceMonitor.from_state(m.to_state())
    assert back.resume_ms([0, 1]).tolist() == [350_000, 450_000]
    m.release([0])
    m.observe([340_000], [0])  # released: no longer watched
    assert m.resume_ms([0]).tolist() == [350_000]
    m.grow(3)
    assert m.resume_ms([2]).tolist() == [-1]


def _net(topo):
    return NetworkAnomalyDetector(topo, METRICS2, CFG, classify=ClassifyConfig(gap_min_elements=5, gap_fraction=0.5))


@pytest.mark.filterwarnings("ignore:.*older than their slot")
def test_an_element_back_during_the_gap_and_silent_again_closes_its_first_silence():
    topo = _topo()
    t, e, m, x = _grid(topo, 45, np.random.default_rng(2))
    reg = np.flatnonzero(topo.element_to("region") == 1)
    gone = np.isin(e, reg) & (t >= 25 * PM) & (t < 30 * PM) & ~((e == reg[0]) & (t == 27 * PM))
    data = tuple(a[~gone] for a in (t, e, m, x, t + DELAY))
    rows, _ = _paced(topo, data, _checks(PM // 2 + DELAY, PM))
    mine = rows[rows["element_id"] == topo.ids["element"][reg[0]]]
    spells = sorted(zip(mine["start_ms"].tolist(), mine["end_ms"].tolist()))
    assert spells == [(24 * PM, -1), (24 * PM, 27 * PM), (27 * PM, -1), (27 * PM, 30 * PM)]
    assert set(mine["classification"]) == {"collection_gap"}
    rows_b, _ = _paced(topo, data, _checks(11_000, 45_000))
    assert _key(rows_b) == _key(rows)


def test_a_gap_outgrown_by_new_elements_hands_its_silent_elements_over_as_failures():
    topo = _topo()
    net = _net(topo)
    t, e, m, x = _grid(topo, 36, np.random.default_rng(3))
    reg = np.flatnonzero(topo.element_to("region") == 1)
    quiet = np.isin(e, reg) & (t >= 25 * PM)
    for k in range(30):
        keep = (t == k * PM) & ~quiet
        net.update(t[keep], e[keep], m[keep], x[keep])
        net.check_silence(k * PM + PM // 2)
    assert (net._silence_cls[reg] == "collection_gap").all()
    new_ids = np.arange(900, 914)  # fourteen new cells in the region: 12 of 26 is no longer half
    topo2, _ = topo.add_elements(new_ids, np.repeat([20, 21], 7))
    net.set_topology(topo2)
    new = topo2.index_of(new_ids)
    out = []
    for k in range(30, 36):
        keep = (t == k * PM) & ~quiet
        ee, mm = np.repeat(new, 2), np.tile([0, 1], len(new))
        tt = np.full(len(ee), k * PM)
        net.update(
            *(
                np.concatenate(p)
                for p in ((t[keep], tt), (e[keep], ee), (m[keep], mm), (x[keep], np.where(mm == 0, 40.0, 2.0)))
            )
        )
        out.append(net.check_silence(k * PM + PM // 2))
    rows = np.concatenate(out)
    handed = rows[rows["end_ms"] < 0]
    # no element came back: the gap's end is its last start, each must have reported a PM + slack later
    assert sorted(handed["element_id"].tolist()) == sorted(topo.ids["element"][reg].tolist())
    assert set(handed["classification"]) == {"silence"} and set(handed["start_ms"]) == {24 * PM}
