"""The paging policy's degradation alerts (anomaly.policy) through the alert manager."""

import numpy as np

from telcoanalytics.alerts import AlertManager
from telcoanalytics.anomaly.detector import ANOMALY_DTYPE
from telcoanalytics.anomaly.policy import degradation_alerts, paged_alerts

T0 = 1_790_000_000_000
MIN = 60_000


def rows(*specs):
    """(element_id, metric, classification, direction, start_ms)."""
    out = np.zeros(len(specs), dtype=ANOMALY_DTYPE)
    for i, (eid, metric, cls, d, start) in enumerate(specs):
        end = -1 if cls == "fault" else start + 5 * MIN  # faults open, changes come closed
        out[i] = (i, eid, metric, start, end, 4.0, d, cls, 10.0, 3.0, 30.0, "element", eid, start)
    return out


def test_harmful_change_opens_a_degradation_and_the_shift_back_resolves_it():
    r = rows(
        (7, "latency_ms", "change", 1, T0),
        (7, "throughput_mbps", "change", 1, T0),  # not a service-quality metric: reported only
        (8, "latency_ms", "change", -1, T0),  # an improvement: nothing open, nothing to page
        (9, "loss_pct", "fault", 1, T0),  # faults are paged as before
    )
    out = paged_alerts(r, None, T0)
    names = sorted((a.labels["alertname"], a.labels["element"], a.state) for a in out)
    assert names == [
        ("anomaly_loss_pct", "9", "firing"),
        ("degradation_latency_ms", "7", "firing"),
        ("degradation_latency_ms", "8", "resolved"),
    ]
    mgr = AlertManager(None, [], group_wait_ms=0)
    mgr.ingest(out, T0)
    assert mgr.stats["resolved_unseen"] == 1  # the improvement on 8 never opened anything
    back = degradation_alerts(rows((7, "latency_ms", "change", -1, T0 + 60 * MIN)), None)
    assert back[0].fingerprint == next(a for a in out if a.labels["element"] == "7").fingerprint
    mgr.ingest(back, T0 + 60 * MIN)
    assert not [a for a in mgr.active_alerts if a.state == "firing" and a.labels["element"] == "7"]
    deg = [a for a in out if a.labels["alertname"].startswith("degradation")][0]
    assert (
        deg.severity == "major" and deg.classification == "degradation" and "latency_ms" in deg.annotations["summary"]
    )


def test_no_change_rows_no_degradation():
    assert degradation_alerts(rows((7, "latency_ms", "fault", 1, T0)), None) == []
    assert degradation_alerts(rows((7, "throughput_mbps", "change", 1, T0)), None, harmful={"throughput_mbps": 0}) == []


def test_a_small_shift_is_reported_not_paged():
    r = rows((7, "latency_ms", "change", 1, T0), (8, "latency_ms", "change", 1, T0))
    r["value"], r["baseline"] = [14.0, 25.0], [10.0, 10.0]  # 1.4x and 2.5x the level before
    assert [a.labels["element"] for a in degradation_alerts(r, None)] == ["8"]
    r["baseline"] = [-1.0, 0.0]  # no positive level before: no ratio to judge
    assert degradation_alerts(r, None) == []


# ---- the stateful policy: persistence, corroboration, load-driven shifts ------------------------------
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from telcoanalytics.anomaly.policy import PagingPolicy  # noqa: E402


def ep(eid, metric, start, end=-1, t=None, cls="fault", d=1, value=30.0, baseline=10.0, slot=None, score=5.0):
    """One episode row: open (end -1) or closed, emitted at ``t`` (default: start, or end + 15 min)."""
    r = np.zeros(1, dtype=ANOMALY_DTYPE)
    r["slot"] = eid * 10 + len(metric) if slot is None else slot
    r["element_id"], r["metric"], r["classification"], r["direction"] = eid, metric, cls, d
    r["start_ms"], r["end_ms"], r["value"], r["baseline"] = start, end, value, baseline
    r["peak_score"], r["threshold"], r["scope_level"], r["scope_id"] = score, 4.5, "element", eid
    r["t_ms"] = t if t is not None else (start if end < 0 else end + 15 * MIN)
    return r


def names(alerts):
    return sorted((a.labels["alertname"], a.labels["element"], a.state) for a in alerts)


def test_a_lone_blip_closes_before_it_persists_and_is_not_paged():
    pol = PagingPolicy()
    assert pol.page(ep(7, "loss_pct", T0), None, T0, data_ms=T0) == []
    assert pol.page(np.zeros(0, ANOMALY_DTYPE), None, T0, data_ms=T0 + 10 * MIN) == []
    assert pol.page(ep(7, "loss_pct", T0, end=T0), None, T0, data_ms=T0 + 15 * MIN) == []
    assert pol.counts["transient"] == 1 and pol.counts["held"] == 1 and not len(pol._held)
    assert "1 closed first" in pol.report_line()


