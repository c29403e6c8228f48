"""Alert model, SLA/anomaly converters and the AlertManager (dedup, grouping, inhibition,
silences, repeat, resolved, checkpoint) with exact expected timelines."""

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from telcoanalytics.alerts.manager import (
    ANOMALY_SEVERITY,
    DEFAULT_INHIBIT_RULES,
    Alert,
    AlertManager,
    InhibitRule,
    Matcher,
    Notification,
    Silence,
    alerts_from_anomalies,
    alerts_from_sla_events,
    fingerprint_of,
    rfc3339_ms,
)
from telcoanalytics.alerts.rules import node_sizes
from telcoanalytics.alerts.sinks import CallbackSink
from telcoanalytics.topology.model import Topology

MIN = 60_000
T0 = 1_790_000_000_000  # some event time in 2026


# ---- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def topo():
    """2 regions (1, 2); site 100 (40 cells 1000..1039) and 101 (cells 1100..1104) in region 1,
    site 200 (cells 2000..2004) in region 2."""
    eids, sites, regions = [], [], []
    for site, region, first, n in ((100, 1, 1000, 40), (101, 1, 1100, 5), (200, 2, 2000, 5)):
        eids += list(range(first, first + n))
        sites += [site] * n
        regions += [region] * n
    return Topology.from_columns(np.array(eids), {"region": np.array(regions), "site": np.array(sites)})


@dataclass
class Ev:
    """Stands in for telcoanalytics.sla.sla.SlaEvent (same fields, see the helpers' brief)."""

    rule: str = "css_cell"
    kpi: str = "call_setup_success_rate"
    severity: str = "major"
    state: str = "firing"
    scope_level: str = "element"
    scope_id: int = 1000
    service: str = "voice"
    t_ms: int = T0
    start_ms: int = T0 - 5 * MIN
    end_ms: int = -1
    value: float = 0.912
    threshold: float = 0.95
    worst_value: float = 0.9
    summary: str = "CSSR below 95%"


ANOMALY_DTYPE = np.dtype(
    [
        ("slot", "i8"),
        ("element_id", "i8"),
        ("metric", "U24"),
        ("start_ms", "i8"),
        ("end_ms", "i8"),
        ("peak_score", "f8"),
        ("direction", "i1"),
        ("classification", "U16"),
        ("baseline", "f8"),
        ("threshold", "f8"),
        ("value", "f8"),
    ]
)


def anomalies(*rows):
    """rows of (element_id, metric, classification, start_ms, end_ms)."""
    out = np.zeros(len(rows), dtype=ANOMALY_DTYPE)
    for i, (eid, metric, cls, start, end) in enumerate(rows):
        out[i] = (i, eid, metric, start, end, 7.5, -1, cls, 100.0, 40.0, 3.0)
    return out


class Recorder:
    """A sink collecting notifications synchronously."""

    def __init__(self):
        self.notes: list[Notification] = []
        self.closed = False

    def submit(self, notes):
        self.notes.extend(notes)

    def flush(self, timeout_s=None):
        return True

    def close(self):
        self.closed = True


def cell_alert(eid, name="anomaly_prb_util_pct", cls="crowd", start=T0, **kw):
    site = 100 if 1000 <= eid < 1040 else 101 if 1100 <= eid < 1105 else 200
    region = 2 if site == 200 else 1
    labels = {
        "alertname": name,
        "source": "anomaly",
        "scope": "element",
        "element": str(eid),
        "site": str(site),
        "region": str(region),
        "classification": cls,
        "severity": "warning",
    }
    return Alert(labels, {"summary": f"{cls} on {eid}"}, starts_at_ms=start, **kw)


def mgr_for(topo, **kw):
    rec = Recorder()
    kw.setdefault("group_wait_ms", 30_000)
    kw.setdefault("group_interval_ms", 5 * MIN)
    kw.setdefault("repeat_interval_ms", 60 * MIN)
    return AlertManager(topo, [rec], **kw), rec


# ---- model ----------------------------------------------------------------------------------
def test_rfc3339_and_fingerprint():
    assert rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339_ms(-1) == "1969-12-31T23:59:59.999Z"
    import hashlib

    # name 0xff value 0xff over sorted pairs, UTF-8 (0xff never occurs in UTF-8)
    raw = b"alertname\xffx\xffsite\xff" + "\u00ff".encode() + b"\xff"
    assert fingerprint_of({"site": "\u00ff", "alertname": "x"}) == hashlib.blake2b(raw, digest_size=8).hexdigest()
    assert rfc3339_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    a = {"alertname": "x", "element": "1", "site": "2"}
    assert fingerprint_of(a) == fingerprint_of(dict(reversed(list(a.items()))))
    assert fingerprint_of(a) == fingerprint_of({**a, "severity": "page", "classification": "f", "kpi": ""})
    assert fingerprint_of(a) != fingerprint_of({**a, "element": "3"})
    # separator: ("ab","c") and ("a","bc") must not collide
    assert fingerprint_of({"alertname": "ab", "c": "d"}) != fingerprint_of({"alertname": "a", "bc": "d"})
    assert len(fingerprint_of(a)) == 16


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), st.text(min_size=1, max_size=5), min_size=1, max_size=6
    ),
    st.randoms(),
)
def test_fingerprint_independent_of_label_order(labels, random):
    items = list(labels.items())
    random.shuffle(items)
    assert fingerprint_of(dict(items)) == fingerprint_of(labels)


