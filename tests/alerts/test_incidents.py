"""Incidents: correlation rules, notification policy, JSONL records, checkpoint, and an
interval-merging reference for the site-level correlation."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telcoanalytics.alerts import Alert, AlertManager, Incident, IncidentBook
from telcoanalytics.alerts.incidents import severity_rank
from telcoanalytics.alerts.sinks import CallbackSink

LEVELS = ("region", "site", "element")
MIN = 60_000
T0 = 1_790_000_000_000


def el(e, site, region="1", name="anomaly_latency_ms", sev="critical", start=T0, end=-1, **extra):
    labels = {"alertname": name, "region": region, "site": site, "element": e, "scope": "element", "severity": sev}
    labels.update(extra)
    return Alert(
        labels,
        {"summary": f"{name} on {e}"},
        starts_at_ms=start,
        ends_at_ms=end,
        state="resolved" if end >= 0 else "firing",
    )


def site_alert(site, region="1", name="site_call_setup_success", sev="critical", start=T0, end=-1):
    labels = {"alertname": name, "region": region, "site": site, "scope": "site", "severity": sev, "source": "sla"}
    return Alert(
        labels, {"summary": name}, starts_at_ms=start, ends_at_ms=end, state="resolved" if end >= 0 else "firing"
    )


def region_alert(region, start=T0, end=-1):
    labels = {
        "alertname": "collection_gap",
        "region": region,
        "classification": "collection_gap",
        "severity": "warning",
    }
    return Alert(
        labels, {"summary": "gap"}, starts_at_ms=start, ends_at_ms=end, state="resolved" if end >= 0 else "firing"
    )


def test_same_element_and_same_site_join_one_incident_rooted_at_the_common_ancestor():
    book = IncidentBook(LEVELS)
    i1 = book.assign(el("100", "10"), T0)
    assert (i1.root_level, i1.root_path) == ("element", ("1", "10", "100"))
    sla = el("100", "10", name="element_packet_loss", sev="major", source="sla")
    assert book.assign(sla, T0 + MIN) is i1 and i1.root_level == "element"
    assert book.assign(el("101", "10"), T0 + 2 * MIN) is i1
    assert (i1.root_level, i1.root_path) == ("site", ("1", "10"))
    assert book.assign(site_alert("10"), T0 + 3 * MIN) is i1 and len(i1.members) == 4
    other = book.assign(el("200", "20"), T0 + 3 * MIN)
    assert other is not i1 and len(book.live) == 2


def test_region_incident_collects_element_alerts_only_while_it_fires():
    book = IncidentBook(LEVELS)
    gap = region_alert("1")
    r = book.assign(gap, T0)
    assert r.root_level == "region"
    s1 = el("100", "10", name="anomaly_silence", sev="major")
    assert book.assign(s1, T0 + MIN) is r and r.root_level == "region"
    # another region is not below it
    assert book.assign(el("900", "90", region="2"), T0 + MIN) is not r
    # a site with its own live incident keeps it: the region does not absorb it
    gap.state, gap.ends_at_ms = "resolved", T0 + 10 * MIN
    s1.state, s1.ends_at_ms = "resolved", T0 + 10 * MIN
    later = book.assign(el("101", "11"), T0 + 11 * MIN)
    assert later is not r and later.root_level == "element"


def test_hold_window_keeps_a_flapping_element_in_one_incident():
    book = IncidentBook(LEVELS, hold_ms=30 * MIN)
    a = el("100", "10")
    i1 = book.assign(a, T0)
    a.state, a.ends_at_ms = "resolved", T0 + 5 * MIN
    b = el("100", "10", name="anomaly_loss_pct", start=T0 + 30 * MIN)
    assert book.assign(b, T0 + 30 * MIN) is i1  # 25 min after the end: still held
    b.state, b.ends_at_ms = "resolved", T0 + 40 * MIN
    c = el("100", "10", name="anomaly_prb_util_pct", start=T0 + 71 * MIN)
    i2 = book.assign(c, T0 + 71 * MIN)  # 31 min after: a new incident, the old one closed
    assert i2 is not i1 and i1.closed and [x.id for x in book.closed] == [i1.id]


def test_scopes_outside_the_topology_correlate_only_with_themselves():
    book = IncidentBook(LEVELS)
    net = Alert({"alertname": "x", "scope": "network", "network": "0"})
    lonely = Alert({"alertname": "y", "element": "5", "scope": "element"})  # unknown ancestors
    assert book.scope_of(net) == ("network", ("network:0",))
    assert book.scope_of(lonely) == ("element", ("element:5",))
    i1, i2 = book.assign(net, T0), book.assign(lonely, T0)
    assert i1 is not i2
    assert book.assign(Alert({"alertname": "z", "element": "5", "scope": "element"}), T0) is i2


def test_book_rejects_bad_arguments():
    with pytest.raises(ValueError, match="levels"):
        IncidentBook(())
    with pytest.raises(ValueError, match="correlation_level"):
        IncidentBook(LEVELS, correlation_level="cell")
    with pytest.raises(ValueError, match="hold_ms"):
        IncidentBook(LEVELS, hold_ms=-1)
    with pytest.raises(ValueError, match="levels"):
        AlertManager(None, incidents=IncidentBook(("a", "b")))


def test_severity_and_summary():
    inc = Incident("I00001", "site", ("1", "10"))
    inc.members = {a.fingerprint: a for a in (el("100", "10", sev="warning"), site_alert("10", sev="major"))}
    assert inc.severity == "major"
    text = inc.summary(LEVELS)
    assert text.startswith("[major] site 10 (region 1): site_call_setup_success") and "+1 related" in text
    assert severity_rank("page") == 0 and severity_rank("?") > severity_rank("info")


def _manager(tmp_path, sent, **kw):
    book = IncidentBook(LEVELS, path=tmp_path / "incidents.jsonl", hold_ms=kw.pop("hold_ms", 30 * MIN))
    return AlertManager(None, sinks=[CallbackSink(sent.append)], incidents=book, group_wait_ms=30_000, **kw)


def test_one_incident_is_one_group_notified_on_open_escalation_and_resolution(tmp_path):
    sent = []
    mgr = _manager(tmp_path, sent)
    members = [
        el("100", "10", name="anomaly_prb_util_pct", sev="minor"),
        el("100", "10", name="anomaly_latency_ms", sev="minor", start=T0 + 5 * MIN),
        el("100", "10", name="cell_blocking", sev="minor", source="sla", start=T0 + 12 * MIN),
        site_alert("10", sev="major", start=T0 + 20 * MIN),
        el("101", "10", name="cell_call_drop", sev="minor", source="sla", start=T0 + 25 * MIN),
    ]
    t = T0
    for a in members:  # one alert every few minutes, ticks every minute
        while t < a.starts_at_ms:
            mgr.tick(t)
            t += MIN
        mgr.ingest([a], t)
    for a in members:
        end = Alert(dict(a.labels), dict(a.annotations), a.starts_at_ms, T0 + 60 * MIN, "resolved")
        mgr.ingest([end], T0 + 60 * MIN)
    for t2 in range(t, T0 + 120 * MIN, MIN):
        mgr.tick(t2)
    mgr.close(T0 + 120 * MIN)
    notes = list(sent)
    assert [n.status for n in notes] == ["firing", "firing", "resolved"]  # open, escalation to major
    assert {n.group_key for n in notes} == {'{incident="I00001"}'}
    assert notes[0].group_labels == {"incident": "I00001", "region": "1", "site": "10", "element": "100"}
    assert notes[-1].group_labels["site"] == "10" and "element" not in notes[-1].group_labels
    assert len(notes[-1].alerts) == 5 and all(a.labels["incident"] == "I00001" for a in notes[-1].alerts)
    assert all(a.fingerprint in {m.fingerprint for m in members} for a in notes[-1].alerts)  # id not in identity
    recs = [json.loads(x) for x in (tmp_path / "incidents.jsonl").read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["status"] == "resolved" and recs[0]["n_members"] == 5
    assert recs[0]["notifications"] == 3 and recs[0]["start_ms"] == T0 and recs[0]["end_ms"] == T0 + 60 * MIN
    assert recs[0]["root"] == {"level": "site", "incident": "I00001", "region": "1", "site": "10"}
    assert mgr.stats["incident_open"] == 1 and mgr.stats["incident_escalate"] == 1
    assert any(line.startswith("incidents: 1 (1 notified") for line in mgr.summary_lines(T0))


def test_repeat_silence_and_resolved_before_notification(tmp_path):
    sent = []
    mgr = _manager(tmp_path, sent, repeat_interval_ms=60 * MIN)
    mgr.add_silence({"matchers": ["site=20"], "starts_at_ms": T0, "ends_at_ms": T0 + 10**9})
    mgr.ingest([el("100", "10"), el("200", "20")], T0)
    quick = el("300", "30")
    mgr.ingest([quick], T0)
    mgr.ingest([Alert(dict(quick.labels), {}, T0, T0 + 10_000, "resolved")], T0 + 10_000)
    for t in range(T0, T0 + 130 * MIN, MIN):
        mgr.tick(t)
    notes = list(sent)
    assert [n.group_labels.get("site") for n in notes] == ["10", "10", "10"]  # open, 2 repeats; 20 silenced
    assert mgr.stats["incident_repeat"] == 2 and mgr.stats["muted_silenced"] > 0
    mgr.close(T0 + 130 * MIN)
    recs = {r["root"]["site"]: r for r in map(json.loads, (tmp_path / "incidents.jsonl").read_text().splitlines())}
    assert recs["30"]["notifications"] == 0 and recs["30"]["status"] == "resolved"
    assert recs["10"]["status"] == "firing" and recs["20"]["notifications"] == 0


def test_checkpoint_round_trip_continues_like_the_uninterrupted_run(tmp_path):
    def run(split):
        sent = []
        mgr = _manager(tmp_path / str(split), sent)
        stream = [(T0 + k * 7 * MIN, el(str(100 + k % 3), str(10 + k % 2), name=f"a{k}")) for k in range(8)]
        for i, (t, a) in enumerate(stream):
            if split and i == 4:
                mgr = AlertManager.from_state(mgr.to_state(), None, sinks=[CallbackSink(sent.append)])
            mgr.ingest([a], t)
            mgr.tick(t + 60_000)
        return [(n.group_key, len(n.alerts), n.status) for n in sent], [
            (i.id, i.root_path, sorted(i.members)) for i in mgr.incidents.all()
        ]

    assert run(False) == run(True)


def _reference_site_incidents(spans, hold_ms):
    """Per site, merge the member intervals [start, end + hold]: one incident per merged run."""
    by_site = {}
    for k, (site, start, end) in enumerate(spans):
        by_site.setdefault(site, []).append((start, end, k))
    groups = []
    for items in by_site.values():
        items.sort()
        cur, reach = [], None
        for start, end, k in items:
            if cur and start <= reach:
                cur.append(k)
                reach = max(reach, end + hold_ms)
            else:
                if cur:
                    groups.append(sorted(cur))
                cur, reach = [k], end + hold_ms
        groups.append(sorted(cur))
    return sorted(groups)


@settings(deadline=None, max_examples=60)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 200), st.integers(1, 60)),
        min_size=1,
        max_size=25,
    ),
    st.integers(0, 40),
)
def test_site_correlation_equals_interval_merging(raw, hold_min):
    """Alerts on elements of a few sites, each firing [start, start + length) minutes: the
    book's incidents equal per-site merging of [start, end + hold] (an independent reference)."""
    spans = [(str(site), T0 + s * MIN, T0 + (s + n) * MIN) for site, _, s, n in raw]
    alerts = [el(f"{site}{e}", str(site), name=f"a{k}", start=T0 + s * MIN) for k, (site, e, s, _) in enumerate(raw)]
    events = [(start, 1, k) for k, (_, start, _) in enumerate(spans)] + [
        (end, 0, k) for k, (_, _, end) in enumerate(spans)
    ]
    book = IncidentBook(LEVELS, hold_ms=hold_min * MIN)
    of = {}
    for t, kind, k in sorted(events):  # resolutions before starts at equal times
        if kind == 1:
            of[k] = book.assign(alerts[k], t).id
        else:
            alerts[k].state, alerts[k].ends_at_ms = "resolved", t
    got = {}
    for k, iid in of.items():
        got.setdefault(iid, []).append(k)
    assert sorted(sorted(v) for v in got.values()) == _reference_site_incidents(spans, hold_min * MIN)