def test_a_fault_that_stays_open_pages_once_it_persisted_and_its_close_resolves_it():
    pol = PagingPolicy(persist_ms=15 * MIN)
    assert pol.page(ep(7, "loss_pct", T0), None, T0, data_ms=T0 + 15 * MIN) == []  # not longer than 15 min yet
    out = pol.page(np.zeros(0, ANOMALY_DTYPE), None, T0, data_ms=T0 + 16 * MIN)
    assert names(out) == [("anomaly_loss_pct", "7", "firing")] and pol.counts["paged_persisted"] == 1
    assert pol.page(np.zeros(0, ANOMALY_DTYPE), None, T0, data_ms=T0 + 30 * MIN) == []  # paged once
    close = pol.page(ep(7, "loss_pct", T0, end=T0 + 40 * MIN), None, T0, data_ms=T0 + 55 * MIN)
    assert names(close) == [("anomaly_loss_pct", "7", "resolved")] and not pol._paged
    # an episode opened and closed between two calls, long enough: paged (as resolved)
    both = np.concatenate([ep(8, "loss_pct", T0), ep(8, "loss_pct", T0, end=T0 + 20 * MIN)])
    assert names(pol.page(both, None, T0, data_ms=T0 + 40 * MIN)) == [("anomaly_loss_pct", "8", "resolved")]


def test_the_slot_clock_and_a_second_alarm_point_decide_persistence():
    pol = PagingPolicy(persist_ms=15 * MIN)
    r = ep(7, "loss_pct", T0, slot=3)
    # the newest event overall is past the persistence time, but this slot's data is not
    assert pol.page(r, None, T0, data_ms=T0 + 30 * MIN, slot_time=lambda s: np.full(len(s), T0 + 10 * MIN)) == []
    out = pol.page(r[:0], None, T0, data_ms=T0 + 30 * MIN, slot_time=lambda s: np.full(len(s), T0 + 16 * MIN))
    assert names(out) == [("anomaly_loss_pct", "7", "firing")]
    pol2 = PagingPolicy(persist_ms=15 * MIN)
    lone = lambda s: np.full(len(s), T0)  # noqa: E731 - the episode's only alarm point is its start
    assert pol2.page(r, None, T0, data_ms=T0 + 5 * MIN, slot_time=lambda s: s * 0 + T0 + 5 * MIN, last_alarm=lone) == []
    second = lambda s: np.full(len(s), T0 + 5 * MIN)  # noqa: E731
    out = pol2.page(r[:0], None, T0, data_ms=T0 + 5 * MIN, slot_time=lambda s: s * 0 + T0 + 5 * MIN, last_alarm=second)
    assert names(out) == [("anomaly_loss_pct", "7", "firing")]


def test_faults_of_two_families_on_one_element_corroborate_each_other_one_family_does_not():
    pol = PagingPolicy()
    busy = np.concatenate([ep(7, "latency_ms", T0), ep(7, "loss_pct", T0)])  # both service quality
    assert pol.page(busy, None, T0, data_ms=T0) == []
    failing = np.concatenate([ep(8, "error_count", T0), ep(8, "loss_pct", T0 + 5 * MIN)])
    out = pol.page(failing, None, T0, data_ms=T0 + 5 * MIN)
    assert names(out) == [("anomaly_error_count", "8", "firing"), ("anomaly_loss_pct", "8", "firing")]
    assert pol.counts["paged_corroborated"] == 2
    # a later fault of the same element joins the paged one's family set: paged at once
    assert names(pol.page(ep(8, "latency_ms", T0 + 10 * MIN), None, T0, data_ms=T0 + 10 * MIN)) == [
        ("anomaly_latency_ms", "8", "firing")
    ]
    # faults on two different elements corroborate nothing
    other = np.concatenate([ep(9, "error_count", T0), ep(10, "loss_pct", T0)])
    assert pol.page(other, None, T0, data_ms=T0 + 10 * MIN) == []
    assert PagingPolicy(corroborate=False).page(failing, None, T0, data_ms=T0 + 5 * MIN) == []