def test_alert_validation_errors():
    with pytest.raises(ValueError, match="alertname"):
        Alert({"site": "1"})
    with pytest.raises(ValueError, match="label name"):
        Alert({"alertname": "x", "bad-name": "1"})
    with pytest.raises(ValueError, match="must be str"):
        Alert({"alertname": "x", "site": 1})
    with pytest.raises(ValueError, match="state"):
        Alert({"alertname": "x"}, state="pending")
    with pytest.raises(ValueError, match="ends_at_ms"):
        Alert({"alertname": "x"}, state="resolved")
    a = Alert({"alertname": "x", "kpi": ""}, starts_at_ms=5)
    assert a.labels == {"alertname": "x"} and a.updated_ms == 5 and a.severity == "" and a.ends_at_ms == -1
    r = Alert({"alertname": "x"}, starts_at_ms=5, ends_at_ms=9, state="resolved")
    assert r.updated_ms == 9 and Alert.from_dict(r.to_dict()) == r


def test_alert_to_v2():
    a = Alert({"alertname": "x", "site": "7"}, {"summary": "s"}, starts_at_ms=0, generator_url="http://g")
    assert a.to_v2() == {
        "labels": {"alertname": "x", "site": "7"},
        "annotations": {"summary": "s"},
        "startsAt": "1970-01-01T00:00:00.000Z",
        "generatorURL": "http://g",
    }
    assert a.to_v2(valid_until_ms=1000)["endsAt"] == "1970-01-01T00:00:01.000Z"
    r = Alert({"alertname": "x"}, starts_at_ms=0, ends_at_ms=2000, state="resolved")
    assert r.to_v2(valid_until_ms=99_999)["endsAt"] == "1970-01-01T00:00:02.000Z"


def test_matchers():
    m = Matcher.parse("severity=~critical|major")
    assert m.matches({"severity": "major"}) and not m.matches({"severity": "majorx"})
    assert Matcher.parse('site="7"') == Matcher("site", "=", "7")
    assert Matcher.parse(("site", "!=", "7")).matches({})
    assert Matcher.parse("site!~7|8").matches({"site": "9"}) and not Matcher.parse("site!~7|8").matches({"site": "8"})
    assert Matcher.parse(m) is m and str(m) == "severity=~critical|major"
    with pytest.raises(ValueError, match="cannot parse"):
        Matcher.parse("site")
    with pytest.raises(ValueError, match="cannot parse"):
        Matcher.parse(42)
    with pytest.raises(ValueError, match="op"):
        Matcher("site", "==", "1")
    with pytest.raises(ValueError, match="label name"):
        Matcher("1site", "=", "1")
    with pytest.raises(ValueError, match="regular expression"):
        Matcher("site", "=~", "(")


def test_silence_and_rule_validation():
    with pytest.raises(ValueError, match="at least one matcher"):
        Silence((), 0, 10)
    with pytest.raises(ValueError, match="after starts_at_ms"):
        Silence(("site=1",), 10, 10)
    with pytest.raises(ValueError, match="Silence matchers"):
        Silence(("site",), 0, 10)
    s = Silence("site=1", 0, 10, created_by="noc", comment="maintenance")
    assert s.active(0) and not s.active(10) and Silence.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="relation"):
        InhibitRule(("a=1",), relation="siblings")
    with pytest.raises(ValueError, match="needs source_matchers"):
        InhibitRule((), ("a=1",))
    with pytest.raises(ValueError, match="unknown keys"):
        InhibitRule.from_dict({"source_matchers": ["a=1"], "targets": []})
    with pytest.raises(ValueError, match="must be a dict"):
        InhibitRule.from_dict(["a=1"])
    r = InhibitRule.from_dict({"name": "n", "source_matchers": ["a=1"], "equal": "site"})
    assert r.equal == ("site",) and InhibitRule.from_dict(r.to_dict()) == r
    for rule in DEFAULT_INHIBIT_RULES:
        assert InhibitRule.from_dict(rule.to_dict()) == rule


# ---- converters -----------------------------------------------------------------------------
def test_sla_events_to_alerts(topo):
    evs = [
        Ev(),
        Ev(scope_level="site", scope_id=100, rule="css_site", service=""),
        Ev(scope_level="region", scope_id=2, rule="css_region"),
        Ev(state="pending"),
        Ev(state="resolved", t_ms=T0 + 20 * MIN, end_ms=-1, value=0.97),
        Ev(scope_level="network", scope_id=0, rule="css_net"),
        Ev(scope_id=999_999, rule="css_ghost"),
    ]
    out = alerts_from_sla_events(evs, topo, generator_url="http://sla")
    assert len(out) == 6  # pending is not an alert
    cell, site, region, res, net, ghost = out
    assert cell.labels == {
        "alertname": "css_cell",
        "source": "sla",
        "rule": "css_cell",
        "kpi": "call_setup_success_rate",
        "service": "voice",
        "severity": "major",
        "classification": "sla",
        "scope": "element",
        "element": "1000",
        "site": "100",
        "region": "1",
    }
    assert cell.annotations["summary"] == (
        "css_cell: call_setup_success_rate 0.912 breaches 0.95 on element 1000 (voice), breached for 5 min "
        "(since " + rfc3339_ms(T0 - 5 * MIN)[11:16] + " UTC)"
    )
    assert cell.annotations["breached_for"] == "5 min" and cell.annotations["kpi"] == "call_setup_success_rate"
    assert "CSSR below 95%" in cell.annotations["description"] and "worst" in cell.annotations["description"]
    assert (cell.state, cell.starts_at_ms, cell.ends_at_ms, cell.updated_ms) == ("firing", T0 - 5 * MIN, -1, T0)
    assert site.labels["site"] == "100" and site.labels["region"] == "1" and "element" not in site.labels
    assert "service" not in site.labels
    assert region.labels["region"] == "2" and region.labels["scope"] == "region" and "site" not in region.labels
    assert res.state == "resolved" and res.ends_at_ms == T0 + 20 * MIN  # end_ms -1 -> t_ms
    assert res.fingerprint == cell.fingerprint
    assert "back within 0.95" in res.annotations["summary"] and res.annotations["breached_for"] == "25 min"
    assert net.labels["network"] == "0" and "topology" in net.annotations
    assert ghost.labels["element"] == "999999" and "region" not in ghost.labels
    assert "not in the topology" in ghost.annotations["topology"]
    assert all(a.generator_url == "http://sla" for a in out)
    # dict events work too, with an explicit end
    d = dict(vars(Ev(state="resolved", end_ms=T0 + MIN)))
    assert alerts_from_sla_events([d], topo)[0].ends_at_ms == T0 + MIN
    # no topology: only the scope label
    assert alerts_from_sla_events([Ev()], None)[0].labels["element"] == "1000"