def _anomaly(e, site, name="anomaly_loss_pct", start=T0):
    return el(e, site, name=name, start=start, source="anomaly", classification="fault")


def _resolve(a, t):
    return Alert(dict(a.labels), dict(a.annotations), a.starts_at_ms, t, "resolved")


def test_confirmation_gate_and_resolution_after_the_hold(tmp_path):
    """A lone anomaly episode shorter than confirm_ms pages nobody; one that lasts is notified once
    confirm_ms passed; an SLA breach confirms at once; a flapping element sends one opening and one
    resolution (after the hold), not a pair per flap."""
    sent = []
    book = IncidentBook(LEVELS, path=tmp_path / "inc.jsonl", hold_ms=20 * MIN, confirm_ms=10 * MIN)
    mgr = AlertManager(None, sinks=[CallbackSink(sent.append)], incidents=book, group_wait_ms=30_000)
    blip, lasting, with_sla = _anomaly("100", "10"), _anomaly("200", "20"), _anomaly("300", "30")
    sla = el("300", "30", name="element_packet_loss", sev="major", source="sla", start=T0 + MIN)
    flap = _anomaly("400", "40")
    mgr.ingest([blip, lasting, with_sla, flap], T0)
    timeline = {
        T0 + MIN: [sla],
        T0 + 5 * MIN: [_resolve(blip, T0 + 5 * MIN)],
        T0 + 20 * MIN: [_resolve(flap, T0 + 20 * MIN)],
        T0 + 30 * MIN: [_anomaly("400", "40", name="anomaly_latency_ms", start=T0 + 30 * MIN)],
    }
    first = {}
    for t in range(T0, T0 + 60 * MIN, 30_000):
        if t in timeline:
            mgr.ingest(timeline[t], t)
        for n in mgr.tick(t):
            first.setdefault((n.group_labels["site"], n.status), t)
    assert ("10", "firing") not in first  # the blip: unconfirmed, never notified
    assert first[("30", "firing")] - T0 <= 2 * MIN  # confirmed by the SLA breach
    assert 10 * MIN <= first[("20", "firing")] - T0 <= 16 * MIN  # confirmed by lasting
    assert first[("40", "firing")] - T0 >= 10 * MIN
    mgr.ingest([_resolve(a, T0 + 60 * MIN) for a in mgr.active_alerts], T0 + 60 * MIN)
    for t in range(T0 + 60 * MIN, T0 + 100 * MIN, MIN):
        mgr.tick(t)
    mgr.close(T0 + 100 * MIN)
    by_site = {}
    for n in sent:
        by_site.setdefault(n.group_labels["site"], []).append(n.status)
    assert by_site == {"20": ["firing", "resolved"], "30": ["firing", "resolved"], "40": ["firing", "resolved"]}
    recs = {r["root"]["site"]: r for r in map(json.loads, (tmp_path / "inc.jsonl").read_text().splitlines())}
    assert recs["10"]["notifications"] == 0 and recs["10"]["confirmed_ms"] == -1
    assert recs["40"]["n_members"] == 2  # the flap stayed one incident
    assert book.confirm_ms == 10 * MIN and mgr.stats["incident_resolve"] == 3