def test_a_quality_shift_that_the_elements_load_explains_is_not_a_degradation():
    pol = PagingPolicy(load_defer_ms=0)  # decided at confirmation (the deferral: next test)
    load = ep(7, "prb_util_pct", T0 + 5 * MIN, end=T0 + 20 * MIN, cls="change", value=72.0, baseline=45.0)
    assert pol.page(load, None, T0, data_ms=T0 + 20 * MIN) == []
    lat = ep(7, "latency_ms", T0, end=T0 + 35 * MIN, t=T0 + 35 * MIN, cls="change", value=19.0, baseline=11.0)
    assert pol.page(lat, None, T0, data_ms=T0 + 35 * MIN) == [] and pol.counts["load_driven"] == 1
    # the same shift on an element whose load stayed low, or whose load rose long before: a degradation
    quiet = ep(8, "prb_util_pct", T0 + 5 * MIN, end=T0 + 20 * MIN, cls="change", value=24.0, baseline=20.0)
    early = ep(9, "prb_util_pct", T0 - 3 * 3_600_000, end=T0 - 2 * 3_600_000, cls="change", value=80.0)
    pol.page(np.concatenate([quiet, early]), None, T0, data_ms=T0 + 20 * MIN)
    lat8 = ep(8, "latency_ms", T0, end=T0 + 35 * MIN, t=T0 + 35 * MIN, cls="change", value=19.0, baseline=11.0)
    lat9 = ep(9, "latency_ms", T0, end=T0 + 35 * MIN, t=T0 + 35 * MIN, cls="change", value=19.0, baseline=11.0)
    got = pol.page(np.concatenate([lat8, lat9]), None, T0, data_ms=T0 + 35 * MIN)
    assert names(got) == [("degradation_latency_ms", "8", "firing"), ("degradation_latency_ms", "9", "firing")]
    off = PagingPolicy(load_level=float("inf"), load_defer_ms=0)
    off.page(load, None, T0, data_ms=T0 + 20 * MIN)
    assert names(off.page(lat, None, T0, data_ms=T0 + 35 * MIN)) == [("degradation_latency_ms", "7", "firing")]


def test_a_held_fault_reclassified_by_the_detector_is_forgotten_and_silences_page_at_once():
    pol = PagingPolicy()
    pol.page(ep(7, "prb_util_pct", T0), None, T0, data_ms=T0)
    pol.page(ep(7, "prb_util_pct", T0, cls="crowd"), None, T0, data_ms=T0 + 5 * MIN)
    assert pol.counts["reclassified"] == 1 and not len(pol._held)
    assert pol.page(np.zeros(0, ANOMALY_DTYPE), None, T0, data_ms=T0 + 60 * MIN) == []
    silence = ep(8, "", T0, cls="silence")
    assert [a.labels["classification"] for a in pol.page(silence, None, T0, data_ms=T0)] == ["silence"]


def test_policy_state_round_trip_continues_like_the_uninterrupted_policy():
    import json

    def script():
        return [
            (ep(7, "loss_pct", T0), T0),
            (ep(8, "error_count", T0), T0 + 5 * MIN),
            (ep(9, "prb_util_pct", T0, end=T0 + 10 * MIN, cls="change", value=80.0), T0 + 10 * MIN),
            (np.zeros(0, ANOMALY_DTYPE), T0 + 20 * MIN),
            (ep(9, "latency_ms", T0, end=T0 + 25 * MIN, t=T0 + 25 * MIN, cls="change"), T0 + 25 * MIN),
            (ep(8, "error_count", T0, end=T0 + 30 * MIN), T0 + 45 * MIN),
        ]

    a = PagingPolicy()
    want = [names(a.page(r, None, T0, data_ms=d)) for r, d in script()]
    b = PagingPolicy()
    got = []
    for k, (r, d) in enumerate(script()):
        if k == 3:
            s = b.to_state()
            s = {k2: (v if isinstance(v, np.ndarray) else json.loads(json.dumps(v))) for k2, v in s.items()}
            b = PagingPolicy.from_state(s)
        got.append(names(b.page(r, None, T0, data_ms=d)))
    assert got == want and b.counts == a.counts
    with pytest.raises(ValueError, match="persist_ms"):
        PagingPolicy(persist_ms=-1)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(["loss_pct", "latency_ms", "error_count"]),
            st.integers(0, 12),
            st.integers(0, 8),
        ),  # fmt: skip
        min_size=1,
        max_size=12,
    )
)
def test_every_paged_fault_persisted_or_was_corroborated_and_nothing_is_paged_twice(eps):
    """Random fault episodes (element, metric, start and length in 5-min points) fed in data-time
    order: a fault is paged at most once while open, only once it stayed open longer than the
    persistence time or another family's fault was open on its element; with persistence 0 and
    no corroboration every fault is paged (the stateless policy)."""
    P = 5 * MIN
    seen = set()
    events = []
    for e, m, s, n in eps:
        if (e, m, s) in seen:
            continue
        seen.add((e, m, s))
        start, end = T0 + s * P, T0 + (s + n) * P
        events.append((start, ep(e, m, start)))
        events.append((end + 3 * P, ep(e, m, start, end=end)))
    events.sort(key=lambda x: x[0])
    for persist in (15 * MIN, 0):
        pol = PagingPolicy(persist_ms=persist, corroborate=persist > 0)
        fam = {"loss_pct": "quality", "latency_ms": "quality", "error_count": "errors"}
        open_eps: dict = {}
        firing = set()
        for t, r in events:
            k = (int(r["element_id"][0]), str(r["metric"][0]), int(r["start_ms"][0]))
            if r["end_ms"][0] < 0:
                open_eps[k] = t
            for a in pol.page(r, None, t, data_ms=t):
                ak = (int(a.labels["element"]), a.labels["metric"], a.starts_at_ms)
                if a.state == "firing":
                    assert ak not in firing
                    firing.add(ak)
                    corroborated = any(o[0] == ak[0] and fam[o[1]] != fam[ak[1]] for o in open_eps if o != ak)
                    assert t - ak[2] > persist or corroborated or persist == 0
                else:
                    firing.discard(ak)
            if r["end_ms"][0] >= 0:
                open_eps.pop(k, None)
        if persist == 0:
            assert pol.counts["transient"] == 0 and not len(pol._held)