def test_sla_event_errors(topo):
    with pytest.raises(ValueError, match="state 'open'"):
        alerts_from_sla_events([Ev(state="open")], topo)
    with pytest.raises(ValueError, match="severity 'urgent'"):
        alerts_from_sla_events([Ev(severity="urgent")], topo)
    with pytest.raises(ValueError, match="is pending"):
        alerts_from_sla_events([Ev(state="pending")], topo, include_pending=True)

    class NoKpi:
        rule, severity, state = "r", "page", "firing"

    with pytest.raises(ValueError, match=r"#0 \(NoKpi\) has no field 'kpi'"):
        alerts_from_sla_events([NoKpi()], topo)
    with pytest.raises(ValueError, match="no field 'kpi'"):
        alerts_from_sla_events([{"state": "firing", "severity": "page", "rule": "r", "scope_level": "site"}], topo)


def test_anomalies_to_alerts(topo):
    rows = anomalies(
        (1000, "prb_util_pct", "crowd", T0, -1),
        (2001, "throughput_mbps", "fault", T0, T0 + MIN),
        (5, "cpu_util_pct", "brandnew", T0, -1),
    )
    a, b, c = alerts_from_anomalies(rows, topo)
    assert a.labels == {
        "alertname": "anomaly_prb_util_pct",
        "source": "anomaly",
        "metric": "prb_util_pct",
        "classification": "crowd",
        "severity": "warning",
        "scope": "element",
        "element": "1000",
        "site": "100",
        "region": "1",
    }
    # band 100 -+ 40 * (100 - 3) / 7.5 in the metric's unit, clipped at 0: the score stays separate
    assert a.state == "firing" and a.annotations["summary"] == (
        "crowd on element 1000: prb_util_pct 3% below the expected 100% (normal down to 0%); score 7.5 vs threshold 40"
    )
    assert a.annotations["threshold"] == "0%" and a.annotations["score_threshold"] == "40"
    assert b.state == "resolved" and b.ends_at_ms == T0 + MIN and b.severity == ANOMALY_SEVERITY["fault"]
    assert b.labels["region"] == "2" and b.annotations["summary"].startswith("resolved: ")
    assert c.severity == "warning" and "topology" in c.annotations
    # the classification is not identity: a re-classified anomaly is the same alert
    rows2 = anomalies((1000, "prb_util_pct", "fault", T0, -1))
    assert alerts_from_anomalies(rows2, topo)[0].fingerprint == a.fingerprint
    assert alerts_from_anomalies(rows2, topo, severity={"fault": "page"})[0].severity == "page"
    assert alerts_from_anomalies(rows[0], topo)[0].fingerprint == a.fingerprint  # a single row


def test_anomaly_errors(topo):
    with pytest.raises(ValueError, match="structured array"):
        alerts_from_anomalies([1, 2], topo)
    with pytest.raises(ValueError, match=r"lack fields \['classification'"):
        alerts_from_anomalies(
            np.zeros(
                1,
                dtype=[
                    ("element_id", "i8"),
                    ("metric", "U8"),
                    ("start_ms", "i8"),
                    ("end_ms", "i8"),
                    ("peak_score", "f8"),
                    ("direction", "i1"),
                ],
            ),
            topo,
        )
    with pytest.raises(ValueError, match="unknown severities"):
        alerts_from_anomalies(anomalies((1000, "m", "fault", T0, -1)), topo, severity={"fault": "urgent"})


# ---- manager: dedup, grouping, timing -------------------------------------------------------
def test_dedup_and_group_of_40_cells(topo):
    mgr, rec = mgr_for(topo)
    cells = [cell_alert(e) for e in range(1000, 1040)]
    mgr.ingest(cells, now_ms=T0)
    mgr.ingest(cells[:10], now_ms=T0 + 1000)  # re-sent: updates, no duplicates
    mgr.ingest([cell_alert(1100)], now_ms=T0 + 1000)  # other site: other group
    assert mgr.tick(T0 + 29_999) == [] and rec.notes == []  # group_wait not over
    sent = mgr.tick(T0 + 30_000)
    assert [len(n.alerts) for n in sent] == [40]
    n = sent[0]
    assert n.group_labels == {"region": "1", "site": "100", "alertname": "anomaly_prb_util_pct"}
    assert n.group_key == '{region="1",site="100",alertname="anomaly_prb_util_pct"}'
    assert len({a.fingerprint for a in n.alerts}) == 40 and n.status == "firing"
    assert n.valid_until_ms == T0 + 30_000 + 120 * MIN
    assert mgr.stats["deduplicated"] == 10 and mgr.stats["new"] == 41
    assert [len(x.alerts) for x in mgr.tick(T0 + 31_000)] == [1]  # site 101, created 1 s later
    assert rec.notes[0] is n and len(rec.notes) == 2
    d = n.to_dict()
    assert d["commonLabels"]["site"] == "100" and "element" not in d["commonLabels"]
    assert Notification.from_dict(d) == n