def test_confirm_ms_zero_notifies_every_incident_and_bad_confirm_is_rejected(tmp_path):
    sent = []
    book = IncidentBook(LEVELS, confirm_ms=0)
    mgr = AlertManager(None, sinks=[CallbackSink(sent.append)], incidents=book, group_wait_ms=0)
    blip = _anomaly("100", "10")
    mgr.ingest([blip], T0)
    assert [n.status for n in mgr.tick(T0)] == ["firing"]
    with pytest.raises(ValueError, match="confirm_ms"):
        IncidentBook(LEVELS, confirm_ms=-1)


def test_region_incident_stops_collecting_when_its_own_alert_resolved():
    """Members below the region that still fire do not keep the region-wide cause alive."""
    book = IncidentBook(LEVELS)
    gap = region_alert("1")
    r = book.assign(gap, T0)
    stuck = el("100", "10", name="degradation_latency_ms", sev="major")
    assert book.assign(stuck, T0 + MIN) is r
    gap.state, gap.ends_at_ms = "resolved", T0 + 30 * MIN
    later = book.assign(el("200", "20"), T0 + 60 * MIN)
    assert later is not r and r.firing  # r lives on (its member fires) but collects no more
    assert book.assign(el("101", "10"), T0 + 61 * MIN) is not r  # a new alert starts afresh, even on its site