def test_for_interval_scales_persistence_and_select_returns_the_rows_page_alerts():
    assert PagingPolicy.for_interval(10).persist_ms == 30_000 and PagingPolicy.for_interval(300).persist_ms == 900_000
    with pytest.raises(ValueError, match="interval_s"):
        PagingPolicy.for_interval(0)
    pol = PagingPolicy.for_interval(10)
    assert len(pol.select(ep(7, "loss_pct", T0), T0)) == 0
    got = pol.select(ep(7, "loss_pct", T0)[:0], T0 + 31_000)
    assert got["element_id"].tolist() == [7] and got.dtype == ANOMALY_DTYPE


def test_a_lone_availability_fault_is_not_paged_however_long_only_with_another_family():
    """Two chance outages in consecutive intervals make one unavailable_s episode with a second alarm
    point that stays open past the persistence time: not paged alone (the SLA availability rule
    counts outages); with the element's error counter faulting too, both page at once."""
    pol = PagingPolicy()
    two = lambda s: np.full(len(s), T0 + 5 * MIN)  # noqa: E731 - a second alarm point
    clock = lambda s: np.full(len(s), T0 + 20 * MIN)  # noqa: E731 - past persist_ms
    out = pol.page(ep(7, "unavailable_s", T0), None, T0, data_ms=T0 + 20 * MIN, slot_time=clock, last_alarm=two)
    assert out == [] and len(pol._held) == 1
    closed = ep(7, "unavailable_s", T0, end=T0 + 5 * MIN, t=T0 + 25 * MIN)
    assert pol.page(closed, None, T0, data_ms=T0 + 25 * MIN) == [] and not len(pol._held)
    # opened and closed between two calls: not paged either (a loss fault of that length would be)
    both = np.concatenate([ep(8, "unavailable_s", T0), ep(8, "unavailable_s", T0, end=T0 + 10 * MIN)])
    assert pol.page(both, None, T0, data_ms=T0 + 40 * MIN) == []
    assert pol.counts["uncorroborated"] == 2 and pol.counts["uncorroborated_availability"] == 2
    assert "(not paged): 2 availability, 0 load" in pol.report_line()
    failing = np.concatenate([ep(9, "unavailable_s", T0), ep(9, "error_count", T0 + 5 * MIN)])
    got = pol.page(failing, None, T0, data_ms=T0 + 5 * MIN)
    assert names(got) == [("anomaly_error_count", "9", "firing"), ("anomaly_unavailable_s", "9", "firing")]
    # the stateless settings page it as any other fault
    assert len(PagingPolicy(corroborated_only=()).page(both, None, T0, data_ms=T0 + 40 * MIN)) == 1
    assert len(PagingPolicy(persist_ms=0, corroborate=False).page(ep(8, "unavailable_s", T0), None, T0, T0 + MIN)) == 1


def test_policy_state_keeps_corroborated_only_and_older_states_restore_with_the_default():
    pol = PagingPolicy(corroborated_only=("availability", "temperature"))
    s = pol.to_state()
    assert PagingPolicy.from_state(s).corroborated_only == ("availability", "temperature")
    del s["settings"]["corroborated_only"]  # a checkpoint written before the setting existed
    assert PagingPolicy.from_state(s).corroborated_only == ("availability", "load")
    assert PagingPolicy(load_page_level=60.0).to_state()["settings"]["load_page_level"] == 60.0
    del s["settings"]["load_page_level"]  # nor this one
    assert PagingPolicy.from_state(s).load_page_level == 40.0


