"""SlaMonitor.set_topology: elements added, re-homed, retired, restored, compacted while data flows,
with exact expected timelines."""

import numpy as np
import pytest

from telcoanalytics.sla.sla import SlaMonitor
from telcoanalytics.topology.model import Topology

from .test_sla import BLOCK, MIN, T0, minute_calls, timeline, topo6


def feed(mon, minute, counts):
    """One minute of calls, then the tick that closes it; returns the tick's events."""
    if counts:
        mon.update("cdr", minute_calls(minute, counts))
    return mon.advance(T0 + (minute + 1) * MIN)


def tl(events):
    return [(e.rule, e.scope_id) + t for e, t in zip(events, timeline(events))]


HOT, OK = (80, 20), (100, 0)  # 20 % blocked / healthy, 100 calls a minute
SITE = {
    "name": "site_blk",
    "kpi": "blocking_pct",
    "level": "site",
    "comparator": ">",
    "threshold": 6.0,
    "clear_threshold": 3.0,
    "window": "1m",
    "min_samples": 10,
}


def test_added_element_gets_counters_and_a_fresh_lifecycle():
    mon = SlaMonitor(topo6(), [BLOCK, SITE])
    evs = []
    for m in range(4):
        evs += feed(mon, m, {10: OK, 14: OK})
    before = mon.update("cdr", minute_calls(4, {16: HOT}))  # unknown until the change
    assert before["accepted"] == 0 and before["unknown_element"] == 100
    topo, ch = mon.topology.add_elements([16], [102])
    assert mon.set_topology(topo) == []
    assert mon.store.cdr.shape[1] == 7 and mon.evals[0].state.state.shape == (7,)
    for m in range(4, 12):
        evs += feed(mon, m, {10: OK, 14: OK, 16: HOT})
    # element 16 breaches from minute 4: pending at tick 5, firing after > 2 more ticks (as
    # test_for_and_hysteresis_exact_timeline shifted by 3); site 102 = 14 + 16: 10 % > 6 at once
    assert tl(evs) == [("blk", 16, 5, "pending", 5), ("site_blk", 102, 5, "firing", 5), ("blk", 16, 7, "firing", 5)]
    assert sorted(mon.firing()) == [("blk", "element", 16), ("site_blk", "site", 102)]


def test_rehomed_element_counts_toward_its_new_site_from_the_change_on():
    mon = SlaMonitor(topo6(), [BLOCK, SITE])
    evs = []
    for m in range(5):
        evs += feed(mon, m, {10: OK, 11: HOT, 14: OK, 15: OK})
    topo, _ = mon.topology.rehome_elements([11], [102])
    assert mon.set_topology(topo) == []  # a re-home alone closes nothing
    for m in range(5, 8):
        evs += feed(mon, m, {10: OK, 11: HOT, 14: OK, 15: OK})
    # site 100 (10 + 11): 10 % fires at tick 1; after the change it holds 10 only (0 %) and
    # resolves at the first tick; site 102 (14, 15, 11): 20/300 = 6.7 % > 6 fires at once;
    # element 11's own violation (pending 1, firing 3) goes on untouched
    assert tl(evs) == [
        ("blk", 11, 1, "pending", 1),
        ("site_blk", 100, 1, "firing", 1),
        ("blk", 11, 3, "firing", 1),
        ("site_blk", 100, 6, "resolved", 1),
        ("site_blk", 102, 6, "firing", 6),
    ]
    res = evs[3]
    assert res.value == 0.0 and "back on the healthy side" in res.summary
    assert sorted(mon.firing()) == [("blk", "element", 11), ("site_blk", "site", 102)]
    tab = mon.kpi_table("site", T0 + 8 * MIN, ["blocking_pct"], window_s=60)
    v = tab["blocking_pct"]  # sites 100, 101 (no calls: insufficient), 102
    assert v[0] == 0.0 and np.isnan(v[1]) and v[2] == pytest.approx(100 * 20 / 300, rel=1e-12)


def test_retired_element_closes_its_violations_and_leaves_site_roll_ups():
    mon = SlaMonitor(topo6(), [BLOCK, SITE], emit_cancelled=True)
    evs = []
    for m in range(5):
        evs += feed(mon, m, {12: HOT, 13: OK, 14: HOT if m == 4 else OK})
    assert tl(evs) == [
        ("blk", 12, 1, "pending", 1),
        ("site_blk", 101, 1, "firing", 1),
        ("blk", 12, 3, "firing", 1),
        ("blk", 14, 5, "pending", 5),
        ("site_blk", 102, 5, "firing", 5),
    ]
    topo, _ = mon.topology.retire_elements([12, 14])
    closed = mon.set_topology(topo)
    # open violations on the retired elements close at the last evaluated tick (5): firing
    # -> resolved, pending -> withdrawn (a resolved event with emit_cancelled)
    assert tl(closed) == [("blk", 12, 5, "resolved", 1), ("blk", 14, 5, "resolved", 5)]
    assert all("closed without recovery: element retired" in e.summary for e in closed)
    assert closed[0].end_ms == T0 + 5 * MIN and closed[0].worst_value == 20.0
    assert "pending violation" in closed[1].summary
    evs = []
    for m in range(5, 8):  # rows of retired elements still arrive (late feeds): no effect
        evs += feed(mon, m, {12: HOT, 13: OK, 14: HOT, 15: OK})
    # site 101 is 13 alone from the change on (0 %): resolves at tick 6; site 102 = 15 alone
    assert tl(evs) == [("site_blk", 101, 6, "resolved", 1), ("site_blk", 102, 6, "resolved", 5)]
    assert mon.firing() == []
    # restored: a fresh lifecycle (pending at the first tick that sees its minute)
    topo, _ = mon.topology.restore_elements([12])
    assert mon.set_topology(topo) == []
    evs = feed(mon, 8, {12: HOT, 13: OK})
    assert tl(evs) == [("blk", 12, 9, "pending", 9), ("site_blk", 101, 9, "firing", 9)]


