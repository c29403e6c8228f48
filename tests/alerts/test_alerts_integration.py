"""The alert converters against the producers' real types: ``sla.SlaEvent`` and
``anomaly.ANOMALY_DTYPE`` (field compatibility), through the manager to a JSON lines file."""

import json

import numpy as np
import pytest

import telcoanalytics.anomaly.detector as anomaly
import telcoanalytics.sla.sla as sla
from telcoanalytics.alerts.manager import AlertManager, alerts_from_anomalies, alerts_from_sla_events
from telcoanalytics.alerts.sinks import JsonlSink
from telcoanalytics.topology.model import Topology

T0 = 1_772_409_600_000
MIN = 60_000


@pytest.fixture(scope="module")
def topo():
    eids = np.arange(100, 112)
    return Topology.from_columns(eids, {"region": np.repeat([1, 2], 6), "site": np.repeat([10, 11, 20, 21], 3)})


def test_real_sla_events_and_anomaly_rows_to_jsonl(topo, tmp_path):
    ev = [
        sla.SlaEvent(
            "site_call_setup_success",
            "call_setup_success_pct",
            "critical",
            "pending",
            "site",
            10,
            "",
            T0,
            T0,
            -1,
            93.0,
            95.0,
            93.0,
            "pending: ...",
        ),
        sla.SlaEvent(
            "site_call_setup_success",
            "call_setup_success_pct",
            "critical",
            "firing",
            "site",
            10,
            "",
            T0 + 5 * MIN,
            T0,
            -1,
            92.5,
            95.0,
            92.0,
            "firing: ...",
        ),
        sla.SlaEvent(
            "site_call_setup_success",
            "call_setup_success_pct",
            "critical",
            "resolved",
            "site",
            10,
            "",
            T0 + 30 * MIN,
            T0,
            T0 + 30 * MIN,
            97.5,
            95.0,
            91.0,
            "resolved: ...",
        ),
    ]
    rows = np.zeros(2, dtype=anomaly.ANOMALY_DTYPE)
    rows["element_id"] = [103, 106]
    rows["metric"] = "throughput_mbps"
    rows["classification"] = ["silence", "fault"]
    rows["start_ms"] = T0
    rows["end_ms"] = -1
    rows["direction"] = -1
    path = tmp_path / "alerts.jsonl"
    mgr = AlertManager(topo, [JsonlSink(path)], group_wait_ms=0, group_interval_ms=MIN)
    firing = alerts_from_sla_events(ev[:2], topo)
    assert len(firing) == 1 and firing[0].labels["region"] == "1"
    mgr.ingest(firing + alerts_from_anomalies(rows, topo), T0 + 5 * MIN)
    mgr.tick(T0 + 5 * MIN)
    mgr.ingest(alerts_from_sla_events(ev[2:], topo), T0 + 30 * MIN)
    mgr.close(T0 + 31 * MIN)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    got = sorted(
        (d["labels"]["alertname"], d["labels"].get("element", d["labels"].get("site")), d["status"]) for d in lines
    )
    # element 103 sits under site 11 (silence, own alert), 106 under site 20 (fault): none is
    # inhibited by the site 10 alert; the SLA alert fires once and resolves once
    assert got == [
        ("anomaly_throughput_mbps", "103", "firing"),
        ("anomaly_throughput_mbps", "106", "firing"),
        ("site_call_setup_success", "10", "firing"),
        ("site_call_setup_success", "10", "resolved"),
    ]
    assert set(sla.SEVERITIES) <= set(__import__("telcoanalytics.alerts.manager").alerts.SEVERITIES)


def test_anomaly_t_ms_orders_updates(topo):
    if "t_ms" not in anomaly.ANOMALY_DTYPE.names:
        pytest.skip("ANOMALY_DTYPE has no t_ms extension")
    rows = np.zeros(3, dtype=anomaly.ANOMALY_DTYPE)
    rows["element_id"] = 100
    rows["metric"] = ""
    rows["start_ms"] = T0
    rows["end_ms"] = -1
    rows["classification"] = ["silence", "collection_gap", "silence"]
    rows["t_ms"] = [T0, T0 + 2 * MIN, T0 + MIN]  # the last row is older than the second
    alerts = alerts_from_anomalies(rows, topo)
    assert [a.updated_ms for a in alerts] == [T0, T0 + 2 * MIN, T0 + MIN]
    mgr = AlertManager(topo, [], group_wait_ms=0)
    mgr.ingest(alerts, T0 + 2 * MIN)
    [a] = mgr.active_alerts
    assert a.classification == "collection_gap" and mgr.stats["stale"] == 1