def test_a_quality_shift_on_a_busy_element_waits_for_a_utilisation_shift_confirmed_after_it():
    """The default day's last false incident: a cell at 75 % since its morning rise (confirmed 3 h
    before, outside the 2-h window), latency from 13:45 confirmed at 14:30 (1.67x), the utilisation
    rise 72 -> 83 % that began at 13:40 confirmed at 15:00, 30 minutes later. Waiting 20 minutes it
    pages; waiting the default 40 it does not. A degradation on an element that is not busy pages at
    once; one on a busy element with no new load shift 40 minutes of data later, its shift back
    after it."""
    H = 60 * MIN
    morning = ep(7, "prb_util_pct", T0 - 4 * H, end=T0 - 3 * H, t=T0 - 3 * H, cls="change", value=75.3, baseline=56.6)
    lat = ep(
        7, "latency_ms", T0 + 5 * MIN, end=T0 + 50 * MIN, t=T0 + 50 * MIN, cls="change", value=87.65, baseline=52.57
    )
    prb = ep(7, "prb_util_pct", T0, end=T0 + 80 * MIN, t=T0 + 80 * MIN, cls="change", value=83.2, baseline=71.6)
    short = PagingPolicy(load_defer_ms=20 * MIN)
    short.page(morning, None, T0, data_ms=T0 - 3 * H)
    assert short.page(lat, None, T0, data_ms=T0 + 50 * MIN) == []
    assert names(short.page(lat[:0], None, T0, data_ms=T0 + 70 * MIN)) == [("degradation_latency_ms", "7", "firing")]
    pol = PagingPolicy()
    pol.page(morning, None, T0, data_ms=T0 - 3 * H)
    assert pol.page(lat, None, T0, data_ms=T0 + 50 * MIN) == [] and len(pol._quality) == 1
    assert pol.page(lat[:0], None, T0, data_ms=T0 + 70 * MIN) == []  # 20 minutes: still waiting
    assert pol.page(prb, None, T0, data_ms=T0 + 80 * MIN) == []
    assert pol.page(lat[:0], None, T0, data_ms=T0 + 90 * MIN) == [] and pol.counts["load_driven"] == 1
    assert (
        not len(pol._quality)
        and pol.counts["deferred"] == 1
        and "1 on busy elements waited 40 min" in pol.report_line()
    )
    # an injected degradation on a quiet element: paged at its confirmation
    quiet = ep(9, "latency_ms", T0 + H, end=T0 + 2 * H, t=T0 + 2 * H, cls="change", value=40.0, baseline=10.0)
    assert names(pol.page(quiet, None, T0, data_ms=T0 + 2 * H)) == [("degradation_latency_ms", "9", "firing")]
    # on a busy element with no new load shift: paged once 40 minutes of data passed
    busy = ep(8, "prb_util_pct", T0 - H, end=T0, t=T0, cls="change", value=75.0, baseline=40.0)
    deg = ep(8, "latency_ms", T0 + 3 * H, end=T0 + 4 * H, t=T0 + 4 * H, cls="change", value=40.0, baseline=10.0)
    back = ep(8, "latency_ms", T0 + 6 * H, end=T0 + 6 * H, t=T0 + 6 * H, cls="change", value=10.0, baseline=40.0, d=-1)
    pol.page(busy, None, T0, data_ms=T0)
    assert pol.page(deg, None, T0, data_ms=T0 + 4 * H + 39 * MIN) == []
    # the shift back arrives in the same call as the release (and queues behind it): it follows its shift
    got = pol.page(back, None, T0, data_ms=T0 + 6 * H + 40 * MIN)
    assert [(a.labels["alertname"], a.state) for a in got] == [
        ("degradation_latency_ms", "firing"),
        ("degradation_latency_ms", "resolved"),
    ]
    s = PagingPolicy().to_state()
    assert (
        PagingPolicy.from_state(s).load_defer_ms == 40 * MIN and PagingPolicy.for_interval(10).load_defer_ms == 80_000
    )
    held = PagingPolicy()
    held.page(busy, None, T0, data_ms=T0)
    held.page(deg, None, T0, data_ms=T0 + 4 * H)
    s = held.to_state()
    back_from = PagingPolicy.from_state(s)
    assert len(back_from._quality) == 1 and back_from.busy_ms == 6 * H
    assert names(back_from.page(deg[:0], None, T0, data_ms=T0 + 5 * H)) == [("degradation_latency_ms", "8", "firing")]
    del s["quality"]  # a checkpoint written before the deferral
    assert not len(PagingPolicy.from_state(s)._quality)
    with pytest.raises(ValueError, match="load_defer_ms"):
        PagingPolicy(load_defer_ms=-1)


