"""Tests of silence detection and topology-aware classification (NetworkAnomalyDetector)."""

import numpy as np
import pytest

from telcoanalytics.anomaly.detector import (
    ANOMALY_DTYPE,
    CalendarEvent,
    ClassifyConfig,
    DetectorConfig,
    NetworkAnomalyDetector,
    SilenceMonitor,
    default_parents,
)
from telcoanalytics.records import EQUIP_DTYPE, EQUIPMENT_CLASS_CODE
from telcoanalytics.topology.model import Topology
from tests.reference.anomaly import reference_silent

PM = 300_000
MACRO = EQUIPMENT_CLASS_CODE["macro_cell"]
SWITCH = EQUIPMENT_CLASS_CODE["aggregation_switch"]


def _topo():
    """Region 1: site 10 (switch 100 + cells 101-103), sites 11-14 (3 cells each).
    Region 2: sites 20-23 (3 cells each)."""
    eid, site, region, cls = [], [], [], []
    eid += [100, 101, 102, 103]
    site += [10] * 4
    region += [1] * 4
    cls += [SWITCH, MACRO, MACRO, MACRO]
    for s_, r_ in [(11, 1), (12, 1), (13, 1), (14, 1), (20, 2), (21, 2), (22, 2), (23, 2)]:
        for k in range(3):
            eid.append(s_ * 10 + k)
            site.append(s_)
            region.append(r_)
            cls.append(MACRO)
    return Topology.from_columns(
        eid, {"region": region, "site": site}, {"equipment_class": np.array(cls, dtype=np.int16)}
    )


METRICS2 = ("prb_util_pct", "error_count")
CFG = DetectorConfig(interval_s=300, season="none", warmup=20, cusum_h=1e6, refire_s=0)


def _grid(topo, n_steps, rng, t0=0):
    """One prb_util and one error_count report per element per PM interval."""
    n = topo.n_elements
    t = np.repeat(t0 + np.arange(n_steps, dtype=np.int64) * PM, 2 * n)
    e = np.tile(np.repeat(np.arange(n), 2), n_steps)
    m = np.tile([0, 1], n * n_steps)
    x = np.where(m == 0, 40.0 + rng.standard_normal(len(t)), rng.poisson(2.0, len(t)).astype(float))
    return t, e, m, x


def _net(topo=None, **kw):
    topo = topo or _topo()
    return NetworkAnomalyDetector(topo, METRICS2, kw.pop("config", CFG), **kw), topo


