"""Late data around a firing violation: no retraction flap, resolutions never before their firing."""

from telcoanalytics.sla.sla import SlaMonitor

from .test_sla import BLOCK, MIN, T0, minute_calls, run, timeline, topo6


def test_late_rows_that_only_delay_a_firing_keep_it_firing():
    mon = SlaMonitor(topo6(), [BLOCK])  # window 1m, for 2m, clear_for 1m
    evs = run(mon, [{10: (100, 0)}, {10: (80, 20)}, {10: (80, 20)}, {10: (80, 20)}])
    assert timeline(evs) == [(2, "pending", 2), (4, "firing", 2)]
    # minute 1 was healthy after all (20 / 500 = 4 %): the corrected run is pending since tick 3
    # and would fire at 5; the violation stays firing with its start instead of resolve + re-fire
    mon.update("cdr", minute_calls(1, {10: (400, 0)}))
    evs = run(mon, [{10: (80, 20)}, {10: (100, 0)}, {10: (100, 0)}, {10: (100, 0)}], start=4)
    assert timeline(evs) == [(7, "resolved", 2)]  # > 1 clear tick: 6, 7
    assert evs[0].worst_value == 20.0


def test_resolution_after_late_data_is_not_stamped_before_its_firing():
    rule = dict(BLOCK, **{"for": "0m", "clear_for": "0m"})
    mon = SlaMonitor(topo6(), [rule])
    evs = run(mon, [{10: (100, 0)}, {10: (100, 0)}, {10: (100, 0)}, {10: (80, 20)}])
    assert timeline(evs) == [(4, "firing", 4)]
    # corrected: minute 1 breached (fires at 2, resolves at 3) and minute 3 did not; the emitted
    # violation (firing at 4) resolves at 4, not at the replay's 3 (an alert consumer would drop
    # an update older than the firing it ends)
    mon.update("cdr", minute_calls(1, {10: (0, 50)}))
    mon.update("cdr", minute_calls(3, {10: (400, 0)}))
    evs = mon.advance(T0 + 5 * MIN)
    assert timeline(evs) == [(4, "resolved", 4)] and evs[0].end_ms == T0 + 4 * MIN
    assert "after late data" in evs[0].summary