def test_busy_is_the_latest_utilisation_level_a_cell_whose_load_fell_back_is_not_busy():
    """Development seed 21's injected degradation: its cell rose to 72 % at 14:20, fell back to 35 %
    (confirmed 18:05), the loss shift confirmed at 18:45: not busy, paged at once. A cell that fell
    from 88 to 60 % is still busy (it waits), and that downward shift explains nothing: paged after
    the wait. A rise older than busy_ms does not count."""
    H = 60 * MIN
    pol = PagingPolicy()
    load = np.concatenate(
        [
            ep(7, "prb_util_pct", T0 - 5 * H, end=T0 - 4 * H, t=T0 - 4 * H, cls="change", value=72.0, baseline=62.0),
            ep(7, "prb_util_pct", T0 - 3 * H, end=T0 - H, t=T0 - H, cls="change", value=35.0, baseline=57.0, d=-1),
            ep(8, "prb_util_pct", T0 - 5 * H, end=T0 - 4 * H, t=T0 - 4 * H, cls="change", value=88.0, baseline=50.0),
            ep(8, "prb_util_pct", T0 - 90 * MIN, end=T0 - H, t=T0 - H, cls="change", value=60.0, baseline=88.0, d=-1),
            ep(9, "prb_util_pct", T0 - 8 * H, end=T0 - 7 * H, t=T0 - 7 * H, cls="change", value=80.0, baseline=40.0),
        ]
    )
    pol.page(load, None, T0, data_ms=T0 - H)
    quality = np.concatenate(
        [ep(e, "loss_pct", T0 - 30 * MIN, end=T0, t=T0, cls="change", value=0.16, baseline=0.05) for e in (7, 8, 9)]
    )
    assert names(pol.page(quality, None, T0, data_ms=T0)) == [
        ("degradation_loss_pct", "7", "firing"),
        ("degradation_loss_pct", "9", "firing"),
    ]
    assert pol.counts["deferred"] == 1 and pol.counts["load_driven"] == 0
    assert names(pol.page(quality[:0], None, T0, data_ms=T0 + 40 * MIN)) == [("degradation_loss_pct", "8", "firing")]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),
            st.integers(0, 100),
            st.sampled_from([1, -1]),
            st.sampled_from(["prb_util_pct", "cpu_util_pct"]),
        ),
        min_size=0,
        max_size=6,
    ),
    st.integers(0, 30),
)
def test_a_quality_shift_waits_exactly_when_a_plain_reference_calls_the_element_busy(loads, at):
    """Random utilisation shifts (confirmation time in 15-min steps, level, direction, metric) of one
    element, then a quality shift confirmed at step ``at``: it waits iff, for some utilisation metric,
    the latest shift confirmed in the 6 hours up to it (the last given among equal times) is at 50 %
    or more. Reference: a plain loop over the shifts."""
    step = 15 * MIN
    pol = PagingPolicy()
    t_q = T0 + at * step
    latest: dict = {}
    for ti, level, d, metric in sorted(loads, key=lambda x: x[0]):
        t = T0 + ti * step
        row = ep(5, metric, t - 10 * MIN, end=t, t=t, cls="change", value=float(level), d=d, baseline=float(level))
        pol.page(row, None, T0, data_ms=t)
        if t_q - 6 * 3_600_000 <= t <= t_q:
            latest[metric] = level
    busy_ref = any(v >= 50 for v in latest.values())
    q = ep(5, "jitter_ms", t_q - 3 * 3_600_000, end=t_q, t=t_q, cls="change", value=9.0, baseline=1.0)
    pol.page(q, None, T0, data_ms=max(t_q, T0 + max([x[0] for x in loads], default=0) * step))
    assert pol.counts["deferred"] == int(busy_ref)