def test_group_interval_repeat_and_resolve(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    mgr.ingest([cell_alert(1000)], T0)
    assert len(mgr.tick(T0)) == 1
    mgr.ingest([cell_alert(1001)], T0 + MIN)  # joins the flushed group
    assert mgr.tick(T0 + 4 * MIN) == []  # waits for group_interval
    [n] = mgr.tick(T0 + 5 * MIN)
    assert sorted(a.labels["element"] for a in n.alerts) == ["1000", "1001"]
    for k in range(2, 12):  # no change: silent until repeat
        assert mgr.tick(T0 + 5 * k * MIN) == [], k
    [rep] = mgr.tick(T0 + 65 * MIN)  # 60 min after the last notification
    assert len(rep.alerts) == 2 and mgr.stats["repeats"] == 1
    # resolve one: notified once as resolved, then gone; the other keeps firing
    r = cell_alert(1000, state="resolved", ends_at_ms=T0 + 66 * MIN)
    mgr.ingest([r, r], T0 + 66 * MIN)
    [res] = mgr.tick(T0 + 70 * MIN)
    assert {(a.labels["element"], a.state) for a in res.alerts} == {("1000", "resolved"), ("1001", "firing")}
    ends = {a["labels"]["element"]: a.get("endsAt") for a in res.v2_alerts()}
    assert ends["1000"] == rfc3339_ms(T0 + 66 * MIN), ends
    assert mgr.stats["resolved"] == 1 and mgr.stats["deduplicated"] == 1
    assert mgr.tick(T0 + 75 * MIN) == []
    mgr.ingest([cell_alert(1001, state="resolved", ends_at_ms=T0 + 76 * MIN)], T0 + 76 * MIN)
    [last] = mgr.tick(T0 + 80 * MIN)
    assert last.status == "resolved" and mgr.counts(T0)["groups"] == 0
    # a late duplicate of the old firing event does not re-open the resolved alert
    mgr.ingest([cell_alert(1001)], T0 + 81 * MIN)
    assert mgr.stats["stale"] == 1 and mgr.active_alerts == []
    # a new violation (later start) is a new alert instance
    mgr.ingest([cell_alert(1001, start=T0 + 90 * MIN)], T0 + 90 * MIN)
    assert len(mgr.tick(T0 + 90 * MIN)) == 1


def test_resolved_before_notification_is_not_sent(topo):
    mgr, rec = mgr_for(topo)
    mgr.ingest([cell_alert(1000)], T0)
    mgr.ingest([cell_alert(1000, state="resolved", ends_at_ms=T0 + 10_000)], T0 + 10_000)
    assert mgr.tick(T0 + MIN) == [] and mgr.stats["resolved_before_notify"] == 1
    mgr.ingest([cell_alert(1002, state="resolved", ends_at_ms=T0)], T0)  # never seen firing
    assert mgr.stats["resolved_unseen"] == 1 and mgr.active_alerts == []


def test_out_of_order_updates(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    new = cell_alert(1000, updated_ms=T0 + 2 * MIN)
    old = cell_alert(1000, cls="fault", updated_ms=T0 + MIN)
    mgr.ingest([new, old], T0)
    assert mgr.stats["stale"] == 1 and mgr.active_alerts[0].classification == "crowd"
    # resolved then re-opened (later start) before any flush: one firing alert
    mgr.ingest(
        [
            cell_alert(1000, state="resolved", ends_at_ms=T0 + 3 * MIN),
            cell_alert(1000, start=T0 + 2 * MIN, updated_ms=T0 + 3 * MIN),  # stale start
            cell_alert(1000, start=T0 + 4 * MIN, updated_ms=T0 + 4 * MIN),
        ],
        T0,
    )
    assert mgr.stats["refired"] == 1 and mgr.stats["stale"] == 2
    [n] = mgr.tick(T0)
    assert n.alerts[0].starts_at_ms == T0 + 4 * MIN and n.alerts[0].state == "firing"


# ---- inhibition -----------------------------------------------------------------------------
def site_down(site=100, region=1, state="firing", **kw):
    return Alert(
        {
            "alertname": "site_down",
            "source": "sla",
            "scope": "site",
            "site": str(site),
            "region": str(region),
            "classification": "sla",
            "severity": "critical",
        },
        starts_at_ms=T0,
        state=state,
        **kw,
    )


def test_site_down_inhibits_its_cells(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    cells = [cell_alert(e, cls="silence") for e in range(1000, 1040)]
    other = cell_alert(1100, cls="silence")
    mgr.ingest(cells + [other, site_down()], T0)
    sent = mgr.tick(T0)
    assert {n.group_labels.get("alertname") for n in sent} == {"site_down", "anomaly_prb_util_pct"}
    assert [n.group_labels["site"] for n in sent if n.group_labels["alertname"] != "site_down"] == ["101"]
    assert mgr.stats["muted_inhibited"] == 40
    assert mgr.inhibited_by(cells[0]) == "down_rule_mutes_descendants"
    assert mgr.inhibited_by(site_down()) == ""  # never by itself
    assert mgr.counts(T0)["current"]["inhibited"] == 40
    # the site comes back: the cells (still firing) are notified at the next group interval
    mgr.ingest([site_down(state="resolved", ends_at_ms=T0 + MIN)], T0 + MIN)
    sent = mgr.tick(T0 + 5 * MIN)
    assert sorted(len(n.alerts) for n in sent) == [1, 40]


def test_fault_classification_inhibits_descendants_and_own_symptoms(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    site_fault = Alert(
        {"alertname": "site_health", "scope": "site", "site": "101", "region": "1", "classification": "fault"},
        starts_at_ms=T0,
    )
    cell_fault = cell_alert(2000, name="anomaly_unavailable_s", cls="fault")
    cell_fault2 = cell_alert(2000, name="anomaly_error_count", cls="fault")
    symptom = cell_alert(2000, name="anomaly_throughput_mbps", cls="silence")
    under_site = cell_alert(1101, name="anomaly_unavailable_s", cls="fault")
    mgr.ingest([site_fault, cell_fault, cell_fault2, symptom, under_site], T0)
    assert mgr.inhibited_by(under_site) == "down_mutes_descendants"
    assert mgr.inhibited_by(symptom) == "down_mutes_own_symptoms"
    assert mgr.inhibited_by(cell_fault) == "" and mgr.inhibited_by(cell_fault2) == ""  # no mutual muting
    names = sorted(n.group_labels["alertname"] for n in mgr.tick(T0))
    assert names == ["anomaly_error_count", "anomaly_unavailable_s", "site_health"]


def test_region_collection_gap_inhibits_silence_alerts(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    gap = Alert(
        {"alertname": "collection_gap", "scope": "region", "region": "1", "classification": "collection_gap"},
        starts_at_ms=T0,
    )
    silence_r1 = [cell_alert(e, cls="silence") for e in (1000, 1001, 1100)]
    crowd_r1 = cell_alert(1002, name="anomaly_cpu_util_pct", cls="crowd")
    silence_r2 = cell_alert(2000, cls="silence")
    mgr.ingest([gap, *silence_r1, crowd_r1, silence_r2], T0)
    assert all(mgr.inhibited_by(a) == "collection_gap_mutes_silence" for a in silence_r1)
    assert mgr.inhibited_by(crowd_r1) == "" and mgr.inhibited_by(silence_r2) == ""
    sent = mgr.tick(T0)
    got = sorted(a.labels.get("element", "gap") for n in sent for a in n.alerts)
    assert got == ["1002", "2000", "gap"]


def test_custom_inhibit_rule_equal_relation(topo):
    rule = {
        "name": "critical_mutes_warning",
        "source_matchers": ["severity=critical"],
        "target_matchers": ["severity=warning"],
        "equal": ["site"],
        "relation": "equal",
    }
    mgr, rec = mgr_for(topo, group_wait_ms=0, inhibit_rules=[rule])
    crit = cell_alert(1000, name="x")
    crit = Alert({**crit.labels, "severity": "critical"}, starts_at_ms=T0)
    warn_same_site, warn_other = cell_alert(1001), cell_alert(1100)
    mgr.ingest([crit, warn_same_site, warn_other], T0)
    assert mgr.inhibited_by(warn_same_site) == "critical_mutes_warning"
    assert mgr.inhibited_by(warn_other) == ""
    # unknown scope (no topology level): only "equal" rules can relate it, and _depth copes
    odd = Alert({"alertname": "y", "scope": "cluster", "site": "100", "severity": "warning"}, starts_at_ms=T0)
    assert mgr.inhibited_by(odd) == "critical_mutes_warning"
    mgr2, _ = mgr_for(topo)
    assert mgr2._depth(Alert({"alertname": "z"})) == -1
    assert mgr2._depth(Alert({"alertname": "z", "site": "1"})) == 1


# ---- silences and suppression ---------------------------------------------------------------
def test_silences(topo):
    mgr, rec = mgr_for(
        topo, group_wait_ms=0, silences=[{"matchers": ["site=100"], "starts_at_ms": T0, "ends_at_ms": T0 + 10 * MIN}]
    )
    sid = mgr.add_silence(Silence(("element=~110[0-4]", "classification=crowd"), T0, T0 + 60 * MIN))
    assert sid == "s2" and [s.id for s in mgr.silences] == ["s1", "s2"]
    mgr.ingest([cell_alert(1000), cell_alert(1100), cell_alert(2000)], T0)
    assert [n.group_labels["site"] for n in mgr.tick(T0)] == ["200"]
    assert mgr.silenced_by(cell_alert(1000), T0) == "s1"
    assert mgr.tick(T0 + 5 * MIN) == []  # still silenced
    [n] = mgr.tick(T0 + 10 * MIN)  # s1 over: site 100 notified
    assert n.group_labels["site"] == "100"
    mgr.expire_silence(sid, T0 + 12 * MIN)
    assert mgr.silences[1].ends_at_ms == T0 + 12 * MIN
    [n] = mgr.tick(T0 + 15 * MIN)
    assert n.group_labels["site"] == "101"
    future = mgr.add_silence(Silence(("site=1",), T0 + 100 * MIN, T0 + 200 * MIN))
    mgr.expire_silence(future, T0 + 20 * MIN)  # not started yet: deleted
    assert future not in {s.id for s in mgr.silences}
    with pytest.raises(KeyError, match="no silence with id 'nope'"):
        mgr.expire_silence("nope", T0)
    mgr.tick(T0 + 25 * 3_600_000)  # past the retention: expired ones dropped
    assert [x.id for x in mgr.silences] == []
    assert mgr.stats["muted_silenced"] == 5  # muted at flushes T0 (2), +5 min (2), +10 min (1)


def test_suppressed_classification(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    mgr.ingest([cell_alert(1000, cls="inhibited")], T0)
    assert mgr.tick(T0) == [] and mgr.stats["muted_suppressed"] == 1
    assert mgr.muted(cell_alert(1000, cls="inhibited"), T0) == "suppressed"


def test_muted_notified_alert_still_gets_its_resolution(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    mgr.ingest([cell_alert(1000)], T0)
    assert len(mgr.tick(T0)) == 1
    mgr.ingest([cell_alert(1001)], T0 + MIN)
    mgr.add_silence(Silence(("element=1000",), T0 + MIN, T0 + 100 * MIN))
    [n] = mgr.tick(T0 + 5 * MIN)
    assert [a.labels["element"] for a in n.alerts] == ["1001"]
    mgr.ingest([cell_alert(1000, state="resolved", ends_at_ms=T0 + 6 * MIN)], T0 + 6 * MIN)
    [n] = mgr.tick(T0 + 10 * MIN)
    assert [(a.labels["element"], a.state) for a in n.alerts] == [("1001", "firing"), ("1000", "resolved")]


# ---- end to end from producers, summary, checkpoint, errors --------------------------------
def test_sla_and_anomalies_through_manager_to_callback(topo):
    got = []
    mgr = AlertManager(topo, [CallbackSink(got.append)], group_wait_ms=0, clock=lambda: T0)
    mgr.ingest(alerts_from_sla_events([Ev(scope_id=e) for e in (1000, 1001)], topo))
    mgr.ingest(alerts_from_anomalies(anomalies((2000, "prb_util_pct", "crowd", T0, -1)), topo))
    mgr.tick()
    assert sorted(len(n.alerts) for n in got) == [1, 2]
    lines = mgr.summary_lines()
    assert lines[0].startswith("alerts: 3 opened") and "by severity: major=2, warning=1" in lines
    assert "by classification: crowd=1, sla=2" in lines
    assert any(line.startswith("sink 0 callback: ") and "delivered=2" in line for line in lines)
    assert mgr.close() is True


def test_checkpoint_restore_continues_identically(topo):
    def run(split):
        mgr, rec = mgr_for(topo, silences=[Silence(("element=1003",), T0, T0 + 30 * MIN)])
        steps = [
            (T0, [cell_alert(e) for e in range(1000, 1005)] + [site_down(101)]),
            (T0 + MIN, [cell_alert(1100)]),
            (T0 + 6 * MIN, [cell_alert(1000, state="resolved", ends_at_ms=T0 + 6 * MIN)]),
            (T0 + 12 * MIN, [site_down(101, state="resolved", ends_at_ms=T0 + 12 * MIN)]),
            (T0 + 40 * MIN, []),
            (T0 + 200 * MIN, []),
        ]
        for i, (t, alerts) in enumerate(steps):
            if i == split:
                state = mgr.to_state()
                assert set(state) == {"version", "state_json"}
                mgr = AlertManager.from_state(state, topo, [rec])
            mgr.ingest(alerts, t)
            mgr.tick(t)
        return [(n.t_ms, n.group_key, [(a.fingerprint, a.state) for a in n.alerts]) for n in rec.notes], mgr

    ref, ref_mgr = run(split=-1)
    assert len(ref) >= 5
    for split in range(1, 6):
        got, mgr = run(split)
        assert got == ref, split
        assert mgr.summary_lines(T0) == ref_mgr.summary_lines(T0)
    with pytest.raises(ValueError, match="pass the topology"):
        AlertManager.from_state(ref_mgr.to_state())
    restored = AlertManager.from_state(ref_mgr.to_state(), topo)
    assert restored.levels == ("region", "site", "element") and restored.rollup_rules == ref_mgr.rollup_rules
    bare = AlertManager.from_state(AlertManager(None).to_state())
    assert bare.levels == ("region", "site", "element") and bare.rollup_rules == ()
    with pytest.raises(ValueError, match="not an AlertManager state"):
        AlertManager.from_state({"version": 2})


def test_manager_errors(topo):
    with pytest.raises(TypeError, match=r"sinks\[0\] \(object\) lacks submit"):
        AlertManager(topo, [object()])
    with pytest.raises(ValueError, match="group_interval_ms must be >= 1"):
        AlertManager(topo, group_interval_ms=0)
    with pytest.raises(TypeError, match=r"alerts\[0\] is a dict"):
        AlertManager(topo).ingest([{"alertname": "x"}], 0)
    mgr = AlertManager(None, group_by="site", inhibit_rules=[], clock=lambda: 5)
    assert mgr.levels == ("region", "site", "element") and mgr.group_by == ("site",)


def test_close_drains_pending_groups(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=10 * MIN)
    mgr.ingest([cell_alert(1000), cell_alert(2000)], T0)
    assert mgr.tick(T0) == []
    assert mgr.close(T0 + 1) is True
    assert len(rec.notes) == 2 and rec.closed
    mgr.ingest([cell_alert(1001)], T0 + 2)  # groups keep timers after a drain
    assert [len(n.alerts) for n in mgr.tick(T0 + 2 + 5 * MIN)] == [2]


@given(st.lists(st.integers(1000, 1039), min_size=1, max_size=60), st.randoms())
def test_grouping_order_independent_and_conserving(cells, random):
    """Any order and any duplication of a site's cell alerts yields one notification holding
    each distinct cell exactly once; resolving them all yields one resolved entry each."""
    mgr = AlertManager(None, [], group_wait_ms=1000)
    alerts = [cell_alert(e) for e in cells]
    random.shuffle(alerts)
    for i, a in enumerate(alerts):
        mgr.ingest([a], T0 + i)
    [n] = mgr.tick(T0 + 1000)
    assert sorted(a.labels["element"] for a in n.alerts) == sorted(str(e) for e in set(cells))
    mgr.ingest([cell_alert(e, state="resolved", ends_at_ms=T0 + MIN) for e in cells], T0 + MIN)
    [r] = mgr.tick(T0 + 10 * MIN)
    assert sorted(a.labels["element"] for a in r.alerts) == sorted(str(e) for e in set(cells))
    assert all(a.state == "resolved" for a in r.alerts) and mgr.active_alerts == []


def test_reclassification_updates_inhibition_and_clock_default(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    symptom = cell_alert(1000, name="anomaly_throughput_mbps", cls="silence")
    cause = cell_alert(1000, name="anomaly_unavailable_s", cls="change")
    mgr.ingest([symptom, cause], T0)
    assert mgr.inhibited_by(symptom) == ""
    mgr.ingest([cell_alert(1000, name="anomaly_unavailable_s", cls="fault", updated_ms=T0 + 1)], T0 + 1)
    assert mgr.stats["deduplicated"] == 1 and mgr.inhibited_by(symptom) == "down_mutes_own_symptoms"
    wall = AlertManager(None).clock()
    assert abs(wall - __import__("time").time() * 1000) < 60_000


def test_labeler_with_an_empty_level():
    class Empty:  # duck-typed topology without sites
        levels = ("site", "element")
        element_level = "element"
        ids = {"site": np.zeros(0, dtype=np.int64), "element": np.zeros(0, dtype=np.int64)}

        def index_of(self, ids):
            return np.full(len(ids), -1)

    [a] = alerts_from_sla_events([Ev(scope_level="site", scope_id=5)], Empty())
    assert a.labels["site"] == "5" and "topology" in a.annotations


# ---- topology roll-up -----------------------------------------------------------------------
def test_rollup_site_down_mutes_its_cells(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0, group_interval_ms=MIN)
    faults = [cell_alert(e, name="anomaly_unavailable_s", cls="fault") for e in range(1000, 1040)]
    mgr.ingest(faults[:19], T0)  # 19 of 40 < 50 %: no site alert
    [n] = mgr.tick(T0)
    assert len(n.alerts) == 19 and mgr.stats["rollup_updates"] == 0
    mgr.ingest(faults[19:], T0 + MIN)  # 40 of 40
    [n] = mgr.tick(T0 + MIN)
    [down] = n.alerts
    assert down.labels == {
        "alertname": "site_down",
        "source": "rollup",
        "rule": "site_down",
        "scope": "site",
        "classification": "down",
        "severity": "critical",
        "region": "1",
        "site": "100",
    }
    assert down.annotations["summary"].startswith("site_down: 40 of 40 elements of site 100")
    assert down.starts_at_ms == T0 + MIN
    assert mgr.inhibited_by(faults[0]) == "down_mutes_descendants"
    assert mgr.stats["muted_inhibited"] == 40
    # 30 cells recover: 10 of 40 left, the site alert resolves and the 10 cells are notified
    mgr.ingest(
        [
            cell_alert(e, name="anomaly_unavailable_s", cls="fault", state="resolved", ends_at_ms=T0 + 2 * MIN)
            for e in range(1000, 1030)
        ],
        T0 + 2 * MIN,
    )
    sent = mgr.tick(T0 + 2 * MIN)
    states = sorted((a.labels["alertname"], a.state) for n in sent for a in n.alerts)
    assert states.count(("site_down", "resolved")) == 1
    assert states.count(("anomaly_unavailable_s", "resolved")) == 19  # those notified at T0
    assert states.count(("anomaly_unavailable_s", "firing")) == 10
    # the site goes down again while members still fire: a new instance, not a stale copy
    mgr.ingest(
        [cell_alert(e, name="anomaly_unavailable_s", cls="fault", start=T0 + 3 * MIN) for e in range(1000, 1020)],
        T0 + 3 * MIN,
    )
    mgr.tick(T0 + 3 * MIN)
    again = [a for a in mgr.active_alerts if a.labels["alertname"] == "site_down"]
    assert len(again) == 1 and again[0].state == "firing" and again[0].starts_at_ms == T0 + 3 * MIN
    assert again[0].annotations["members"] == "30"
    # a member count change updates the alert without a new notification
    mgr.ingest(
        [
            cell_alert(
                1000,
                name="anomaly_unavailable_s",
                cls="fault",
                state="resolved",
                start=T0 + 3 * MIN,
                ends_at_ms=T0 + 4 * MIN,
            )
        ],
        T0 + 4 * MIN,
    )
    before = mgr.stats["deduplicated"]
    mgr.tick(T0 + 4 * MIN)
    assert mgr.stats["deduplicated"] == before + 1
    assert [a for a in mgr.active_alerts if a.labels["alertname"] == "site_down"][0].annotations["members"] == "29"


def test_rollup_region_collection_gap_mutes_silences(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    gaps = [cell_alert(e, name="anomaly_gap", cls="collection_gap") for e in (2000, 2001, 2002)]
    quiet = cell_alert(2004, name="anomaly_throughput_mbps", cls="silence")  # no gap alert of its own
    mgr.ingest(gaps + [quiet], T0)
    mgr.tick(T0)
    [region] = [a for a in mgr.active_alerts if a.labels["alertname"] == "region_collection_gap"]
    assert region.labels["scope"] == "region" and region.labels["region"] == "2" and "site" not in region.labels
    assert mgr.inhibited_by(quiet) == "collection_gap_mutes_silence"
    mgr.ingest([cell_alert(1000)], T0 + 1)  # unrelated change: region alert unchanged
    mgr.tick(T0 + 1)
    assert mgr.stats["rollup_updates"] == 1


def test_rollup_counts_active_elements_only(topo):
    retired, _ = topo.retire_elements(np.arange(1000, 1030))  # site 100 keeps 10 active cells
    mgr, rec = mgr_for(retired, group_wait_ms=0)
    mgr.ingest([cell_alert(e, name="anomaly_unavailable_s", cls="fault") for e in range(1030, 1035)], T0)
    mgr.tick(T0)
    assert any(a.labels["alertname"] == "site_down" for a in mgr.active_alerts)


def test_rollup_rule_validation(topo):
    from telcoanalytics.alerts.manager import DEFAULT_ROLLUP_RULES, RollupRule

    for r in DEFAULT_ROLLUP_RULES:
        assert RollupRule.from_dict(r.to_dict()) == r
    with pytest.raises(ValueError, match="needs source_matchers"):
        RollupRule("site", (), "x", "down")
    with pytest.raises(ValueError, match="min_fraction"):
        RollupRule("site", ("a=1",), "x", "down", min_fraction=0)
    with pytest.raises(ValueError, match="min_count"):
        RollupRule("site", ("a=1",), "x", "down", min_count=0)
    with pytest.raises(ValueError, match="severity 'urgent'"):
        RollupRule("site", ("a=1",), "x", "down", severity="urgent")
    with pytest.raises(ValueError, match="needs an alertname"):
        RollupRule("site", ("a=1",), "", "down")
    with pytest.raises(ValueError, match="unknown keys"):
        RollupRule.from_dict({"level": "site", "when": 1})
    with pytest.raises(ValueError, match="lacks"):
        RollupRule.from_dict({"level": "site"})
    with pytest.raises(ValueError, match="must be a dict"):
        RollupRule.from_dict("site")
    with pytest.raises(ValueError, match="need a topology"):
        AlertManager(None, rollup_rules=DEFAULT_ROLLUP_RULES)
    with pytest.raises(ValueError, match="above the elements"):
        AlertManager(
            topo,
            rollup_rules=[{"level": "element", "alertname": "x", "classification": "down", "source_matchers": ["a=1"]}],
        )


def test_ingest_helpers_and_set_topology(topo):
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    assert mgr.ingest_sla([Ev(), Ev(state="pending")], T0) == 1
    assert mgr.ingest_anomalies(anomalies((2000, "prb_util_pct", "crowd", T0, -1)), T0) == 1
    assert sorted(a.labels["site"] for n in mgr.tick(T0) for a in n.alerts) == ["100", "200"]
    smaller, _ = topo.retire_elements(np.arange(1000, 1039))
    mgr.set_topology(smaller)
    assert node_sizes(mgr, "site")["100"] == 1
    with pytest.raises(ValueError, match="levels"):
        mgr.set_topology(None)


def test_firing_issued_after_a_resolution_reopens_even_with_an_earlier_start(topo):
    """Late data can move a violation's start before the previous resolution (SLA re-evaluation):
    a firing issued after the resolution is a new instance, a copy issued before it is stale."""
    mgr, rec = mgr_for(topo, group_wait_ms=0)
    mgr.ingest([cell_alert(1000, start=T0 + 30 * MIN, updated_ms=T0 + 35 * MIN)], T0 + 35 * MIN)
    assert [n.status for n in mgr.tick(T0 + 35 * MIN)] == ["firing"]
    mgr.ingest([cell_alert(1000, state="resolved", start=T0 + 30 * MIN, ends_at_ms=T0 + 36 * MIN)], T0 + 36 * MIN)
    assert [n.status for n in mgr.tick(T0 + 40 * MIN)] == ["resolved"]  # notified, then dropped
    mgr.ingest([cell_alert(1000, start=T0 + 30 * MIN, updated_ms=T0 + 35 * MIN)], T0 + 41 * MIN)  # old copy
    assert mgr.stats["stale"] == 1 and mgr.active_alerts == []
    mgr.ingest([cell_alert(1000, start=T0 + 33 * MIN, updated_ms=T0 + 41 * MIN)], T0 + 41 * MIN)
    [n] = mgr.tick(T0 + 41 * MIN)
    assert n.status == "firing" and n.alerts[0].starts_at_ms == T0 + 33 * MIN and mgr.stats["stale"] == 1


def test_anomaly_band_in_the_metric_unit():
    """The band edge is the value whose score equals the threshold, computed here from the
    detector's log(x + c) score directly (loss_pct: c = 0.05)."""
    from telcoanalytics.alerts.convert import anomaly_annotations, anomaly_band

    value, base, score, thr, c = 0.66, 0.04, 7.4, 6.2, 0.05
    s = (np.log(value + c) - np.log(base + c)) / score
    want_hi = np.exp(np.log(base + c) + thr * s) - c
    lo, hi = anomaly_band(value, base, score, thr, c)
    np.testing.assert_allclose(hi, want_hi, rtol=1e-12)
    np.testing.assert_allclose((np.log(hi + c) - np.log(base + c)) / s, thr, rtol=1e-12)
    assert lo < base < hi < value
    ann = anomaly_annotations("loss_pct", "fault", 7, value, base, score, thr, 1, T0, {"loss_pct": c})
    assert ann["summary"] == (
        f"fault on element 7: loss_pct 0.66% above the expected 0.04% (normal up to {want_hi:.3g}%); "
        "score 7.4 vs threshold 6.2"
    )
    # what the peak does not determine, or a log of a non-positive number, is "n/a", never a crash
    assert np.isnan(anomaly_band(1.0, 1.0, 3.0, 2.0)).all() and np.isnan(anomaly_band(1.0, 0.0, 0.0, 2.0)).all()
    assert np.isnan(anomaly_band(1.0, -0.1, 3.0, 2.0, c)).all() and np.isnan(anomaly_band(1.0, 1.0, 3.0, 2.0, c)).all()
    sil = anomaly_annotations("", "silence", 7, 6_900_000, 300_000, 23.0, 360_000, -1, T0, {})
    assert sil["summary"] == "silence on element 7: no report for 115 min (expected every 5 min, flagged after 6 min)"