def _run(net, t, e, m, x, step=PM):
    out = []
    for t0 in np.unique(t):
        k = t == t0
        out.append(net.update(t[k], e[k], m[k], x[k]))
        out.append(net.check_silence(int(t0) + step // 2))
    return np.concatenate(out)


def _bump(t, e, m, x, elems, at, delta, metric=0):
    k = np.isin(e, elems) & (t == at * PM) & (m == metric)
    x[k] += delta


def test_isolated_deviation_is_a_fault(rng):
    net, topo = _net()
    t, e, m, x = _grid(topo, 40, rng)
    el = int(topo.index_of([120])[0])
    _bump(t, e, m, x, [el], 30, 30.0)
    rows = _run(net, t, e, m, x)
    f = rows[rows["element_id"] == 120]
    assert f.dtype == ANOMALY_DTYPE
    assert f["classification"].tolist() == ["fault", "fault"]  # open, then close
    assert f["scope_level"][0] == "element" and f["metric"][0] == "prb_util_pct"
    assert f["t_ms"][0] == 30 * PM and f["end_ms"][1] == 30 * PM
    assert len(rows[rows["element_id"] != 120]) == 0


def test_site_wide_deviation_is_a_crowd(rng):
    net, topo = _net()
    t, e, m, x = _grid(topo, 40, rng)
    cells = topo.index_of([120, 121, 122])
    _bump(t, e, m, x, cells[:2], 30, 30.0)
    _bump(t, e, m, x, cells[2:], 30, 5.0)  # the third cell is only starting to rise
    rows = _run(net, t, e, m, x)
    opened = rows[rows["end_ms"] < 0]
    assert set(opened["classification"]) == {"crowd"}
    assert set(opened["scope_level"]) == {"site"} and set(opened["scope_id"]) == {12}
    closed = rows[rows["end_ms"] >= 0]
    assert set(closed["classification"]) == {"crowd"}  # keeps the class it opened with


def test_region_wide_deviation_is_a_surge(rng):
    net, topo = _net(classify=ClassifyConfig(surge_min_elements=5, surge_fraction=0.5))
    t, e, m, x = _grid(topo, 40, rng)
    reg2 = np.flatnonzero(topo.element_to("region") == 1)
    _bump(t, e, m, x, reg2, 30, 30.0)
    rows = _run(net, t, e, m, x)
    opened = rows[rows["end_ms"] < 0]
    assert len(opened) == 12 and set(opened["classification"]) == {"surge"}
    assert set(opened["scope_id"]) == {2}


def test_parent_failure_inhibits_children(rng):
    net, topo = _net()
    t, e, m, x = _grid(topo, 40, rng)
    sw, cell = topo.index_of([100, 101])
    _bump(t, e, m, x, [sw], 30, 400.0, metric=1)  # the switch's errors jump
    _bump(t, e, m, x, [cell], 31, 30.0)  # then its cell deviates
    rows = _run(net, t, e, m, x)
    o = rows[rows["end_ms"] < 0]
    assert o[o["element_id"] == 100]["classification"].tolist() == ["fault"]
    assert o[o["element_id"] == 101]["classification"].tolist() == ["inhibited"]
    assert default_parents(topo)[cell] == sw and default_parents(topo)[sw] == -1


def test_log_transform_reports_original_units(rng):
    net, topo = _net()
    t, e, m, x = _grid(topo, 40, rng)
    el = int(topo.index_of([130])[0])
    _bump(t, e, m, x, [el], 30, 400.0, metric=1)
    rows = _run(net, t, e, m, x)
    r = rows[(rows["element_id"] == 130) & (rows["end_ms"] < 0)][0]
    # exp(log(x + 1)) - 1 round trip: a few ulps
    assert r["metric"] == "error_count"
    assert r["value"] == pytest.approx(x[(t == 30 * PM) & (e == el) & (m == 1)][0], rel=1e-12)
    assert 0.5 < r["baseline"] < 5.0  # around the Poisson mean 2, in counts


def test_silence_then_resume(rng):
    net, topo = _net()
    t, e, m, x = _grid(topo, 40, rng)
    el = int(topo.index_of([131])[0])
    gone = (e == el) & (t >= 25 * PM) & (t < 32 * PM)
    rows = _run(net, t[~gone], e[~gone], m[~gone], x[~gone], step=PM)
    s = rows[rows["element_id"] == 131]
    assert s["classification"].tolist() == ["silence", "silence"]
    assert s["start_ms"][0] == 24 * PM and s["end_ms"][0] == -1
    assert s["t_ms"][0] == 25 * PM + PM // 2  # first check past 24*PM + PM + 60 s slack
    assert s["end_ms"][1] == 32 * PM and s["value"][1] == 8 * PM
    assert not net.silence.silent[el]


def test_region_silent_together_is_a_collection_gap(rng):
    net, topo = _net(classify=ClassifyConfig(gap_min_elements=5, gap_fraction=0.5))
    t, e, m, x = _grid(topo, 40, rng)
    reg2 = np.flatnonzero(topo.element_to("region") == 1)
    # two elements stop one interval earlier (reported as silence), then the whole region
    early = reg2[:2]
    gone = (np.isin(e, early) & (t >= 24 * PM) & (t < 30 * PM)) | (np.isin(e, reg2) & (t >= 25 * PM) & (t < 30 * PM))
    failed = reg2[5]  # fails during the gap: stays silent after it
    gone |= (e == failed) & (t >= 25 * PM)
    rows = _run(net, t[~gone], e[~gone], m[~gone], x[~gone])
    g = rows[(rows["classification"] == "collection_gap") & (rows["end_ms"] < 0)]
    assert set(g["element_id"]) == set(topo.ids["element"][reg2])
    assert set(g["scope_level"]) == {"region"} and set(g["scope_id"]) == {2}
    first = rows[np.isin(rows["element_id"], topo.ids["element"][early])]
    assert first["classification"][0] == "silence"  # re-issued later as part of the gap
    closes = rows[(rows["end_ms"] >= 0) & np.isin(rows["element_id"], topo.ids["element"][reg2])]
    assert len(closes) == 11 and set(closes["classification"]) == {"collection_gap"}
    after = rows[(rows["element_id"] == topo.ids["element"][failed]) & (rows["t_ms"] > 30 * PM)]
    assert after["classification"].tolist() == ["silence"] and after["start_ms"][0] == 24 * PM
    assert after["scope_level"][0] == "element"


def test_silent_parent_inhibits_silent_children(rng):
    net, topo = _net()
    t, e, m, x = _grid(topo, 40, rng)
    site10 = topo.index_of([100, 101, 102, 103])
    gone_parent = np.isin(e, site10[:1]) & (t >= 24 * PM)
    gone_kids = np.isin(e, site10[1:]) & (t >= 25 * PM)
    keep = ~(gone_parent | gone_kids)
    rows = _run(net, t[keep], e[keep], m[keep], x[keep])
    cls = dict(zip(rows["element_id"].tolist(), rows["classification"].tolist()))
    assert cls[100] == "silence" and cls[101] == cls[102] == cls[103] == "inhibited"


def test_calendar_widens_only_its_scope(rng):
    cal = [CalendarEvent("site", 12, 28 * PM, 35 * PM, widen=10.0, name="match")]
    net, topo = _net(calendar=cal)
    t, e, m, x = _grid(topo, 40, rng)
    a, b = topo.index_of([120, 130])
    _bump(t, e, m, x, [a, b], 30, 20.0)
    rows = _run(net, t, e, m, x)
    assert set(rows["element_id"]) == {130}
    mult = net.threshold_multiplier(np.array([30 * PM, 30 * PM, 40 * PM]), np.array([a, b, a]))
    np.testing.assert_array_equal(mult, [10.0, 1.0, 1.0])


def test_update_equip_quarantines_unknown_ids(rng):
    net, topo = _net()
    eq = np.zeros(3, dtype=EQUIP_DTYPE)
    eq["ts_ms"] = 0
    eq["element_id"] = [100, 999, 101]
    eq["metric_id"] = [0, 0, 7]
    eq["value"] = 1.0
    rows = net.update_equip(eq)
    assert len(rows) == 0 and net.n_unknown == 2 and len(net.last_rejected) == 2
    assert net.detector.n_obs[0] == 1


def test_checkpoint_round_trip(rng):
    cal = [CalendarEvent("region", 2, 0, 10 * PM)]
    net, topo = _net(calendar=cal)
    t, e, m, x = _grid(topo, 40, rng)
    _bump(t, e, m, x, topo.index_of([131]), 33, 30.0)
    gone = (e == 5) & (t >= 30 * PM)
    t, e, m, x = t[~gone], e[~gone], m[~gone], x[~gone]
    first = t < 32 * PM
    ref, _ = _net(calendar=cal)
    rows_ref = _run(ref, t, e, m, x)
    _run(net, t[first], e[first], m[first], x[first])
    net2 = NetworkAnomalyDetector.from_state(net.to_state(), topo, calendar=cal)
    rows2 = _run(net2, t[~first], e[~first], m[~first], x[~first])
    tail = rows_ref[rows_ref["t_ms"] >= 32 * PM]
    np.testing.assert_array_equal(rows2, tail)
    assert len(tail) >= 2


def test_topology_without_site_level(rng):
    topo = Topology.from_columns([1, 2, 3], {"region": [7, 7, 8]})
    net = NetworkAnomalyDetector(topo, ("prb_util_pct",), CFG)
    assert (net.parent_element == -1).all()
    t = np.repeat(np.arange(40, dtype=np.int64) * PM, 3)
    e = np.tile(np.arange(3), 40)
    x = 40 + rng.standard_normal(120)
    x[(t == 30 * PM) & (e == 0)] += 30
    rows = _run(net, t, e, np.zeros(120, dtype=np.int64), x)
    assert rows["classification"][0] == "fault"
    cal = NetworkAnomalyDetector(topo, ("prb_util_pct",), CFG, calendar=[CalendarEvent("region", 7, 0, 1)])
    assert cal.threshold_multiplier(np.array([0]), np.array([2])).tolist() == [1.0]


def test_silence_monitor_matches_reference(rng):
    mon = SilenceMonitor(3, gap_factor=1.5, slack_ms=1000, min_reports=3, gap_alpha=0.2)
    t = np.array([0, 100_000, 200_000, 0, 100_000, 0, 100_000, 200_000], dtype=np.int64)
    e = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    mon.observe(t[::-1].copy(), e[::-1].copy())  # any order within a batch
    mon.observe(np.array([200_000]), np.array([2]))  # a repeated time is not a gap
    assert mon.n_reports.tolist() == [3, 2, 3] and mon.gap_ms[0] == 100_000
    due = mon.expected_by()
    assert due[1] == -1  # too few reports to trust
    for now in (350_000, 351_001):
        assert bool(now > due[0]) == reference_silent(200_000, 100_000.0, now, 1.5, 1000)
    newly, resumed = mon.check(351_001)
    assert newly.tolist() == [0, 2] and resumed.tolist() == []
    mon.observe(np.array([400_000]), np.array([0]))
    newly, resumed = mon.check(400_000)
    assert newly.tolist() == [] and resumed.tolist() == [0] and mon.silent.tolist() == [False, False, True]
    mon.grow(5)
    assert mon.last_ts[4] == -1
    back = SilenceMonitor.from_state(mon.to_state())
    np.testing.assert_array_equal(back.silent_since, mon.silent_since)
    assert back.gap_factor == 1.5


# ---- errors -------------------------------------------------------------------------------
def test_silence_monitor_errors():
    for kw, match in [
        (dict(n_elements=-1), "n_elements"),
        (dict(n_elements=1, gap_factor=0), "gap_factor"),
        (dict(n_elements=1, slack_ms=-1), "slack_ms"),
        (dict(n_elements=1, min_reports=1), "min_reports"),
        (dict(n_elements=1, gap_alpha=0), "gap_alpha"),
    ]:
        with pytest.raises(ValueError, match=match):
            SilenceMonitor(**kw)
    mon = SilenceMonitor(2)
    with pytest.raises(ValueError, match="differ in length"):
        mon.observe(np.zeros(2, dtype=np.int64), np.zeros(1, dtype=np.int64))
    with pytest.raises(ValueError, match="elem contains 2"):
        mon.observe(np.zeros(1, dtype=np.int64), np.array([2]))
    with pytest.raises(ValueError, match="cannot shrink"):
        mon.grow(1)
    with pytest.raises(ValueError, match="not a SilenceMonitor"):
        SilenceMonitor.from_state({"kind": "other"})


def test_calendar_and_classify_errors():
    with pytest.raises(ValueError, match="end_ms 5 must be after"):
        CalendarEvent("site", 1, 10, 5)
    with pytest.raises(ValueError, match="widen"):
        CalendarEvent("site", 1, 0, 5, widen=0)
    with pytest.raises(ValueError, match="crowd_min_elements"):
        ClassifyConfig(crowd_min_elements=0)
    with pytest.raises(ValueError, match="gap_fraction"):
        ClassifyConfig(gap_fraction=1.5)
    with pytest.raises(ValueError, match="shared_z"):
        ClassifyConfig(shared_z=0)


def test_network_errors():
    topo = _topo()
    n = topo.n_elements
    with pytest.raises(ValueError, match="Topology"):
        NetworkAnomalyDetector("topo")
    with pytest.raises(ValueError, match="at least one metric"):
        NetworkAnomalyDetector(topo, ())
    with pytest.raises(ValueError, match="CalendarEvent"):
        NetworkAnomalyDetector(topo, METRICS2, calendar=[("site", 1)])
    with pytest.raises(ValueError, match="unknown topology level"):
        NetworkAnomalyDetector(topo, METRICS2, calendar=[CalendarEvent("city", 1, 0, 5)])
    with pytest.raises(ValueError, match="parent_element has 2"):
        NetworkAnomalyDetector(topo, METRICS2, parent_element=[0, 1])
    with pytest.raises(ValueError, match="dense element indices"):
        NetworkAnomalyDetector(topo, METRICS2, parent_element=np.full(n, n))
    with pytest.raises(ValueError, match="metric_floor names 'cpu'"):
        NetworkAnomalyDetector(topo, METRICS2, metric_floor={"cpu": 1.0})
    with pytest.raises(ValueError, match="metric_transform"):
        NetworkAnomalyDetector(topo, METRICS2, metric_transform={"error_count": 0.0})
    with pytest.raises(ValueError, match="silence_metrics names 'x'"):
        NetworkAnomalyDetector(topo, METRICS2, silence_metrics=["x"])
    with pytest.raises(ValueError, match="metric_confirm"):
        NetworkAnomalyDetector(topo, METRICS2, metric_confirm={"error_count": 0})
    with pytest.raises(ValueError, match="floor_abs must be >= 0"):
        NetworkAnomalyDetector(topo, METRICS2, metric_floor={"error_count": -1.0})
    net = NetworkAnomalyDetector(topo, METRICS2, silence_metrics=["prb_util_pct"])
    z = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match="one length"):
        net.update(z, z[:1], z, np.zeros(2))
    with pytest.raises(ValueError, match=r"elem\[1\] = 99"):
        net.update(z, np.array([0, 99]), z, np.zeros(2))
    with pytest.raises(ValueError, match=r"metric_id\[0\] = 5"):
        net.update(z, z, np.array([5, 0]), np.zeros(2))
    with pytest.raises(ValueError, match="fields"):
        net.update_equip(np.zeros(2))
    with pytest.raises(ValueError, match="not a NetworkAnomalyDetector"):
        NetworkAnomalyDetector.from_state({"kind": "AnomalyDetector"}, topo)
    state = net.to_state()
    small = Topology.from_columns([1, 2], {"region": [1, 1], "site": [1, 2]})
    with pytest.raises(ValueError, match="checkpoint has"):
        NetworkAnomalyDetector.from_state(state, small)


def test_default_parents_without_classes():
    topo = Topology.from_columns([1, 2], {"region": [1, 1], "site": [1, 1]})
    assert default_parents(topo).tolist() == [-1, -1]