def test_a_lone_utilisation_fault_pages_only_from_the_page_level_or_with_another_family():
    """Seed 11's false incident: a lone prb_util_pct fault at 31.5 % (expected 19 %) with a second
    alarm point, closed 20 minutes later: not paged, counted as a lone load fault. A fault opening at
    45 % pages on persistence, seed 11's congestion opening at 64 % (from LOAD_NOW_LEVEL) at once;
    below the page level it pages once the cell's latency faults too; a lone throughput fault never
    pages alone."""
    two = lambda s: np.full(len(s), T0 + 5 * MIN)  # noqa: E731 - a second alarm point
    pol = PagingPolicy()
    low = ep(7, "prb_util_pct", T0, value=31.5, baseline=18.9)
    assert pol.page(low, None, T0, data_ms=T0 + 20 * MIN, last_alarm=two) == [] and len(pol._held) == 1
    assert pol.page(ep(7, "prb_util_pct", T0, end=T0 + 20 * MIN, value=30.2), None, T0, data_ms=T0 + 35 * MIN) == []
    assert pol.counts["uncorroborated_load"] == 1 and not len(pol._held)
    assert "0 availability, 1 load (load: utilisation below 40%" in pol.report_line()
    high = ep(8, "prb_util_pct", T0, value=45.0, baseline=30.0)
    assert pol.page(high, None, T0, data_ms=T0 + 10 * MIN) == []  # neither persisted nor corroborated yet
    assert names(pol.page(high[:0], None, T0, data_ms=T0 + 16 * MIN)) == [("anomaly_prb_util_pct", "8", "firing")]
    full = ep(12, "prb_util_pct", T0, value=63.9, baseline=36.3)
    assert names(pol.page(full, None, T0, data_ms=T0)) == [("anomaly_prb_util_pct", "12", "firing")]
    assert PagingPolicy(load_now_level=np.inf).page(full, None, T0, data_ms=T0) == []
    # below the level, corroborated by the cell's latency fault: both page at once
    pol.page(ep(9, "cpu_util_pct", T0, value=35.0), None, T0, data_ms=T0 + 20 * MIN, last_alarm=two)
    got = pol.page(ep(9, "latency_ms", T0 + 20 * MIN), None, T0, data_ms=T0 + 20 * MIN)
    assert names(got) == [("anomaly_cpu_util_pct", "9", "firing"), ("anomaly_latency_ms", "9", "firing")]
    thr = ep(10, "throughput_mbps", T0, value=500.0, baseline=10.0)
    assert pol.page(thr, None, T0, data_ms=T0 + 60 * MIN, last_alarm=two) == []
    # opened and closed between two calls, long enough to have persisted: by its level, as above
    both = np.concatenate([ep(11, "prb_util_pct", T0, value=30.0), ep(11, "prb_util_pct", T0, end=T0 + 30 * MIN)])
    assert PagingPolicy().page(both, None, T0, data_ms=T0 + 60 * MIN) == []
    both["value"] = [45.0, 45.0]
    assert names(PagingPolicy().page(both, None, T0, data_ms=T0 + 60 * MIN)) == [
        ("anomaly_prb_util_pct", "11", "resolved")
    ]
    # never alone with an infinite level; always on persistence when load is not corroborated-only
    never = PagingPolicy(load_page_level=float("inf"))
    assert never.page(high, None, T0, data_ms=T0 + 60 * MIN, last_alarm=two) == []
    old = PagingPolicy(corroborated_only=("availability",))
    assert len(old.page(low, None, T0, data_ms=T0 + 20 * MIN, last_alarm=two)) == 1
    assert "0 availability faults" not in old.report_line() and "(not paged): 0 availability;" in old.report_line()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(["prb_util_pct", "throughput_mbps", "unavailable_s", "loss_pct"]),
            st.integers(0, 12),
            st.integers(0, 8),
            st.sampled_from([20.0, 39.9, 40.0, 75.0]),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_a_corroborated_only_fault_never_pages_alone(eps):
    """Random episodes (element, metric, start and length in 5-min points, value): a paged
    availability or load fault either had another family's fault open on its element when it paged
    (a plain reference keeps the open episodes) or is a utilisation fault at 40 % or more that
    stayed open past the persistence time."""
    P = 5 * MIN
    fam = {"prb_util_pct": "load", "throughput_mbps": "load", "unavailable_s": "availability", "loss_pct": "quality"}
    events, seen = [], set()
    for e, m, s, n, v in eps:
        if (e, m, s) in seen:
            continue
        seen.add((e, m, s))
        start, end = T0 + s * P, T0 + (s + n) * P
        events.append((start, ep(e, m, start, value=v)))
        events.append((end + 3 * P, ep(e, m, start, end=end, value=v)))
    events.sort(key=lambda x: x[0])
    pol = PagingPolicy()
    open_eps: dict = {}
    for t, r in events:
        k = (int(r["element_id"][0]), str(r["metric"][0]), int(r["start_ms"][0]))
        if r["end_ms"][0] < 0:
            open_eps[k] = float(r["value"][0])
        for a in pol.page(r, None, t, data_ms=t):
            ak = (int(a.labels["element"]), a.labels["metric"], a.starts_at_ms)
            if a.state != "firing" or fam[ak[1]] == "quality":
                continue
            others = any(o[0] == ak[0] and fam[o[1]] != fam[ak[1]] for o in open_eps if o != ak)
            level_ok = ak[1] == "prb_util_pct" and open_eps[ak] >= 40.0 and t - ak[2] > pol.persist_ms
            level_ok |= ak[1] == "prb_util_pct" and open_eps[ak] >= 60.0  # filling up: at once
            assert others or level_ok
        if r["end_ms"][0] >= 0:
            open_eps.pop(k, None)