def test_a_new_element_joining_a_notified_incident_pages_again_a_region_wide_one_does_not(tmp_path):
    """A real event joining an already-notified incident on its site (here: a blip on element 100
    paged, then element 101 fails) gets its own page ("spread"), without a severity rise."""
    sent = []
    mgr = _manager(tmp_path, sent)
    blip = el("100", "10", name="anomaly_loss_pct", sev="critical")
    mgr.ingest([blip], T0)
    for t in range(T0, T0 + 10 * MIN, MIN):
        mgr.tick(t)
    mgr.ingest([el("100", "10", name="anomaly_loss_pct", sev="critical", end=T0 + 5 * MIN)], T0 + 10 * MIN)
    for t in range(T0 + 10 * MIN, T0 + 20 * MIN, MIN):
        mgr.tick(t)
    assert len(sent) == 1
    real = el("101", "10", name="anomaly_error_count", sev="critical", start=T0 + 20 * MIN)
    mgr.ingest([real], T0 + 20 * MIN)  # inside the 30-min hold: joins the same incident
    for t in range(T0 + 20 * MIN, T0 + 40 * MIN, MIN):
        mgr.tick(t)
    inc = mgr.incidents.all()[0]
    assert len(mgr.incidents.all()) == 1 and set(inc.members) == {blip.fingerprint, real.fingerprint}
    assert [n.status for n in sent] == ["firing", "firing"] and mgr.stats["incident_spread"] == 1
    assert inc.spreads == 1 and inc.escalations == 0 and len(inc.pages_ms) == 2
    assert inc.pages_ms[1] >= T0 + 20 * MIN and inc.notified_elements == {"100", "101"}
    assert "101" in {a.labels["element"] for a in sent[1].alerts}
    # the same element again (flapping) is no new page
    mgr.ingest([el("101", "10", name="anomaly_loss_pct", sev="critical", start=T0 + 41 * MIN)], T0 + 41 * MIN)
    for t in range(T0 + 41 * MIN, T0 + 60 * MIN, MIN):
        mgr.tick(t)
    assert len(sent) == 2
    # a collection gap collects the silences of its region's elements without paging for each
    sent2 = []
    mgr2 = _manager(tmp_path / "b", sent2)
    mgr2.ingest([region_alert("1"), el("100", "10", name="anomaly", sev="major", classification="silence")], T0)
    for t in range(T0, T0 + 10 * MIN, MIN):
        mgr2.tick(t)
    mgr2.ingest([el("200", "20", name="anomaly", sev="major", classification="silence")], T0 + 10 * MIN)
    for t in range(T0 + 10 * MIN, T0 + 30 * MIN, MIN):
        mgr2.tick(t)
    assert len(sent2) == 1 and mgr2.stats["incident_spread"] == 0


def test_spread_state_survives_a_checkpoint():
    book = IncidentBook(LEVELS)
    inc = book.assign(el("100", "10"), T0)
    inc.notified_elements, inc.pages_ms, inc.spreads = {"100"}, [T0], 1
    back = IncidentBook.from_state(json.loads(json.dumps(book.to_state())))
    got = back.live[0]
    assert (got.notified_elements, got.pages_ms, got.spreads) == ({"100"}, [T0], 1)
    old = book.to_state()
    for s in old["live"]:  # a checkpoint written before these fields existed still loads
        del s["notified_elements"], s["pages_ms"], s["spreads"]
    assert IncidentBook.from_state(old).live[0].notified_elements == set()
