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