def test_a_held_utilisation_fault_pages_once_its_episode_peak_reaches_the_page_level():
    """A congestion on a quiet cell (15 %): its utilisation fault opens early in the ramp at 28.6 %
    and climbs. Judged on the opening row it waits for the cell's quality faults; with the episode's
    peak value from the detector it pages once the peak reached 40 % and it persisted. A lone fault
    whose peak stays at 32 % is never paged alone."""
    clock = {"peak": 28.6}
    peak = lambda s: np.full(len(s), clock["peak"])  # noqa: E731 - the detector's value at the episode's peak
    ramp = ep(7, "prb_util_pct", T0, value=28.6, baseline=14.9)
    pol = PagingPolicy()
    assert pol.page(ramp, None, T0, data_ms=T0 + 20 * MIN, peak_value=peak) == []  # persisted, peak 28.6
    clock["peak"] = 39.9
    assert pol.page(ramp[:0], None, T0, data_ms=T0 + 25 * MIN, peak_value=peak) == []
    clock["peak"] = 46.0
    assert names(pol.page(ramp[:0], None, T0, data_ms=T0 + 30 * MIN, peak_value=peak)) == [
        ("anomaly_prb_util_pct", "7", "firing")
    ]
    assert pol.counts["paged_persisted"] == 1
    # a peak that is no number (a slot without an open episode) leaves the row's own value
    nan = lambda s: np.full(len(s), np.nan)  # noqa: E731
    high = ep(8, "prb_util_pct", T0, value=55.0)
    assert len(PagingPolicy().page(high, None, T0, data_ms=T0 + 20 * MIN, peak_value=nan)) == 1
    lone = PagingPolicy()
    clock["peak"] = 32.0
    assert lone.page(ep(9, "prb_util_pct", T0, value=22.0), None, T0, data_ms=T0 + 60 * MIN, peak_value=peak) == []
    assert len(lone._held) == 1


# ---- strong faults page at their first point -------------------------------------------------------
def test_a_fault_scoring_well_above_its_threshold_pages_at_its_first_point():
    from telcoanalytics.anomaly.policy import STRONG_RATIO

    pol = PagingPolicy()
    edge = STRONG_RATIO * 4.5  # the helper's threshold
    out = pol.page(ep(7, "loss_pct", T0, score=edge), None, T0, data_ms=T0)
    assert names(out) == [("anomaly_loss_pct", "7", "firing")] and pol.counts["paged_strong"] == 1
    assert pol.page(ep(8, "loss_pct", T0, score=edge * 0.999), None, T0, data_ms=T0) == []  # held: persistence
    assert "1 at once" in pol.report_line()
    # corroborated-only families still wait: a lone unavailability fault, a utilisation fault below the page level
    assert pol.page(ep(9, "unavailable_s", T0, score=30.0), None, T0, data_ms=T0) == []
    assert pol.page(ep(10, "prb_util_pct", T0, score=30.0, value=30.0), None, T0, data_ms=T0) == []
    busy = pol.page(ep(11, "prb_util_pct", T0, score=30.0, value=95.0), None, T0, data_ms=T0)
    assert names(busy) == [("anomaly_prb_util_pct", "11", "firing")]
    no_thr = ep(12, "loss_pct", T0, score=30.0)
    no_thr["threshold"] = 0.0  # no threshold to compare with: persistence
    assert pol.page(no_thr, None, T0, data_ms=T0) == []
    assert PagingPolicy(strong_ratio=np.inf).page(ep(7, "loss_pct", T0, score=1e9), None, T0, data_ms=T0) == []
    with pytest.raises(ValueError, match="strong_ratio"):
        PagingPolicy(strong_ratio=0)
    s = PagingPolicy(strong_ratio=2.0).to_state()
    assert PagingPolicy.from_state(s).strong_ratio == 2.0
    del s["settings"]["strong_ratio"]  # a checkpoint written before the setting
    assert PagingPolicy.from_state(s).strong_ratio == STRONG_RATIO


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["loss_pct", "latency_ms", "error_count", "unavailable_s", "prb_util_pct", "throughput_mbps"]),
    st.floats(0.0, 20.0),
    st.floats(0.0, 8.0),
    st.one_of(st.floats(0.0, 100.0), st.sampled_from([39.9, 40.0, 59.9, 60.0])),
)
def test_what_pages_at_the_first_point_equals_a_plain_reference(metric, score, threshold, value):
    """Plain reference: at its first point (no second alarm, not persisted, nothing else open on the
    element) a fault pages iff it needs no corroboration (availability and load families;
    utilisation from 40 % is exempt) and its score is at least 1.33x a positive threshold or it is
    a utilisation fault at 60 % or more."""
    r = ep(7, metric, T0, score=score, value=value)
    r["threshold"] = threshold
    family = {"unavailable_s": "availability", "prb_util_pct": "load", "throughput_mbps": "load"}.get(metric)
    alone_ok = family is None or (metric == "prb_util_pct" and value >= 40.0)
    strong = (threshold > 0 and score >= 1.33 * threshold) or (metric == "prb_util_pct" and value >= 60.0)
    want = strong and alone_ok
    got = PagingPolicy().page(r, None, T0, data_ms=T0)
    assert bool(got) == want


def test_for_interval_pages_strong_faults_at_once_only_for_intervals_of_five_minutes_or_more():
    strong = ep(7, "loss_pct", T0, score=20.0)
    assert PagingPolicy.for_interval(10).page(strong, None, T0, data_ms=T0) == []  # held: 30 s persistence
    assert len(PagingPolicy.for_interval(300).page(strong, None, T0, data_ms=T0)) == 1
    assert len(PagingPolicy.for_interval(10, strong_ratio=2.0).page(strong, None, T0, data_ms=T0)) == 1