def test_site_left_without_active_elements_closes_and_pending_is_silent_by_default():
    mon = SlaMonitor(topo6(), [BLOCK, SITE])
    evs = []
    for m in range(2):
        evs += feed(mon, m, {12: HOT, 13: HOT, 10: OK})
    assert tl(evs) == [("blk", 12, 1, "pending", 1), ("blk", 13, 1, "pending", 1), ("site_blk", 101, 1, "firing", 1)]
    topo, _ = mon.topology.retire_elements([12, 13])
    closed = mon.set_topology(topo)
    assert tl(closed) == [("site_blk", 101, 2, "resolved", 1)]  # pending ones withdrawn silently
    assert "no active element of it left in the rule's scope" in closed[0].summary
    assert mon.firing() == [] and feed(mon, 2, {12: HOT, 13: HOT, 10: OK}) == []


def test_compact_moves_state_with_the_changes_and_unaffected_violations_continue():
    mon = SlaMonitor(topo6(), [BLOCK])
    evs = []
    for m in range(4):
        evs += feed(mon, m, {12: HOT, 15: HOT})
    topo1, ch1 = mon.topology.retire_elements([12])
    topo2, ch2 = topo1.compact()
    with pytest.raises(ValueError, match="pass the changes"):
        mon.set_topology(topo2)
    with pytest.raises(ValueError, match="monitor runs version 0"):
        mon.set_topology(topo2, [ch2])
    closed = mon.set_topology(topo2, [ch1, ch2])
    assert tl(closed) == [("blk", 12, 4, "resolved", 1)]
    assert "closed without recovery: removed from the topology" in closed[0].summary
    assert mon.store.cdr.shape[1] == 5 and mon.firing() == [("blk", "element", 15)]
    for m in range(4, 7):
        evs += feed(mon, m, {15: OK if m >= 5 else HOT})
    assert tl(evs) == [
        ("blk", 12, 1, "pending", 1),
        ("blk", 15, 1, "pending", 1),
        ("blk", 12, 3, "firing", 1),
        ("blk", 15, 3, "firing", 1),
        ("blk", 15, 7, "resolved", 1),
    ]  # > 1 clear tick: 6, 7


def test_state_roundtrip_keeps_retired_elements_out_of_scope():
    mon = SlaMonitor(topo6(), [BLOCK])
    feed(mon, 0, {12: OK})
    topo, _ = mon.topology.retire_elements([12])
    mon.set_topology(topo)
    back = SlaMonitor.from_state(mon.to_state())
    assert not back.topology.active[2] and back.evals[0].mask is not None and not back.evals[0].mask[2]
    for m in range(1, 5):
        assert feed(back, m, {12: HOT}) == [] and feed(mon, m, {12: HOT}) == []


def test_late_rows_after_a_change_are_re_evaluated_in_the_new_structure():
    mon = SlaMonitor(topo6(), [SITE])
    for m in range(3):
        feed(mon, m, {10: OK, 14: OK, 15: OK})
    topo, _ = mon.topology.rehome_elements([11], [102])
    mon.set_topology(topo)
    feed(mon, 3, {10: OK, 14: OK, 15: OK})
    late = mon.update("cdr", minute_calls(3, {11: (70, 30)}))  # minute 3 arrives after its tick
    assert late["late"] == 30 + 70
    evs = mon.advance(T0 + 5 * MIN)
    # re-evaluated tick 4 sees site 102 = 14, 15, 11: 30/300 = 10 % (firing at its true time)
    assert tl(evs)[0] == ("site_blk", 102, 4, "firing", 4)


def test_set_topology_errors_leave_the_monitor_unchanged():
    mon = SlaMonitor(topo6(), [dict(BLOCK, filter={"equipment_class": "macro_cell"})])
    with pytest.raises(TypeError, match="Topology"):
        mon.set_topology("topo")
    flat = Topology.from_columns(np.array([10, 11, 12, 13, 14, 15]), {"site": np.array([1, 1, 2, 2, 3, 3])})
    with pytest.raises(ValueError, match="levels"):
        mon.set_topology(flat)
    bare = Topology.from_columns(
        np.array([10, 11, 12, 13, 14, 15]),
        {"region": np.array([1, 1, 1, 1, 2, 2]), "site": np.array([100, 100, 101, 101, 102, 102])},
    )
    with pytest.raises(ValueError, match="equipment_class"):
        mon.set_topology(bare)
    assert mon.topology.version == 0 and "equipment_class" in mon.topology.attributes
    with pytest.raises(ValueError, match="element_map"):
        mon.store.set_topology(mon.topology, np.array([0, 1]))
    with pytest.raises(TypeError, match="Topology"):
        mon.store.set_topology(None)


def test_attribute_change_moves_an_element_out_of_a_filtered_rule():
    mon = SlaMonitor(topo6(), [dict(BLOCK, filter={"equipment_class": [0]}, **{"for": "0m"})])
    assert tl(feed(mon, 0, {10: HOT})) == [("blk", 10, 1, "firing", 1)]
    topo, _ = mon.topology.set_attributes([10], {"equipment_class": np.array([3], np.int16)})
    closed = mon.set_topology(topo)
    assert tl(closed) == [("blk", 10, 1, "resolved", 1)]
    assert "no active element of it left in the rule's scope" in closed[0].summary
    assert feed(mon, 1, {10: HOT}) == []
